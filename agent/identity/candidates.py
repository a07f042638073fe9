"""Which SKUs one piece of NVML evidence allows: the PCI device id, or the (parsed) name.

Each function answers from the tables alone; gpu.py weighs the answers against each other and
against NVML's memory and compute capability.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from .rawname import ParsedName, form_factor_words, geforce_model, memory_words, pattern_model
from .tables import MigTable, PciRow, Sku, Tables


@dataclass(frozen=True)
class Candidates:
    """SKUs one source of evidence allows, and which source that was."""
    skus: tuple[Sku, ...]
    source: str  # pciid | name
    specific: bool  # True: matched a known name or id; False: matched a model word or the grammar only


def nominal_memory_gb(memory_mib: Optional[float], sizes: Iterable[Optional[int]], t: Tables) -> Optional[int]:
    """The nominal size (GB) whose ratio to the reported GiB is nearest 1, within tolerance."""
    if not memory_mib or memory_mib <= 0:
        return None
    tol = t.grammar["memory_tolerance"]
    gib = memory_mib / 1024.0
    best: Optional[tuple[float, int]] = None
    for size in {s for s in sizes if s}:
        ratio = gib / size
        if tol["min_ratio"] <= ratio <= tol["max_ratio"]:
            score = abs(math.log(ratio))
            if best is None or score < best[0]:
                best = (score, size)
    return best[1] if best else None


def measured_memory_gb(memory_mib: Optional[float], t: Tables, tight: bool = False) -> Optional[int]:
    """What NVML's memory says by itself, with no part to compare it with: the nearest nominal
    size at or just above the reported GiB (drivers report a little less than the nominal size,
    rarely more), else whole GiB. tight: only a size within 3% counts (a board built with more
    memory than its part reports it nearly whole: 22528 MiB is 22, not the 24 a loose bucket gives)."""
    if not memory_mib or memory_mib <= 0:
        return None
    gib = memory_mib / 1024.0
    low = 0.97 if tight else t.grammar["memory_tolerance"]["min_ratio"]
    high = 1.03 if tight else 1.01
    fitting = [size for size in {s.memory_gb for s in t.skus.values() if s.memory_gb} if low <= gib / size <= high]
    return min(fitting, key=lambda size: abs(math.log(gib / size))) if fitting else round(gib)


def fits_memory(sku: Sku, memory_mib: float, t: Tables) -> bool:
    return sku.memory_gb is None or nominal_memory_gb(memory_mib, (sku.memory_gb,), t) is not None


def by_memory(skus: Sequence[Sku], memory_mib: float, t: Tables) -> tuple[Sku, ...]:
    """The candidates whose nominal size the memory buckets to; else those whose size the tables
    leave open; else none."""
    size = nominal_memory_gb(memory_mib, {s.memory_gb for s in skus}, t)
    if size is not None:
        return tuple(s for s in skus if s.memory_gb == size)
    return tuple(s for s in skus if s.memory_gb is None)


def pci_candidates(device_id: int, subsystem_id: Optional[int], t: Tables) -> Optional[Candidates]:
    rows: Sequence[PciRow] = t.pci.get(device_id, ())
    if not rows:
        return None
    if subsystem_id is not None:
        rows = [r for r in rows if r.subsystem_id == subsystem_id] or rows
    return Candidates(tuple(dict.fromkeys(t.skus[r.sku] for r in rows)), "pciid", True)


def name_candidates(parsed: ParsedName, memory_mib: Optional[float], t: Tables) -> Optional[Candidates]:
    """SKUs the name allows: a vGPU board, a MIG device's parent, or the part's own name."""
    if parsed.vgpu is not None:
        part = parsed.vgpu.part
        return Candidates(tuple(t.skus_matching(part)), "name", True) if part else None
    if parsed.mig_device and not parsed.base:
        skus = bare_mig_candidates(parsed.mig_profile, memory_mib, t)
        return Candidates(skus, "name", True) if skus else None
    found = part_name_candidates(parsed, t)
    if found is not None and parsed.mig_device:
        # the parent must offer the profile: "NVIDIA H100 MIG 1g.12gb" is the 94 GB part
        offering = tuple(s for s in found.skus if _offers(t.mig.get(s.mig_table), parsed.mig_profile))
        if offering:
            found = Candidates(offering, found.source, found.specific)
    return found


def part_name_candidates(parsed: ParsedName, t: Tables) -> Optional[Candidates]:
    key = t.name_key(parsed.base)
    if not key or key in t.grammar["meaningless_names"]:
        return None
    if not parsed.truncated and key in t.names:
        return Candidates(tuple(t.skus[s] for s in t.names[key]), "name", True)
    if parsed.truncated:
        prefix = key + " " if parsed.more_words else key
        found = tuple(dict.fromkeys(t.skus[s] for k, skus in t.names.items() if k.startswith(prefix) for s in skus))
        if found:
            return Candidates(found, "name", True)
    if not parsed.truncated:
        # a GeForce name's every word counts ("GTX 1650 Ti" is not a "GTX 1650"): its grammar
        # comes before model words
        geforce = geforce_candidates(parsed.base, t)
        if geforce is not None:
            return geforce
    return model_word_candidates(key, t)


def model_word_candidates(key: str, t: Tables, strict: bool = False) -> Optional[Candidates]:
    """A known model as whole words inside an unknown name ('NVIDIA H100 80GB HBM3e'), narrowed
    by the form factor and size the name states. strict: a form factor or size no SKU of the
    model has means no match (else the name's model stands and NVML's memory decides)."""
    padded = f" {key} "
    for model_key, model in t.model_keys:
        if f" {model_key} " in padded:
            skus = tuple(s for s in t.skus.values() if s.model == model)
            for stated, attr in ((form_factor_words(key, t), "form_factor"), (memory_words(key, t), "memory_gb")):
                if stated:
                    narrowed = tuple(s for s in skus if getattr(s, attr) in stated)
                    if strict and not narrowed:
                        return None
                    skus = narrowed or skus
            return Candidates(skus, "name", False)
    return None


def geforce_candidates(base: str, t: Tables) -> Optional[Candidates]:
    """A GeForce or workstation card the tables do not list, by the name's grammar: the model
    only; its memory comes from NVML."""
    found = geforce_model(base, t) or pattern_model(base, t)
    if found is None:
        return None
    model, laptop = found
    known = tuple(s for s in t.skus.values() if s.model == model)
    if known:
        return Candidates(known, "name", False)
    return Candidates((Sku(model, model, "", "" if laptop else "pcie", None, "", ""),), "name", False)


def _offers(table: Optional[MigTable], profile: str) -> bool:
    return table is not None and table.canonical(profile) in table.profiles


def bare_mig_candidates(profile: str, memory_mib: Optional[float], t: Tables) -> tuple[Sku, ...]:
    """Parent SKUs of a bare MIG device name ("MIG 3g.40gb"): tables offering the profile,
    narrowed by the per-instance memory; canonical names win over driver aliases."""
    tol = t.grammar["mig_memory_tolerance"]
    hits: list[tuple[bool, MigTable]] = []  # (found under an alias, table)
    for table in t.mig.values():
        canonical = table.canonical(profile)
        if canonical not in table.profiles:
            continue
        mems = table.profiles[canonical].memory_mib
        if memory_mib and mems and not any(abs(memory_mib - m) <= tol * m for m in mems):
            continue
        hits.append((canonical != profile, table))
    if any(not alias for alias, _ in hits):
        hits = [h for h in hits if not h[0]]
    skus: list[Sku] = []
    for _, table in hits:
        skus += [s for s in t.skus.values() if s.mig_table == table.key and s.model == table.model]
    return tuple(dict.fromkeys(skus))
