"""Derives agent/identity/data/pciids.csv (PCI device id -> SKU) from the PCI ID Repository.

    .venv/bin/python tools/gen_pci_ids.py [--pci-ids /usr/share/misc/pci.ids] [--check]

Reads Debian's `pci.ids` package (`make deb-deps` installs it). For each NVIDIA device line
("\t2330  GH100 [H100 SXM5 80GB]") the bracketed product names ("A2 / A16", "Quadro RTX
6000/8000" are two each) are matched to SKUs the way the resolver matches names: a name in
identity/data/names.csv, else a model's words with the form factor and size the product states.
Mobile, laptop, embedded and vGPU-only products are left out unless a name says otherwise. A
subsystem line of NVIDIA's own (subvendor 10de) that names a narrower product ("Quadro RTX
8000" under 0x1E30) becomes a subsystem row. Hand-written rows in pci_ids.csv cover only what
this file cannot say (ids newer than the installed pci.ids, ids it names too loosely);
tests/unit/identity/test_pciids.py checks this file is current and those rows are needed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "agent", "identity", "data", "pciids.csv")
DEFAULT_PCI_IDS = "/usr/share/misc/pci.ids"
NVIDIA = "10de"
# Words of products that are not the boards gpulse tables (compared on name keys).
SKIPPED_WORDS = frozenset({"MOBILE", "LAPTOP", "MAX", "EMBEDDED", "USM", "VGPU", "NVSWITCH", "REFRESH", "GRID", "DRIVE"})

_DEVICE = re.compile(r"^\t(?P<id>[0-9a-f]{4})  (?P<name>.*)$")
_SUBSYSTEM = re.compile(r"^\t\t(?P<vendor>[0-9a-f]{4}) (?P<id>[0-9a-f]{4})  (?P<name>.*)$")
_CHIP_PRODUCTS = re.compile(r"^(?P<chip>[A-Z0-9]+?)\s*\[(?P<products>.*)\]\s*$")


@dataclass(frozen=True)
class Device:
    device_id: int
    name: str
    subsystems: tuple[tuple[int, str], ...]  # (subsystem device id, name) of subvendor 10de


def read_pci_ids(text: str) -> tuple[str, list[Device]]:
    """(version, NVIDIA devices) of a pci.ids file."""
    version = ""
    devices: list[Device] = []
    in_nvidia = False
    current: tuple[int, str, list[tuple[int, str]]] | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            m = re.match(r"^#\s*Version:\s*(\S+)", line)
            version = version or (m[1] if m else "")
            continue
        if line and not line.startswith("\t"):
            in_nvidia = line.startswith(NVIDIA + "  ")
            continue
        if not in_nvidia:
            continue
        d = _DEVICE.match(line)
        if d:
            if current:
                devices.append(Device(current[0], current[1], tuple(current[2])))
            current = (int(d["id"], 16), d["name"].strip(), [])
            continue
        s = _SUBSYSTEM.match(line)
        if s and current and s["vendor"] == NVIDIA:
            current[2].append((int(s["id"], 16), s["name"].strip()))
    if current:
        devices.append(Device(current[0], current[1], tuple(current[2])))
    return version, devices


def products(name: str) -> tuple[str, list[str]]:
    """'TU102GL [Quadro RTX 6000/8000]' -> ('TU102GL', ['Quadro RTX 6000', 'Quadro RTX 8000'])."""
    m = _CHIP_PRODUCTS.match(name)
    if not m:
        return "", []
    out: list[str] = []
    for product in (p.strip() for p in m["products"].split(" / ")):
        words = product.split()
        alt = next((i for i, w in enumerate(words) if "/" in w), None)
        if alt is None:
            out.append(product)
            continue
        for choice in words[alt].split("/"):
            out.append(" ".join(words[:alt] + [choice] + words[alt + 1:]))
    return m["chip"], [p for p in out if p]


def match(product: str, t) -> list[str]:
    """SKUs a pci.ids product name means, by the resolver's own name rules."""
    from gpulse.identity.candidates import model_word_candidates
    from gpulse.identity.rawname import parse_vgpu, vgpu_board

    key = t.name_key(product)
    if key in t.names:
        return list(t.names[key])
    if SKIPPED_WORDS & set(key.split()):
        return []
    vgpu = parse_vgpu(product, t)
    if vgpu is not None:
        part = vgpu_board(vgpu.board, t)
        return [s.sku for s in t.skus_matching(part)] if part else []
    found = model_word_candidates(key, t, strict=True)
    return [s.sku for s in found.skus] if found else []


def generate(pci_ids_text: str) -> str:
    from gpulse.identity.tables import load_tables

    t = load_tables(generated=False)
    version, devices = read_pci_ids(pci_ids_text)
    rows: list[tuple[int, str, str, str, str]] = []  # (id, subsystem, sku, chip, pci.ids name)
    for dev in devices:
        chip, names = products(dev.name)
        skus = list(dict.fromkeys(s for p in names for s in match(p, t)))
        for sku in skus:
            rows.append((dev.device_id, "", sku, chip, dev.name))
        for sub_id, sub_name in dev.subsystems:
            narrower = [s for s in match(sub_name, t) if s in skus]
            if narrower and len(narrower) < len(skus):
                rows.extend((dev.device_id, f"0x{sub_id:04X}", s, chip, sub_name) for s in narrower)
    buf = io.StringIO()
    buf.write("# Generated by tools/gen_pci_ids.py from the PCI ID Repository (pci.ids) -- do not edit;\n")
    buf.write(f"# pci.ids Version: {version}. Regenerate: make pciids. Hand rows: pci_ids.csv.\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["device_id", "subsystem_id", "sku", "chip", "pciids_name"])
    for device_id, sub, sku, chip, name in sorted(rows, key=lambda r: (r[0], r[1], r[2])):
        w.writerow([f"0x{device_id:04X}", sub, sku, chip, name])
    return buf.getvalue()


def version_of(csv_text: str) -> str:
    """The pci.ids version a generated file records."""
    m = re.search(r"pci\.ids Version: (\S+?)\.", csv_text)
    return m[1] if m else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pci-ids", default=DEFAULT_PCI_IDS, help="pci.ids file (default %(default)s)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 when --out differs from a fresh generation")
    args = ap.parse_args(argv)
    try:
        with open(args.pci_ids, encoding="utf-8", errors="replace") as fh:
            text = generate(fh.read())
    except OSError as exc:
        print(f"gen_pci_ids: cannot read {args.pci_ids}: {exc.strerror} (install Debian's pci.ids: make deb-deps)",
              file=sys.stderr)
        return 2
    if args.check:
        with open(args.out, encoding="utf-8") as fh:
            current = fh.read()
        if current != text:
            print(f"gen_pci_ids: {args.out} is stale (generated from pci.ids {version_of(current) or '?'}, "
                  f"installed {version_of(text) or '?'}): run make pciids", file=sys.stderr)
            return 1
        return 0
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(f"wrote {args.out}: {sum(1 for _ in iter_rows(text))} rows")
    return 0


def iter_rows(text: str) -> Iterator[list[str]]:
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    yield from list(csv.reader(lines))[1:]


if __name__ == "__main__":
    sys.exit(main())
