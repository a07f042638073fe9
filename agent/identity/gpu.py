"""Pure GPU identity normalization: raw NVML facts -> one canonical GpuRecord.

NVML gives four facts about a part: its name, its PCI device id (+ subsystem id), its memory and
its compute capability. Each allows a set of SKUs (candidates.py). Where the id and the name agree
(or one is missing) they decide, memory picks the variant, and the rest is checked against them.
Where they name different parts, the one that memory and compute capability also support wins
(the PCI id on a tie), and every fact the majority outvotes is kept on the record as a Conflict,
never dropped: an inconsistent device is published with its disagreement, not silently.
A MIG device's or vGPU guest's memory is a slice, so it never chooses the part. An unknown part
is never an error: it gets source 'fallback' and keeps its raw name.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Optional, TypedDict, TypeVar, Union

from .candidates import (
    Candidates,
    by_memory,
    fits_memory,
    measured_memory_gb,
    name_candidates,
    pci_candidates,
)
from .candidates import nominal_memory_gb as _nominal_memory_gb
from .rawname import ParsedName, memory_words, parse
from .records import Conflict, GpuRecord
from .tables import Sku, Tables, tables

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


def nominal_memory_gb(memory_mib: Optional[float], sizes: Iterable[Optional[int]],
                      t: Optional[Tables] = None) -> Optional[int]:
    """The nominal size (GB) whose ratio to the reported GiB is nearest 1, within tolerance."""
    return _nominal_memory_gb(memory_mib, sizes, t or tables())


def normalize_compute_capability(value: object) -> str:
    """'9.0', (9, 0), '9.0a' -> '9.0'; '[N/A]' or nothing -> ''."""
    if isinstance(value, tuple) and len(value) == 2:
        value = f"{value[0]}.{value[1]}"
    m = re.match(r"^\s*(\d+)\.(\d+)", str(value or ""))
    return f"{int(m[1])}.{int(m[2])}" if m else ""


def merge(skus: Iterable[Sku], specific: bool = True) -> SkuFields:
    """Fields all candidates agree on. A single SKU gives its name; several of one model and
    size give '<model>-<GB>GB'; a model-word match never claims a specific SKU."""
    skus = tuple(skus)

    def common(values: set[_T], empty: _E) -> Union[_T, _E]:
        return values.pop() if len(values) == 1 else empty

    # a SKU whose size the tables leave open does not contradict the sizes the others state
    model, memory_gb = common({s.model for s in skus}, ""), common({s.memory_gb for s in skus if s.memory_gb}, None)
    if specific and len(skus) == 1 and skus[0].memory_gb is not None:
        sku = skus[0].sku
    else:
        sku = f"{model}-{memory_gb}GB" if model and memory_gb else ""
    return {"model": model, "sku": sku, "memory_gb": memory_gb, "chip": common({s.chip for s in skus}, ""),
            "form_factor": common({s.form_factor for s in skus}, ""),
            "compute_capability": common({s.compute_capability for s in skus}, ""),
            "mig_table": common({s.mig_table for s in skus}, "")}


def _label(skus: Iterable[Sku], specific: bool = True) -> str:
    """How a conflict names a candidate set: its SKU, else its model(s)."""
    fields = merge(skus, specific)
    return fields["sku"] or fields["model"] or "/".join(sorted({s.model for s in skus}))


class _Facts:
    """The NVML facts of one device and which of them may vote."""

    def __init__(self, parsed: ParsedName, raw_name: str, device_id: Optional[int],
                 memory_mib: Optional[int], cc: str, virtualization: str) -> None:
        self.parsed, self.raw_name, self.device_id, self.cc = parsed, raw_name, device_id, cc
        self.memory_mib = memory_mib
        # A vGPU guest or a MIG device sees a slice of the memory: it cannot speak for the part.
        self.memory_speaks = (bool(memory_mib) and parsed.vgpu is None and not parsed.mig_device
                              and virtualization != "vgpu")

    def support(self, skus: tuple[Sku, ...], t: Tables) -> int:
        """How many of memory and compute capability agree with a candidate set."""
        votes = 0
        if self.memory_speaks and self.memory_mib and any(fits_memory(s, self.memory_mib, t) for s in skus):
            votes += 1
        if self.cc and any(s.compute_capability in ("", self.cc) for s in skus):
            votes += 1
        return votes


def _decide(facts: _Facts, by_pci: Optional[Candidates], by_name: Optional[Candidates], t: Tables,
            conflicts: list[Conflict]) -> Optional[Candidates]:
    """The candidate set NVML's facts agree on; a fact outvoted becomes a Conflict."""
    if by_pci is None or by_name is None or not by_pci.skus or not by_name.skus:
        return by_pci if by_pci is not None and by_pci.skus else by_name
    both = tuple(s for s in by_pci.skus if s in by_name.skus)
    if both:
        return Candidates(both, "pciid", True)
    models = {s.model for s in by_name.skus}
    same_model = tuple(s for s in by_pci.skus if s.model in models)
    if same_model:  # one model: the id knows the variant; a name stating another one is a conflict
        if by_name.specific:
            named, idd = merge(by_name.skus), merge(same_model)
            for f in ("form_factor", "memory_gb"):
                if named[f] not in (None, "") and idd[f] not in (None, "") and named[f] != idd[f]:
                    conflicts.append(Conflict("nvml:name", facts.raw_name, f, str(named[f]), str(idd[f])))
        return Candidates(same_model, "pciid", True)
    pci_votes, name_votes = facts.support(by_pci.skus, t), facts.support(by_name.skus, t)
    winner, loser = (by_name, by_pci) if name_votes > pci_votes else (by_pci, by_name)
    if loser is by_pci:
        conflicts.append(Conflict("nvml:pci_device_id", f"0x{facts.device_id:04X}", "model",
                                  _label(by_pci.skus), _label(by_name.skus, by_name.specific)))
    else:
        conflicts.append(Conflict("nvml:name", facts.raw_name, "model",
                                  _label(by_name.skus, by_name.specific), _label(by_pci.skus)))
    return winner


