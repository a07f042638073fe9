"""One row of the benchmark table, shared by bench/run.py and its sections."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    section: str
    case: str
    size: str
    value: str
    note: str = ""
