"""`gpulse identify` and `gpulse labels`: the functions agent/cli.py wires as subcommands.

`view_provider` is a callable returning this node's IdentityView (the caller reads NVML and
the Node object); offline `identify --name ...` needs neither.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Optional, TextIO

from .gpu import resolve_gpu
from .records import JsonObject
from .tables import tables

if TYPE_CHECKING:
    from ..config import Config
    from .resolver import IdentityView

# Returns this node's IdentityView (reads NVML and the Node object when called).
ViewProvider = Callable[[], "IdentityView"]


def _pci_id(text: str) -> int:
    """PCI ids are hex, with or without 0x: '0x2330', '2330', '0x233010DE'."""
    t = text.strip().lower()
    try:
        value = int(t[2:] if t.startswith("0x") else t, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid PCI id {text!r} (use hex, e.g. 0x2330)") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"PCI id {text!r} is out of range")
    return value


def _mib(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid memory {text!r} (MiB as an integer, e.g. 81559)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"memory {text!r} must be positive")
    return value


def add_identify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="explain this raw NVML name offline instead of reading this node")
    parser.add_argument("--pci-device-id", type=_pci_id, metavar="0xNNNN", help="PCI device id (hex) for --name")
    parser.add_argument("--pci-subsystem-id", type=_pci_id, metavar="0xNNNN", help="PCI subsystem id (hex) for --name")
    parser.add_argument("--memory-mib", type=_mib, metavar="N", help="memory NVML reports, in MiB, for --name")
    parser.add_argument("--compute-capability", metavar="X.Y", help="compute capability for --name, e.g. 9.0")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_labels_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the labels as a JSON object")


def explain(name: str, pci_device_id: Optional[int] = None, pci_subsystem_id: Optional[int] = None,
            memory_mib: Optional[int] = None, compute_capability: Optional[str] = None) -> JsonObject:
    """The canonical record for a raw identity, plus the MIG profiles its part supports."""
    rec = resolve_gpu(name, pci_device_id, pci_subsystem_id, memory_mib, compute_capability)
    out = rec.as_json()
    t = tables()
    sku = t.skus.get(rec.sku)
    table = t.mig.get(sku.mig_table) if sku else None
    out["mig_supported_profiles"] = (
        {p.name: p.max for p in table.profiles.values()} if table else {})
    return out


_COLUMNS = ("index", "uuid", "model", "sku", "form_factor", "memory_gb", "compute_capability",
            "family", "virtualization", "mig_enabled", "source")


_MIG_COLUMNS = ("gpu", "uuid", "mig_profile", "model", "sku", "form_factor", "memory_gb", "source")


def _word(value: object) -> str:
    """A value as the table and text output show it: JSON's words, '-' for nothing."""
    if value is None or value == "":
        return "-"
    if isinstance(value, (bool, dict, list)):
        return json.dumps(value)
    return str(value)


def _table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] = _COLUMNS) -> str:
    cells = [[str(c).upper() for c in columns]]
    for row in rows:
        cells.append([_word(row.get(c)) for c in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _print_view(view: IdentityView, out: TextIO) -> None:
    data = view.as_json()
    node = data["node"]
    print(f"node {node['name'] or '-'}: cloud {node['cloud']} ({node['cloud_source']}), "
          f"instance type {node['instance_type'] or '-'}, region {node['region'] or '-'}, "
          f"zone {node['zone'] or '-'}, driver {node['driver_version'] or '-'}, "
          f"CUDA {node['cuda_version'] or '-'}", file=out)
    print(_table(data["gpus"]) if data["gpus"] else "no GPUs", file=out)
    if data["migs"]:
        print("MIG devices:", file=out)
        print(_table(data["migs"], _MIG_COLUMNS), file=out)
    for c in data["conflicts"]:
        where = f"GPU {c['gpu']}: " if c.get("gpu") else ""
        print(f"conflict: {where}{c['label']}={c['label_value']} implies {c['field']} {c['expected']}, "
              f"NVML shows {c['nvml_value']}", file=out)
    if data["unknown_count"]:
        print(f"unknown GPUs: {data['unknown_count']} (source fallback; raw names kept)", file=out)


def identify_main(args: argparse.Namespace, config: Config, view_provider: Optional[ViewProvider] = None,
                  out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    if args.name is not None:
        record = explain(args.name, args.pci_device_id, args.pci_subsystem_id, args.memory_mib,
                         args.compute_capability)
        if args.json:
            print(json.dumps(record, indent=2, sort_keys=True), file=out)
        else:
            width = max(len(k) for k in record)
            for key, value in record.items():
                print(f"{key.ljust(width)}  {_word(value)}", file=out)
        return 0
    if any(getattr(args, a) is not None
           for a in ("pci_device_id", "pci_subsystem_id", "memory_mib", "compute_capability")):
        print("gpulse identify: --pci-device-id, --pci-subsystem-id, --memory-mib and "
              "--compute-capability need --name", file=sys.stderr)
        return 2
    if view_provider is None:
        print("gpulse identify: this node's identity is not available here; use --name to explain a raw identity",
              file=sys.stderr)
        return 2
    view = view_provider()
    if args.json:
        print(json.dumps(view.as_json(), indent=2, sort_keys=True), file=out)
    else:
        _print_view(view, out)
    return 0


def labels_main(args: argparse.Namespace, config: Config, view_provider: Optional[ViewProvider] = None,
                out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    if view_provider is None:
        print("gpulse labels: this node's identity is not available here", file=sys.stderr)
        return 2
    labels = view_provider().labels()
    if getattr(args, "json", False):
        print(json.dumps(labels, indent=2, sort_keys=True), file=out)
    else:
        for key, value in labels.items():
            print(f"{key}={value}", file=out)
    return 0
