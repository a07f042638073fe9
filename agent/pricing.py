"""GPU prices per GPU-hour, by canonical SKU or model x cloud x pricing kind.

The built-in table (gpulse/data/gpu_prices.yaml) holds public on-demand list prices, each
row with the date it was read and its source. `--cost.price-file` is a YAML file of the same
shape: its rows add to the built-in ones or replace those with the same key, and
`builtin: false` drops the built-in table. A GPU whose SKU and model have no row gets no
price: never a guess (a neighbouring model, another pricing kind or a vGPU share is not the
same product).

File shape:

    currency: USD            # one currency per table
    builtin: true            # keep the built-in rows (user files only)
    prices:
      - sku: H100-SXM5-80GB  # or model: H100 (any SKU of the model)
        cloud: aws           # gpulse identity's cloud, or "*" for any cloud (user files only)
        kind: on-demand      # pricing kind: on-demand, spot, reserved, or any word of yours
        per_gpu_hour: 6.88   # or instance_per_hour with gpus
        instance_type: p5.48xlarge
        instance_per_hour: 55.04
        gpus: 8
        region: us-east-1    # where the price was read (informational)
        as_of: "2026-11-09"
        source: https://...

The pricing kind of a node is `--cost.pricing-kind`, or with `auto` the capacity type its
labels state (Karpenter, EKS managed node groups, GKE Spot/preemptible, AKS Spot pools),
else on-demand.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional

from . import safeyaml
from .errors import OneLineError, one_line

BUILTIN = "gpulse/data/gpu_prices.yaml"
ANY_CLOUD = "*"
DEFAULT_KIND = "on-demand"
_KIND_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_ROW_KEYS = {"sku", "model", "cloud", "kind", "per_gpu_hour", "instance_type", "instance_per_hour", "gpus",
             "region", "as_of", "source"}
_TOP_KEYS = {"currency", "builtin", "prices"}
MAX_ROWS = 4_000  # a price file is data a person writes: anything larger is a mistake (and
# 4,000 full rows stay within gpulse.safeyaml's MAX_NODES)
MAX_BYTES = 4 * 1024 * 1024
MAX_GPUS = 64  # GPUs of one instance (the largest have 16)

# Node labels that state a node's capacity type, and what their values mean here. Facts:
# Karpenter `karpenter.sh/capacity-type` (spot, on-demand, reserved), EKS managed node groups
# `eks.amazonaws.com/capacityType` (ON_DEMAND, SPOT, CAPACITY_BLOCK), GKE
# `cloud.google.com/gke-spot` and `cloud.google.com/gke-preemptible` ("true"), AKS
# `kubernetes.azure.com/scalesetpriority` (spot).
CAPACITY_LABELS: tuple[tuple[str, Mapping[str, str]], ...] = (
    ("karpenter.sh/capacity-type", {"spot": "spot", "on-demand": "on-demand", "reserved": "reserved"}),
    ("eks.amazonaws.com/capacityType", {"SPOT": "spot", "ON_DEMAND": "on-demand", "CAPACITY_BLOCK": "reserved"}),
    ("cloud.google.com/gke-spot", {"true": "spot"}),
    ("cloud.google.com/gke-preemptible", {"true": "spot"}),
    ("kubernetes.azure.com/scalesetpriority", {"spot": "spot"}),
)


class PriceFileError(OneLineError):
    """A price table that cannot be used; str() names the file and the row."""


@dataclass(frozen=True)
class Price:
    """One row of the table: what a GPU-hour of one SKU or model costs on one cloud."""
    per_gpu_hour: float
    currency: str
    sku: str  # exactly one of sku and model is set
    model: str
    cloud: str
    kind: str
    region: str = ""
    instance_type: str = ""
    as_of: str = ""
    source: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.sku, self.model, self.cloud, self.kind)


class PriceTable:
    def __init__(self, rows: Mapping[tuple[str, str, str, str], Price], currency: str) -> None:
        self.rows = dict(rows)
        self.currency = currency

    def lookup(self, sku: str, model: str, cloud: str, kind: str) -> Optional[Price]:
        """The row for this GPU: its SKU before its model, its cloud before any cloud."""
        for c in (cloud, ANY_CLOUD):
            if not c:
                continue
            for key in ((sku, "", c, kind), ("", model, c, kind)):
                if key[0] or key[1]:
                    row = self.rows.get(key)
                    if row is not None:
                        return row
        return None

    @classmethod
    def load(cls, path: str = "") -> PriceTable:
        """The built-in table, with the user's file over it when `path` is given."""
        builtin = _parse(_read_builtin(), BUILTIN, user=False)
        if not path:
            return builtin
        data = _read_file(path)
        user = _parse(data, path, user=True)
        if data.get("builtin", True) is False:
            return user
        if user.rows and user.currency != builtin.currency:
            raise PriceFileError(f"{path}: currency {user.currency} differs from the built-in table's "
                                 f"{builtin.currency}: set `builtin: false` to use only your rows")
        return PriceTable({**builtin.rows, **user.rows}, builtin.currency)


def pricing_kind(setting: str, labels: Mapping[str, str]) -> str:
    """The kind to price a node at: the setting, or with "auto" what the node's labels say."""
    if setting != "auto":
        return setting
    for label, values in CAPACITY_LABELS:
        kind = values.get(labels.get(label, ""))
        if kind:
            return kind
    return DEFAULT_KIND


