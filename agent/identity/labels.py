"""gpulse.dev/ node labels and the NFD local feature file that publishes them.

NFD's local source reads key=value lines from features.d/, ignores dot-files and files over
64 KiB, drops lines after their `# +expiry-time`, and rejects values that are not valid
Kubernetes label values (<= 63 characters, [A-Za-z0-9_.-], alphanumeric at both ends).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Optional

from ..names import is_label_key, is_label_value, sanitize_label_value
from .records import Conflict, GpuRecord, NodeRecord

PREFIX = "gpulse.dev/"
SCHEMA = "v1"
NFD_MAX_BYTES = 65536


def _agreed(values: Iterable[object]) -> Optional[str]:
    """The one value all GPUs share; None when they differ or none is known."""
    distinct = {v for v in values}
    if len(distinct) != 1:
        return None
    v = distinct.pop()
    if v is None or v == "":
        return None
    return str(v).lower() if isinstance(v, bool) else str(v)


def node_labels(gpus: Iterable[GpuRecord], node: NodeRecord, conflicts: Iterable[Conflict] = (),
                unknown_count: int = 0) -> dict[str, str]:
    """The node's gpulse.dev/ label set. Per-GPU facts appear when every GPU agrees; model and
    sku say 'mixed' when they differ. Every value is a valid label value."""
    gpus = list(gpus)
    raw: dict[str, object] = {"schema": SCHEMA, "count": len(gpus)}
    if gpus:
        per_gpu = {
            "vendor": "vendor", "family": "family", "chip": "chip", "form-factor": "form_factor",
            "memory-gb": "memory_gb", "compute-capability": "compute_capability",
            "pci-device-id": "pci_device_id", "virtualization": "virtualization",
            "vgpu-profile": "vgpu_profile", "identity-source": "source",
        }
        for key, attr in per_gpu.items():
            raw[key] = _agreed(getattr(g, attr) for g in gpus)
        raw["model"] = _agreed(g.model or None for g in gpus) or ("mixed" if len({g.model for g in gpus}) > 1 else None)
        raw["sku"] = _agreed(g.sku or None for g in gpus) or ("mixed" if len({g.sku for g in gpus}) > 1 else None)
        raw["memory-mib"] = min((g.memory_mib for g in gpus if g.memory_mib), default=None)
        raw["mig.capable"] = str(any(g.mig_capable for g in gpus)).lower()
        raw["mig.enabled"] = str(any(g.mig_enabled for g in gpus)).lower()
        profiles: Counter[str] = Counter()
        for g in gpus:
            profiles.update(dict(g.mig_profiles))
        for profile, count in profiles.items():
            raw[f"mig.{profile.replace('+', '.')}.count"] = count
        raw["raw-name-hash"] = hashlib.sha256(
            "\n".join(sorted({g.raw_name for g in gpus})).encode()).hexdigest()[:12]
    raw.update({
        "cloud": node.cloud, "region": node.region, "zone": node.zone,
        "instance-type": node.instance_type, "driver-version": node.driver_version,
        "cuda-version": node.cuda_version,
        "identity-conflicts": len(list(conflicts)), "unknown-gpus": unknown_count,
    })
    out: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue
        text = sanitize_label_value(str(value))
        if text and is_label_key(PREFIX + key):
            out[PREFIX + key] = text
    return dict(sorted(out.items()))


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_nfd_features(labels: Mapping[str, object], expiry_seconds: float, now: Optional[float] = None) -> str:
    """The feature file text; raises ValueError naming the first invalid key or value."""
    if expiry_seconds <= 0:
        raise ValueError(f"NFD expiry must be positive, got {expiry_seconds!r}")
    now = time.time() if now is None else now
    lines = ["# gpulse node identity; rewritten by the agent, do not edit",
             f"# +expiry-time={rfc3339(now + expiry_seconds)}"]
    for key, value in labels.items():
        if not is_label_key(key):
            raise ValueError(f"NFD label key {key!r} is not a valid Kubernetes label key")
        if not is_label_value(str(value)):
            raise ValueError(f"NFD label {key}: value {value!r} is not a valid Kubernetes label value")
        lines.append(f"{key}={value}")
    text = "\n".join(lines) + "\n"
    if len(text.encode()) > NFD_MAX_BYTES:
        raise ValueError(f"NFD feature file would be {len(text.encode())} bytes, over NFD's {NFD_MAX_BYTES}-byte limit")
    return text


def write_nfd_features(path: str, labels: Mapping[str, object], expiry_seconds: float,
                       now: Optional[float] = None) -> None:
    """Write the NFD local feature file atomically: a dot-file in the same directory (NFD
    ignores dot-files), flushed, then renamed over the target."""
    text = render_nfd_features(labels, expiry_seconds, now)
    directory, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
