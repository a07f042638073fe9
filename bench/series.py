"""Synthetic GPU-node series for the benchmarks (shaped like ../shared/reference/performance.md
part B): 50 gauge families, N/50 series each, 6-8 labels (GPU, UUID, model, MIG profile and
instance, host, namespace, pod, container), NVML-like values; four value snapshots rotate so
every render formats fresh values."""

from __future__ import annotations

import random

from gpulse.family import Family

FAMILIES = 50
SNAPSHOTS = 4
PROFILES = ("1g.10gb", "2g.20gb", "3g.40gb", "7g.80gb")


def label_rows(n_series: int, seed: int = 7):
    rng = random.Random(seed)
    per_family = max(1, n_series // FAMILIES)
    rows = []
    for i in range(per_family):
        gpu = i % 8
        rows.append(
            (
                str(gpu),
                f"GPU-{gpu:08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}",
                "NVIDIA H100 80GB HBM3",
                PROFILES[i % 4],
                str(i % 7),
                "ip-10-0-12-34.eu-west-1.compute.internal",
                f"team-{i % 9}",
                f"job-{i:05d}-{rng.getrandbits(24):06x}-worker-{i % 4}",
            )
        )
    return rows


LABELNAMES = ("gpu", "UUID", "modelName", "GPU_I_PROFILE", "GPU_I_ID", "Hostname", "namespace", "pod", "container")


def _value(rng: random.Random, kind: int) -> float:
    if kind == 0:
        return float(rng.randrange(101))  # percent
    if kind == 1:
        return float(rng.randrange(1 << 36))  # bytes
    if kind == 2:
        return float(rng.randrange(210, 1980))  # MHz
    if kind == 3:
        return rng.random()  # ratio
    return round(rng.uniform(60, 700), 3)  # watts


def snapshots(n_series: int, seed: int = 11):
    """SNAPSHOTS lists of Family; label tuples are shared between snapshots, as a collector
    that keeps its per-device tuples would hand them over."""
    rng = random.Random(seed)
    rows = label_rows(n_series)
    out = []
    for _ in range(SNAPSHOTS):
        fams = []
        for f in range(FAMILIES):
            width = 6 + f % 3  # 6, 7 or 8 labels
            names = LABELNAMES[:width]
            fam = Family(f"gpu_metric_{f:02d}", "gauge", f"Synthetic GPU metric {f}.", names)
            fam.samples = [(row[:width], _value(rng, f % 5)) for row in rows]
            fams.append(fam)
        out.append(fams)
    return out