def parse_kind(text: Any) -> str:
    """--cost.pricing-kind: auto, or a pricing kind word."""
    t = str(text).strip()
    if t != "auto" and not _KIND_RE.match(t):
        raise ValueError(f"invalid pricing kind {t!r} (auto, on-demand, spot, reserved or a lower-case word)")
    return t


# --- reading ---------------------------------------------------------------------------
def _read_builtin() -> dict[str, Any]:
    text = resources.files("gpulse").joinpath("data").joinpath("gpu_prices.yaml").read_text(encoding="utf-8")
    return _document(lambda: safeyaml.loads(text), BUILTIN)


def _read_file(path: str) -> dict[str, Any]:
    return _document(lambda: safeyaml.load_file(path, MAX_BYTES), path)


def _document(load: Callable[[], Any], where: str) -> dict[str, Any]:
    """The top mapping of a price file, read by gpulse.safeyaml (bounded size, depth and
    aliases); every refusal a PriceFileError naming the file."""
    try:
        data = load()
    except OSError as exc:
        raise PriceFileError(f"{where}: cannot read the price file: {exc.strerror or one_line(exc)}") from None
    except safeyaml.YamlError as exc:
        raise PriceFileError(exc.at(where)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PriceFileError(f"{where}: expected a mapping with `prices:`")
    return data


def _parse(data: Mapping[str, Any], where: str, *, user: bool) -> PriceTable:
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        raise PriceFileError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    currency = data.get("currency", "USD")
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency):
        raise PriceFileError(f"{where}: currency: expected an ISO 4217 code such as USD, got {currency!r}")
    if "builtin" in data and not isinstance(data["builtin"], bool):
        raise PriceFileError(f"{where}: builtin: expected true or false, got {data['builtin']!r}")
    rows = data.get("prices") or []
    if not isinstance(rows, list):
        raise PriceFileError(f"{where}: prices: expected a list of rows")
    if len(rows) > MAX_ROWS:
        raise PriceFileError(f"{where}: prices: {len(rows)} rows, more than {MAX_ROWS}")
    out: dict[tuple[str, str, str, str], Price] = {}
    for i, row in enumerate(rows):
        price = _row(row, f"{where}: prices[{i}]", currency, user)
        if price.key in out:
            raise PriceFileError(f"{where}: prices[{i}]: a second row for {_describe(price)}")
        out[price.key] = price
    return PriceTable(out, currency)


def _row(row: Any, where: str, currency: str, user: bool) -> Price:
    if not isinstance(row, dict):
        raise PriceFileError(f"{where}: expected a mapping")
    unknown = sorted(str(k) for k in row if k not in _ROW_KEYS)
    if unknown:
        raise PriceFileError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_ROW_KEYS))})")
    sku, model = _text(row, "sku", where), _text(row, "model", where)
    if bool(sku) == bool(model):
        raise PriceFileError(f"{where}: name exactly one of sku and model")
    cloud = _text(row, "cloud", where)
    if not cloud:
        raise PriceFileError(f"{where}: cloud: missing (aws, gcp, azure, ... or \"*\")")
    if cloud == ANY_CLOUD and not user:
        raise PriceFileError(f"{where}: cloud: the built-in table names its cloud")
    kind = _text(row, "kind", where) or DEFAULT_KIND
    if not _KIND_RE.match(kind):
        raise PriceFileError(f"{where}: kind: {kind!r} is not a lower-case word such as on-demand or spot")
    per_gpu = _number(row, "per_gpu_hour", where)
    instance = _number(row, "instance_per_hour", where)
    gpus = row.get("gpus")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= MAX_GPUS):
        raise PriceFileError(f"{where}: gpus: expected an integer 1-{MAX_GPUS}, got {_shown(gpus)}")
    if instance is not None and gpus is not None:
        derived = instance / gpus
        if per_gpu is None:
            per_gpu = derived
        elif abs(per_gpu - derived) > 0.005 * derived + 1e-6:
            raise PriceFileError(f"{where}: per_gpu_hour {per_gpu:g} is not instance_per_hour / gpus "
                                 f"({derived:.6g})")
    if per_gpu is None:
        raise PriceFileError(f"{where}: per_gpu_hour: missing (or give instance_per_hour and gpus)")
    return Price(per_gpu, currency, sku, model, cloud, kind, _text(row, "region", where),
                 _text(row, "instance_type", where), _text(row, "as_of", where), _text(row, "source", where))


def _text(row: Mapping[str, Any], key: str, where: str) -> str:
    v = row.get(key, "")
    if v is None:
        return ""
    if isinstance(v, datetime.date):  # YAML reads an unquoted 2026-11-09 as a date
        return v.isoformat()
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise PriceFileError(f"{where}: {key}: expected text, got {v!r}")
    text = str(v).strip()
    if len(text) > 256 or "\n" in text:
        raise PriceFileError(f"{where}: {key}: longer than 256 characters or several lines")
    return text


def _number(row: Mapping[str, Any], key: str, where: str) -> Optional[float]:
    v = row.get(key)
    if v is None:
        return None
    try:
        number = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
    except OverflowError:  # an integer past float range
        number = math.inf
    if not math.isfinite(number) or number <= 0:
        raise PriceFileError(f"{where}: {key}: expected a positive number, got {_shown(v)}")
    return number


def _shown(v: object) -> str:
    """A value as a message quotes it: repr, at most 40 characters."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(p: Price) -> str:
    return f"{'sku ' + p.sku if p.sku else 'model ' + p.model} on {p.cloud} ({p.kind})"
