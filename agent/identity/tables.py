"""Load and check the identity data tables under agent/identity/data/.

All knowledge about parts, clouds and names lives in those files; this module only reads
them, checks every cross-reference once (a bad row is a one-line TableError naming the file
and row) and builds the lookup indexes the resolver uses. Loaded once per process.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Optional, TypedDict

import yaml


class TableError(Exception):
    """A data table that cannot be used; str() names the file and the row."""


@dataclass(frozen=True)
class Sku:
    sku: str
    model: str
    chip: str
    form_factor: str  # sxm | pcie | nvl | superchip | "" (not stated)
    memory_gb: Optional[int]  # None: the variants of this id differ; NVML's memory tells
    compute_capability: str
    mig_table: str  # key into mig tables, "" when the part has no MIG


@dataclass(frozen=True)
class PciRow:
    device_id: int
    subsystem_id: Optional[int]  # subsystem device id (high 16 bits of NVML's value)
    sku: str
    name: str  # the driver's name (hand rows) or the PCI ID Repository's (generated rows)
    generated: bool  # True: from pciids.csv (tools/gen_pci_ids.py); False: pci_ids.csv


@dataclass(frozen=True)
class MigProfile:
    name: str
    max: int
    slices: int
    memory_mib: tuple[int, ...] = ()  # what NVML reports per instance; several where drivers differ


@dataclass(frozen=True)
class MigTable:
    key: str
    model: str
    memory_gb: int
    min_driver: str
    profiles: dict[str, MigProfile]  # canonical name -> MigProfile
    aliases: dict[str, str]  # driver/board-dependent name -> canonical name

    def canonical(self, profile: str) -> str:
        return self.aliases.get(profile, profile)


@dataclass(frozen=True)
class PartSpec:
    """What a cloud name or instance type says about a part: a SKU, or a model with
    whatever size / form factor the vocabulary states."""
    sku: str = ""
    model: str = ""
    memory_gb: Optional[int] = None
    form_factor: str = ""


@dataclass(frozen=True)
class InstanceType:
    cloud: str
    name: str
    part: PartSpec
    count: int
    fractional: bool = False


@dataclass(frozen=True)
class LabelVocabulary:
    key: str  # label key, or "catalog:<cloud>" for names that are not labels
    kind: str  # vocabulary | nvml-name | vendor | memory-mib
    cloud: str = ""
    case_insensitive: bool = False
    memory_label: str = ""
    values: dict[str, PartSpec] = field(default_factory=dict)  # value (folded when case-insensitive) -> PartSpec
    strip_suffixes: tuple[re.Pattern[str], ...] = ()

    def lookup(self, value: str) -> Optional[PartSpec]:
        return self.values.get(value.lower() if self.case_insensitive else value)


class ProviderIdRule(TypedDict):
    cloud: str
    pattern: re.Pattern[str]  # named groups zone / region when the id carries them


class _DmiRuleRequired(TypedDict):
    file: str  # a DMI file name (DMI_FILES in node.py)
    cloud: str


class DmiRule(_DmiRuleRequired, total=False):
    """One DMI test: exactly one of equals / startswith / contains."""
    equals: str
    startswith: str
    contains: str
    instance_type_from: str  # the DMI file holding the instance type


class Clouds(TypedDict):
    """clouds.yaml, regexes compiled."""
    provider_id: list[ProviderIdRule]
    region_from_zone: dict[str, re.Pattern[str]]  # cloud -> pattern with a `region` group
    dmi: list[DmiRule]
    hypervisor_vendors: list[str]
    instance_type_pattern: re.Pattern[str]
    label_prefixes: dict[str, str]  # label key prefix -> cloud
    instance_type_labels: list[str]
    region_labels: list[str]
    zone_labels: list[str]


class _FamilyRuleRequired(TypedDict):
    major: int
    family: str


class FamilyRule(_FamilyRuleRequired, total=False):
    minor_below: int


class MemoryTolerance(TypedDict):
    min_ratio: float
    max_ratio: float


class GeForceGrammar(TypedDict):
    pattern: re.Pattern[str]  # groups series, rest
    drop_words: frozenset[str]  # upper-case
    laptop_words: frozenset[str]  # upper-case
    laptop_phrases: tuple[re.Pattern[str], ...]


class ModelPattern(TypedDict):
    pattern: re.Pattern[str]  # group n fills the model; a matched laptop group marks a laptop part
    model: str  # str.format template over the pattern's groups


class Grammar(TypedDict):
    """names.yaml, regexes compiled."""
    brand_words: tuple[str, ...]  # upper-case
    truncation_marks: list[str]
    meaningless_names: set[str]  # name keys
    form_factor_patterns: dict[str, re.Pattern[str]]  # form factor -> pattern for one upper-case word
    memory_pattern: re.Pattern[str]
    vgpu_patterns: list[re.Pattern[str]]  # groups board, slices, fb, cls
    vgpu_boards: dict[str, PartSpec]  # name key of the board -> part
    mig_device_pattern: re.Pattern[str]  # groups parent, ci, profile
    geforce: GeForceGrammar
    model_patterns: list[ModelPattern]
    virtualization_modes: dict[str, str]  # NVML mode (lower-case) -> record value
    families: list[FamilyRule]
    memory_tolerance: MemoryTolerance
    mig_memory_tolerance: float


@dataclass(frozen=True)
class Tables:
    skus: dict[str, Sku]  # sku -> Sku
    pci: dict[int, tuple[PciRow, ...]]  # device id -> its hand rows where it has any, else its generated rows
    names: dict[str, tuple[str, ...]]  # name key -> skus
    model_keys: tuple[tuple[str, str], ...]  # (name key of a model, model), longest key first
    mig: dict[str, MigTable]  # table key -> MigTable
    instance_types: dict[str, dict[str, InstanceType]]  # cloud -> {folded name -> InstanceType}
    labels: dict[str, LabelVocabulary]  # label key -> LabelVocabulary
    clouds: Clouds
    grammar: Grammar

    def skus_matching(self, part: PartSpec) -> list[Sku]:
        """The SKUs a PartSpec can mean, in table order."""
        if part.sku:
            return [self.skus[part.sku]]
        return [s for s in self.skus.values()
                if s.model == part.model
                and (part.memory_gb is None or s.memory_gb == part.memory_gb)
                and (not part.form_factor or s.form_factor == part.form_factor)]

    def name_key(self, name: str) -> str:
        """Upper-case words without punctuation or leading brand words:
        'Tesla-T4' and 'NVIDIA T4' both give 'T4'."""
        return _words(name, self.grammar["brand_words"])


def _words(name: str, brands: tuple[str, ...]) -> str:
    words = re.sub(r"[^A-Z0-9]+", " ", name.upper()).split()
    while len(words) > 1 and words[0] in brands:
        words.pop(0)
    return " ".join(words)


_DATA = "data"


def _read(name: str) -> str:
    try:
        return resources.files(__package__).joinpath(_DATA).joinpath(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise TableError(f"identity/data/{name}: cannot read: {exc}") from None


def _csv_rows(name: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row dict) of a CSV file whose '#' lines are comments."""
    text = _read(name)
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise TableError(f"identity/data/{name}: empty")
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in lines)))
    # One row per data line; a quoted field spanning lines (none in the tables) would only
    # shift the numbers in messages, so the shorter side ends the walk.
    for (lineno, _), row in zip(lines[1:], reader, strict=False):
        yield lineno, {k: (v or "").strip() for k, v in row.items()}