def _check_memory(facts: _Facts, found: Candidates, t: Tables,
                  conflicts: list[Conflict]) -> tuple[Candidates, Optional[int]]:
    """Narrow to the variant the memory says; (candidates, memory_gb to publish or None for the
    candidates' own size). Called after the model vote: `conflicts` holds its outcome."""
    if not facts.memory_speaks or not facts.memory_mib:
        return found, None
    mib, model_outvoted = facts.memory_mib, bool(conflicts)
    narrowed = by_memory(found.skus, mib, t)
    if narrowed:
        return Candidates(narrowed, found.source, found.specific), None
    if found.source == "name" and not memory_words(t.name_key(facts.parsed.base), t):
        # a name that states no size ('NVIDIA H100'): any variant of its model(s)
        models = {s.model for s in found.skus}
        widened = by_memory(tuple(s for s in t.skus.values() if s.model in models), mib, t)
        if widened:
            return Candidates(widened, "name", False), None
    measured = measured_memory_gb(mib, t, tight=True)
    nominal = {s.memory_gb for s in found.skus if s.memory_gb}
    part = merge(found.skus)["memory_gb"]
    conflicts.append(Conflict("nvml:memory_total", f"{mib}MiB", "memory_gb", str(measured),
                              str(part) if part else "/".join(str(n) for n in sorted(nominal))))
    # More memory than the part has is a board built with more (it is there); less is a slice.
    # Where the model itself was outvoted, the part's own size stands.
    if measured and nominal and measured > max(nominal) and not model_outvoted:
        return found, measured
    return found, None


def _check_compute_capability(facts: _Facts, found: Candidates, conflicts: list[Conflict]) -> Candidates:
    if not facts.cc:
        return found
    fitting = tuple(s for s in found.skus if s.compute_capability in ("", facts.cc))
    if fitting:
        return Candidates(fitting, found.source, found.specific)
    part_cc = merge(found.skus)["compute_capability"] or "/".join(sorted({s.compute_capability for s in found.skus}))
    conflicts.append(Conflict("nvml:compute_capability", facts.cc, "compute_capability", facts.cc, part_cc))
    return found


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
    mem = int(memory_mib) if memory_mib else None
    cc = normalize_compute_capability(compute_capability)
    parsed = parse(raw_name, t)
    if parsed.vgpu is not None:
        virtualization = "vgpu"
    else:
        virtualization = t.grammar["virtualization_modes"].get(str(virtualization_mode or "none").lower(), "none")
    facts = _Facts(parsed, raw_name, device_id, mem, cc, virtualization)

    conflicts: list[Conflict] = []
    by_pci = pci_candidates(device_id, subsystem_id, t) if device_id is not None else None
    found = _decide(facts, by_pci, name_candidates(parsed, mem, t), t, conflicts)
    published_memory: Optional[int] = None
    if found is not None and found.skus:
        found, published_memory = _check_memory(facts, found, t, conflicts)
        found = _check_compute_capability(facts, found, conflicts)

    fields = merge(found.skus, found.specific) if found and found.skus else merge(())
    source = found.source if found and fields["model"] else "fallback"
    if published_memory is not None:
        fields["memory_gb"] = published_memory
    elif fields["memory_gb"] is None and facts.memory_speaks:
        fields["memory_gb"] = measured_memory_gb(mem, t)  # the part leaves it open, or is unknown
    if fields["model"] and fields["memory_gb"] and (not fields["sku"] or published_memory is not None):
        fields["sku"] = f"{fields['model']}-{fields['memory_gb']}GB"

    cc = cc or fields["compute_capability"]
    mig_table = t.mig.get(fields["mig_table"])
    profiles = [parsed.mig_profile] if parsed.mig_device else list(mig_profiles or ())
    counts = Counter(mig_table.canonical(p) if mig_table else p for p in profiles if p)
    return GpuRecord(
        vendor="nvidia" if vendor_id in (None, NVIDIA_VENDOR_ID) else f"0x{vendor_id:04x}",
        family=family_for(cc, t) if cc else "",
        chip=fields["chip"],
        model=fields["model"],
        sku=fields["sku"],
        form_factor=fields["form_factor"],
        memory_gb=fields["memory_gb"],
        memory_mib=mem,
        compute_capability=cc,
        pci_device_id=f"0x{device_id:04X}" if device_id is not None else "",
        virtualization=virtualization,
        vgpu_profile=parsed.vgpu.profile if parsed.vgpu else "",
        mig_capable=bool(mig_capable) if mig_capable is not None else bool(mig_table) or parsed.mig_device,
        mig_enabled=bool(mig_enabled) or parsed.mig_device,
        mig_profiles=tuple(sorted(counts.items())),
        source=source,
        raw_name=raw_name,
        mig_profile=parsed.mig_profile,
        conflicts=tuple(conflicts),
    )


__all__ = ["Candidates", "PartClaim", "PartFields", "SkuFields", "family_for", "merge", "nominal_memory_gb",
           "normalize_compute_capability", "resolve_gpu", "split_pci_id"]
