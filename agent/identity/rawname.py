"""Raw GPU names as NVML, nvidia-smi and CUDA print them, taken apart before any lookup.

A name may carry more than the part: a MIG device's profile ("NVIDIA H100 80GB HBM3 MIG 3g.40gb",
"MIG 1c.3g.71gb"), a vGPU type ("GRID V100D-8C", "NVIDIA A10-24Q"), or nvidia-smi's truncation
("NVIDIA RTX 6000 Ada Gene..."). `parse` splits those off, so the part's words are looked up alone
and a profile's "40gb" never competes with the parent's size. The grammar is data (names.yaml).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .tables import PartSpec, Tables

# Revision words the GeForce grammar drops ("NVIDIA GeForce RTX 5090 D v2" is an RTX 5090 D).
_REVISION = re.compile(r"^V\d+$")
# What tools wrap a name in: Python's bytes repr (pynvml before 11.5 returned bytes), an
# `nvidia-smi -L` line ("GPU 0: Tesla T4 (UUID: GPU-...)", "MIG 3g.40gb Device 0: (UUID: MIG-...)")
# and a table's persistence-mode / driver-model column ("NVIDIA H100 80GB HBM3     On", "... WDDM").
_WRAPPERS = (re.compile(r"^b(['\"])(?P<name>.*)\1$"),
             re.compile(r"^GPU \d+: (?P<name>.*?)(?: \(UUID: [^)]*\))?$"),
             re.compile(r"^(?P<name>MIG \S+)\s+Device\s+\d+: \(UUID: [^)]*\)$"),
             re.compile(r"^(?P<name>.*?\S)\s{2,}(?:On|Off|WDDM|TCC)$"))


@dataclass(frozen=True)
class VgpuName:
    board: str  # the board as the vGPU type names it: "V100D", "A10", "RTX Pro 6000 Blackwell DC"
    profile: str  # the vGPU type: "V100D-8C", "A100D-1-20C"
    part: Optional[PartSpec]  # the physical board; None when the board is not known


@dataclass(frozen=True)
class ParsedName:
    raw: str
    base: str  # the part's own name: MIG suffix and truncation mark removed
    truncated: bool
    more_words: bool  # cut after a space: the full name had at least one more word
    mig_profile: str = ""  # GPU-instance profile of a MIG device, as named ("3g.40gb")
    mig_compute_slices: Optional[int] = None  # "1c." of "MIG 1c.3g.71gb"
    vgpu: Optional[VgpuName] = None

    @property
    def mig_device(self) -> bool:
        return bool(self.mig_profile)


def unwrap(raw: str) -> str:
    """The name inside what a tool printed around it."""
    name = raw.strip()
    for pattern in _WRAPPERS:
        m = pattern.match(name)
        if m:
            name = m["name"].strip()
    return name


def parse(raw: str, t: Tables) -> ParsedName:
    name = " ".join(unwrap(raw).split())
    g = t.grammar
    truncated = more_words = False
    for mark in g["truncation_marks"]:
        if name.endswith(mark):
            cut = name[: -len(mark)]
            name, truncated, more_words = cut.rstrip(), True, cut != cut.rstrip()
            break
    m = g["mig_device_pattern"].match(name)
    if m:
        ci = m["ci"]
        return ParsedName(raw, m["parent"].strip(), truncated, more_words, m["profile"].lower(),
                          int(ci) if ci else None)
    vgpu = parse_vgpu(name, t) if not truncated else None
    return ParsedName(raw, name, truncated, more_words, vgpu=vgpu)


def parse_vgpu(name: str, t: Tables) -> Optional[VgpuName]:
    """'NVIDIA A10-4Q' -> VgpuName('A10', 'A10-4Q', part); None when not a vGPU type name."""
    patterns = t.grammar["vgpu_patterns"]
    for n, pattern in enumerate(patterns):
        m = pattern.match(name.strip())
        if not m:
            continue
        board = m["board"]
        part = vgpu_board(board, t)
        if part is None and n == len(patterns) - 1:
            return None  # a bare "<board>-<fb><class>" counts only for a known board
        slices = f"{m['slices']}-" if m["slices"] else ""
        profile = "-".join(f"{board}-{slices}{m['fb']}{m['cls']}".split())
        return VgpuName(board, profile, part)
    return None


def vgpu_board(board: str, t: Tables) -> Optional[PartSpec]:
    """The physical board of a vGPU board name: the table, else a model of that name."""
    key = t.name_key(board)
    part = t.grammar["vgpu_boards"].get(key)
    if part is not None:
        return part
    model = next((model for model_key, model in t.model_keys if model_key == key), None)
    return PartSpec(model=model) if model else None


def form_factor_words(key: str, t: Tables) -> set[str]:
    """Form factors the name's words state: 'V100 SXM3 32GB' -> {'sxm'}."""
    pats = t.grammar["form_factor_patterns"]
    return {ff for word in key.split() for ff, p in pats.items() if p.match(word)}


def memory_words(key: str, t: Tables) -> set[int]:
    """Sizes the name states: 'A100 80GB PCIE' -> {80}."""
    return {int(m) for m in t.grammar["memory_pattern"].findall(key)}


def geforce_model(base: str, t: Tables) -> Optional[tuple[str, bool]]:
    """(model, laptop) for a GeForce name by its grammar: 'NVIDIA GeForce RTX 4070 Ti SUPER' ->
    ('RTX-4070-Ti-SUPER', False); 'NVIDIA GeForce RTX 5080 Laptop GPU' -> ('RTX-5080-Laptop', True).
    None when the name is not a GeForce name."""
    g = t.grammar["geforce"]
    m = g["pattern"].match(" ".join(base.split()))
    if not m:
        return None
    rest = m["rest"]
    laptop = any(p.search(rest) for p in g["laptop_phrases"])
    for p in g["laptop_phrases"]:
        rest = p.sub(" ", rest)
    words: list[str] = []
    for word in re.sub(r"[^A-Za-z0-9]+", " ", rest).split():
        up = word.upper()
        if up in g["laptop_words"]:
            laptop = True
        elif up in g["drop_words"] or _REVISION.match(up) or t.grammar["memory_pattern"].fullmatch(up):
            continue
        else:
            words.append("SUPER" if up == "SUPER" else "Ti" if up == "TI" else word)
    if not words or not words[0][0].isdigit():
        return None
    return "-".join([m["series"].upper(), *words, *(["Laptop"] if laptop else [])]), laptop


def pattern_model(base: str, t: Tables) -> Optional[tuple[str, bool]]:
    """(model, laptop) for a workstation name by the grammar's model patterns; None if none fits."""
    name = " ".join(base.split())
    for rule in t.grammar["model_patterns"]:
        m = rule["pattern"].match(name)
        if m:
            groups = {k: (v or "") for k, v in m.groupdict().items()}
            laptop = bool(groups.get("laptop"))
            model = rule["model"].format(**groups)
            return (f"{model}-Laptop" if laptop else model), laptop
    return None
