"""Pure GPU identity normalization: raw NVML facts -> one canonical GpuRecord.

Order (DESIGN section 6): PCI device id (+ subsystem id), then the reported memory bucketed
to a nominal size, then name patterns (exact, truncated, vGPU, MIG device, model words),
then a fallback that keeps the raw name. Every fact comes from the tables; an unknown part
is never an error.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional, TypedDict, TypeVar, Union

from .records import GpuRecord
from .tables import MigTable, PartSpec, PciRow, Sku, Tables, tables

NVIDIA_VENDOR_ID = 0x10DE

_T = TypeVar("_T")
_E = TypeVar("_E")


class PartClaim(TypedDict):
    """What a label or instance type says about a part ("" / None: it does not say)."""
    model: str
    memory_gb: Optional[int]
    form_factor: str


class PartFields(PartClaim):
    """What a name, label or instance type pins down about a part, with its sku ("" when none)."""
    sku: str


class SkuFields(PartFields):
    """merge(): the fields a set of candidate SKUs agree on."""
    chip: str
    compute_capability: str
    mig_table: str


@dataclass(frozen=True)
class Candidates:
    """SKUs one source of evidence allows, and which source that was."""
    skus: tuple[Sku, ...]
    source: str  # pciid | name
    specific: bool  # True: matched a known name or id; False: matched a model word only


def split_pci_id(value: Union[int, str, None]) -> tuple[Optional[int], Optional[int]]:
    """NVML's 32-bit id (device << 16 | vendor, e.g. 0x233010DE) or a bare 16-bit device id
    -> (device id, vendor id or None). Accepts ints and hex strings; None stays None."""
    if value is None or value == "":
        return None, None
    if isinstance(value, str):
        value = int(value, 16)
    value = int(value)
    if value > 0xFFFF:
        return value >> 16, value & 0xFFFF
    return value, None


def family_for(compute_capability: str, t: Optional[Tables] = None) -> str:
    t = t or tables()
    try:
        major_s, _, minor_s = str(compute_capability).partition(".")
        major, minor = int(major_s), int(minor_s or 0)
    except ValueError:
        return ""
    for rule in t.grammar["families"]:
        if rule["major"] == major and minor < rule.get("minor_below", math.inf):
            return rule["family"]
    return ""


def nominal_memory_gb(memory_mib: Optional[float], sizes: Iterable[int], t: Optional[Tables] = None) -> Optional[int]:
    """The nominal size (GB) whose ratio to the reported GiB is nearest 1, within tolerance."""
    if not memory_mib or memory_mib <= 0:
        return None
    t = t or tables()
    tol = t.grammar["memory_tolerance"]
    gib = memory_mib / 1024.0
    best: Optional[tuple[float, int]] = None
    for size in set(sizes):
        ratio = gib / size
        if tol["min_ratio"] <= ratio <= tol["max_ratio"]:
            score = abs(math.log(ratio))
            if best is None or score < best[0]:
                best = (score, size)
    return best[1] if best else None


def _by_memory(skus: tuple[Sku, ...], memory_mib: Optional[float], t: Tables) -> tuple[Sku, ...]:
    """Keep the candidates whose nominal size is the one the memory buckets to."""
    if not memory_mib:
        return skus
    size = nominal_memory_gb(memory_mib, [s.memory_gb for s in skus], t)
    return tuple(s for s in skus if s.memory_gb == size)


def _pci_candidates(device_id: int, subsystem_id: Optional[int], raw_name: str, t: Tables) -> tuple[Sku, ...]:
    rows: Sequence[PciRow] = t.pci[device_id]
    if subsystem_id is not None:
        narrowed = [r for r in rows if r.subsystem_id == subsystem_id]
        rows = narrowed or rows
    key = t.name_key(raw_name)
    named = [r for r in rows if key and key in (t.name_key(r.nvml_name), t.name_key(r.pciids_name))]
    rows = named or rows
    return tuple(dict.fromkeys(t.skus[r.sku] for r in rows))


def _name_candidates(raw_name: str, t: Tables) -> Optional[Candidates]:
    name = raw_name.strip()
    truncated = False
    for mark in t.grammar["truncation_marks"]:
        if name.endswith(mark):
            name, truncated = name[: -len(mark)].rstrip(), True
    if name.upper() in t.grammar["meaningless_names"]:
        return None
    key = t.name_key(name)
    if not key:
        return None
    if not truncated and key in t.names:
        return Candidates(tuple(t.skus[s] for s in t.names[key]), "name", True)
    if truncated:
        found = tuple(dict.fromkeys(t.skus[s] for k, skus in t.names.items() if k.startswith(key) for s in skus))
        if found:
            return Candidates(found, "name", True)
    return _model_word_candidates(key, t)


def _model_word_candidates(key: str, t: Tables) -> Optional[Candidates]:
    """A known model as whole words inside an unknown name ('NVIDIA H100 80GB HBM3e')."""
    padded = f" {key} "
    for model_key, model in t.model_keys:
        if f" {model_key} " in padded:
            skus = tuple(s for s in t.skus.values() if s.model == model)
            words = key.split()
            ffs = {t.grammar["form_factor_words"][w] for w in words if w in t.grammar["form_factor_words"]}
            if ffs:
                skus = tuple(s for s in skus if s.form_factor in ffs) or skus
            sizes = {int(m) for m in t.grammar["memory_pattern"].findall(key)}
            if sizes:
                skus = tuple(s for s in skus if s.memory_gb in sizes) or skus
            return Candidates(skus, "name", False)
    return None


def parse_vgpu(raw_name: str, t: Optional[Tables] = None) -> Optional[tuple[Optional[PartSpec], str]]:
    """'NVIDIA A10-4Q' -> (PartSpec or None, 'A10-4Q'); None when not a vGPU profile name."""
    t = t or tables()
    for pattern in t.grammar["vgpu_patterns"]:
        m = pattern.match(raw_name.strip())
        if m:
            board = m["board"]
            boards = {t.name_key(k): v for k, v in t.grammar["vgpu_boards"].items()}
            part = boards.get(t.name_key(board)) if t.name_key(board) else None
            slices = f"{m['slices']}-" if m["slices"] else ""
            profile = "-".join(f"{board}-{slices}{m['fb']}{m['cls']}".split())
            return part, profile
    return None


def _mig_device_candidates(profile: str, memory_mib: Optional[float], t: Tables) -> tuple[Sku, ...]:
    """Parent SKUs of a bare MIG device name: tables offering the profile, narrowed by the
    per-instance memory; canonical names win over driver aliases."""
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
        skus += t.skus_matching(PartSpec(model=table.model, memory_gb=table.memory_gb))
    return tuple(dict.fromkeys(skus))


def merge(skus: Iterable[Sku], specific: bool = True) -> SkuFields:
    """Fields all candidates agree on. A single SKU gives its name; several of one model and
    size give '<model>-<GB>GB'; a model-word match never claims a specific SKU."""
    skus = tuple(skus)

    def common(values: set[_T], empty: _E) -> Union[_T, _E]:
        return values.pop() if len(values) == 1 else empty

    model, memory_gb = common({s.model for s in skus}, ""), common({s.memory_gb for s in skus}, None)
    if specific and len({s.sku for s in skus}) == 1:
        sku = skus[0].sku
    else:
        sku = f"{model}-{memory_gb}GB" if model and memory_gb else ""
    return {"model": model, "sku": sku, "memory_gb": memory_gb, "chip": common({s.chip for s in skus}, ""),
            "form_factor": common({s.form_factor for s in skus}, ""),
            "compute_capability": common({s.compute_capability for s in skus}, ""),
            "mig_table": common({s.mig_table for s in skus}, "")}


def resolve_gpu(name: Optional[str], pci_device_id: Union[int, str, None] = None,
                pci_subsystem_id: Union[int, str, None] = None, memory_mib: Optional[float] = None,
                compute_capability: Optional[str] = None, *, virtualization_mode: Optional[str] = None,
                mig_capable: Optional[bool] = None, mig_enabled: Optional[bool] = None,
                mig_profiles: Iterable[str] = ()) -> GpuRecord:
    """Canonical record for one GPU from what NVML said about it. Never raises for an unknown
    part: it gets source 'fallback' and keeps its raw name."""
    t = tables()
    raw_name = str(name or "").strip()
    device_id, vendor_id = split_pci_id(pci_device_id)
    subsystem_id, _ = split_pci_id(pci_subsystem_id)
    memory_mib = int(memory_mib) if memory_mib else None
    vgpu = parse_vgpu(raw_name, t)
    mig_match = t.grammar["mig_device_pattern"].match(raw_name)
    mig_device_profile = mig_match["profile"] if mig_match else ""

    found: Optional[Candidates] = None
    if device_id is not None and device_id in t.pci:
        found = Candidates(_pci_candidates(device_id, subsystem_id, raw_name, t), "pciid", True)
    elif vgpu is not None:
        part, _ = vgpu
        found = Candidates(tuple(t.skus_matching(part)), "name", True) if part else None
    elif mig_device_profile:
        skus = _mig_device_candidates(mig_device_profile, memory_mib, t)
        found = Candidates(skus, "name", True) if skus else None
    else:
        found = _name_candidates(raw_name, t)

    # A vGPU guest or a MIG device sees a slice of the memory: it cannot pick the part's size.
    memory_speaks = memory_mib and vgpu is None and not mig_device_profile
    if found and memory_speaks:
        narrowed = _by_memory(found.skus, memory_mib, t)
        if not narrowed and found.source == "name":
            # the name names a size the memory contradicts ('NVIDIA H100' on an 80 GB card)
            models = {s.model for s in found.skus}
            narrowed = _by_memory(tuple(s for s in t.skus.values() if s.model in models), memory_mib, t)
            found = Candidates(narrowed, "name", False) if narrowed else found
        elif narrowed:
            found = Candidates(narrowed, found.source, found.specific)

    fields = merge(found.skus, found.specific) if found and found.skus else merge(())
    source = found.source if found and fields["model"] else "fallback"
    if source == "fallback" and memory_speaks and memory_mib:  # memory_speaks implies memory_mib
        sizes = {s.memory_gb for s in t.skus.values()}
        fields["memory_gb"] = nominal_memory_gb(memory_mib, sizes, t) or round(memory_mib / 1024)

    cc = str(compute_capability).strip() if compute_capability else fields["compute_capability"]
    mig_table = t.mig.get(fields["mig_table"])
    profiles = [mig_device_profile] if mig_device_profile else list(mig_profiles or ())
    counts = Counter(mig_table.canonical(p) if mig_table else p for p in profiles if p)
    if vgpu is not None:
        virtualization = "vgpu"
    else:
        virtualization = t.grammar["virtualization_modes"].get(str(virtualization_mode or "none").lower(), "none")
    return GpuRecord(
        vendor="nvidia" if vendor_id in (None, NVIDIA_VENDOR_ID) else f"0x{vendor_id:04x}",
        family=family_for(cc, t) if cc else "",
        chip=fields["chip"],
        model=fields["model"],
        sku=fields["sku"],
        form_factor=fields["form_factor"],
        memory_gb=fields["memory_gb"],
        memory_mib=memory_mib,
        compute_capability=cc,
        pci_device_id=f"0x{device_id:04X}" if device_id is not None else "",
        virtualization=virtualization,
        vgpu_profile=vgpu[1] if vgpu else "",
        mig_capable=bool(mig_capable) if mig_capable is not None else bool(mig_table) or bool(mig_device_profile),
        mig_enabled=bool(mig_enabled) or bool(mig_device_profile),
        mig_profiles=tuple(sorted(counts.items())),
        source=source,
        raw_name=raw_name,
    )