def _yaml(name: str) -> dict[str, Any]:
    """The YAML file's top-level mapping; its contents are checked by the loaders."""
    try:
        data = yaml.safe_load(_read(name))
    except yaml.YAMLError as exc:
        raise TableError(f"identity/data/{name}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TableError(f"identity/data/{name}: expected a mapping")
    return data


def _hex(text: str, where: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise TableError(f"{where}: invalid hex id {text!r}") from None


def _part(spec: Any, skus: dict[str, Sku], where: str) -> PartSpec:
    """A YAML entry naming a sku or a model (spec is unchecked YAML data)."""
    if not isinstance(spec, dict):
        raise TableError(f"{where}: expected a mapping with sku or model")
    part = PartSpec(sku=str(spec.get("sku", "")), model=str(spec.get("model", "")),
                    memory_gb=spec.get("memory_gb"), form_factor=str(spec.get("form_factor", "")))
    if part.sku and part.sku not in skus:
        raise TableError(f"{where}: unknown sku {part.sku!r}")
    if not part.sku and not any(s.model == part.model for s in skus.values()):
        raise TableError(f"{where}: unknown model {part.model!r}")
    return part


def _load_skus() -> dict[str, Sku]:
    skus: dict[str, Sku] = {}
    for n, row in _csv_rows("skus.csv"):
        where = f"identity/data/skus.csv:{n}"
        try:
            sku = Sku(row["sku"], row["model"], row["chip"], row["form_factor"],
                      int(row["memory_gb"]) if row["memory_gb"] else None, row["compute_capability"],
                      row["mig_table"])
        except (KeyError, ValueError) as exc:
            raise TableError(f"{where}: bad row ({exc})") from None
        if sku.sku in skus:
            raise TableError(f"{where}: duplicate sku {sku.sku!r}")
        if sku.form_factor not in ("", "sxm", "pcie", "nvl", "superchip"):
            raise TableError(f"{where}: unknown form_factor {sku.form_factor!r}")
        skus[sku.sku] = sku
    return skus


def _load_mig() -> dict[str, MigTable]:
    tables: dict[str, MigTable] = {}
    for key, spec in _yaml("mig_profiles.yaml").items():
        where = f"identity/data/mig_profiles.yaml: {key}"
        profiles: dict[str, MigProfile] = {}
        for pname, p in (spec.get("profiles") or {}).items():
            mem = p.get("memory_mib", ())
            mem = tuple(mem) if isinstance(mem, list) else ((mem,) if mem else ())
            profiles[pname] = MigProfile(pname, int(p["max"]), int(p["slices"]), mem)
        aliases: dict[str, str] = {}
        for alias, a in (spec.get("aliases") or {}).items():
            if a.get("canonical") not in profiles:
                raise TableError(f"{where}: alias {alias!r} names unknown profile {a.get('canonical')!r}")
            aliases[alias] = a["canonical"]
        tables[key] = MigTable(key, str(spec["model"]), int(spec["memory_gb"]),
                               str(spec.get("min_driver", "")), profiles, aliases)
    return tables


def _load_instance_types(skus: dict[str, Sku]) -> dict[str, dict[str, InstanceType]]:
    out: dict[str, dict[str, InstanceType]] = {}
    for cloud, spec in _yaml("instance_types.yaml").items():
        types = out.setdefault(cloud, {})
        for family, fam in (spec.get("families") or {}).items():
            where = f"identity/data/instance_types.yaml: {cloud}.{family}"
            part = _part(fam, skus, where)
            for size, count in fam["sizes"].items():
                name = f"{family}.{size}"
                types[name.lower()] = InstanceType(cloud, name, part, int(count), bool(fam.get("fractional")))
        for name, t in (spec.get("types") or {}).items():
            where = f"identity/data/instance_types.yaml: {cloud}.{name}"
            types[name.lower()] = InstanceType(cloud, name, _part(t, skus, where), int(t["count"]),
                                               bool(t.get("fractional")))
    return out


def _load_labels(skus: dict[str, Sku]) -> dict[str, LabelVocabulary]:
    out: dict[str, LabelVocabulary] = {}
    for key, spec in _yaml("cloud_labels.yaml").items():
        where = f"identity/data/cloud_labels.yaml: {key}"
        kind = spec.get("kind")
        if kind not in ("vocabulary", "nvml-name", "vendor", "memory-mib"):
            raise TableError(f"{where}: unknown kind {kind!r}")
        ci = bool(spec.get("case_insensitive"))
        values = {(v.lower() if ci else str(v)): _part(p, skus, f"{where}: {v}")
                  for v, p in (spec.get("values") or {}).items()}
        out[key] = LabelVocabulary(key, kind, str(spec.get("cloud", "")), ci,
                                   str(spec.get("memory_label", "")), values,
                                   tuple(re.compile(s) for s in spec.get("strip_suffixes") or ()))
    return out


def _load_clouds() -> Clouds:
    c = _yaml("clouds.yaml")
    return Clouds(
        provider_id=[ProviderIdRule(cloud=r["cloud"], pattern=re.compile(r["pattern"])) for r in c["provider_id"]],
        region_from_zone={k: re.compile(v) for k, v in c["region_from_zone"].items()},
        dmi=c["dmi"],
        hypervisor_vendors=c["hypervisor_vendors"],
        instance_type_pattern=re.compile(c["instance_type_pattern"]),
        label_prefixes=c["label_prefixes"],
        instance_type_labels=c["instance_type_labels"],
        region_labels=c["region_labels"],
        zone_labels=c["zone_labels"],
    )


def _load_grammar(skus: dict[str, Sku]) -> Grammar:
    g = _yaml("names.yaml")
    return Grammar(
        brand_words=tuple(w.upper() for w in g["brand_words"]),
        truncation_marks=g["truncation_marks"],
        meaningless_names={_words(str(n), ()) for n in g["meaningless_names"]},
        form_factor_patterns={ff: re.compile(p) for ff, p in g["form_factor_patterns"].items()},
        memory_pattern=re.compile(g["memory_pattern"]),
        vgpu_patterns=[re.compile(p) for p in g["vgpu_patterns"]],
        vgpu_boards={_words(str(k), ()): _part(v, skus, f"identity/data/names.yaml: vgpu_boards.{k}")
                     for k, v in g["vgpu_boards"].items()},
        mig_device_pattern=re.compile(g["mig_device_pattern"], re.IGNORECASE),
        geforce=GeForceGrammar(pattern=re.compile(g["geforce"]["pattern"], re.IGNORECASE),
                               drop_words=frozenset(w.upper() for w in g["geforce"]["drop_words"]),
                               laptop_words=frozenset(w.upper() for w in g["geforce"]["laptop_words"]),
                               laptop_phrases=tuple(re.compile(rf"\b{re.escape(p)}\b", re.IGNORECASE)
                                                    for p in g["geforce"].get("laptop_phrases", ()))),
        model_patterns=[ModelPattern(pattern=re.compile(p["pattern"], re.IGNORECASE), model=str(p["model"]))
                        for p in g.get("model_patterns") or ()],
        virtualization_modes=g["virtualization_modes"],
        families=g["families"],
        memory_tolerance=g["memory_tolerance"],
        mig_memory_tolerance=g["mig_memory_tolerance"],
    )


def _pci_rows(name: str, generated: bool, skus: dict[str, Sku]) -> Iterator[PciRow]:
    for n, row in _csv_rows(name):
        where = f"identity/data/{name}:{n}"
        if row["sku"] not in skus:
            raise TableError(f"{where}: unknown sku {row['sku']!r}")
        sub = _hex(row["subsystem_id"], where) if row["subsystem_id"] else None
        label = row["pciids_name"] if generated else row["nvml_name"]
        yield PciRow(_hex(row["device_id"], where), sub, row["sku"], label, generated)


def load_tables(generated: bool = True) -> Tables:
    """Read and check every table. generated=False leaves out pciids.csv, the table
    tools/gen_pci_ids.py derives from the PCI ID Repository with the help of the others."""
    skus = _load_skus()
    mig = _load_mig()
    for s in skus.values():
        if s.mig_table and s.mig_table not in mig:
            raise TableError(f"identity/data/skus.csv: {s.sku}: unknown mig_table {s.mig_table!r}")
    grammar = _load_grammar(skus)
    t = Tables(skus, {}, {}, (), mig, _load_instance_types(skus), _load_labels(skus),
               _load_clouds(), grammar)
    names: dict[str, tuple[str, ...]] = {}

    def add_name(name: str, sku: str) -> None:
        if name:
            key = t.name_key(name)
            if sku not in names.setdefault(key, ()):
                names[key] += (sku,)

    hand: dict[int, tuple[PciRow, ...]] = {}
    for r in _pci_rows("pci_ids.csv", False, skus):
        hand[r.device_id] = hand.get(r.device_id, ()) + (r,)
    pci: dict[int, tuple[PciRow, ...]] = {}
    if generated:
        for r in _pci_rows("pciids.csv", True, skus):
            pci[r.device_id] = pci.get(r.device_id, ()) + (r,)
    pci.update(hand)  # a hand row says what pci.ids cannot: it replaces the id's generated rows
    for n, row in _csv_rows("names.csv"):
        if row["sku"] not in skus:
            raise TableError(f"identity/data/names.csv:{n}: unknown sku {row['sku']!r}")
        add_name(row["name"], row["sku"])
    models = {t.name_key(s.model.replace("-", " ")): s.model for s in skus.values()}
    model_keys = tuple(sorted(models.items(), key=lambda kv: (-len(kv[0]), kv[0])))
    return Tables(skus, pci, names, model_keys, mig, t.instance_types, t.labels, t.clouds, grammar)


@lru_cache(maxsize=1)
def tables() -> Tables:
    return load_tables()
