"""Host PID -> (pod UID, container id) through `<procfs>/<pid>/cgroup`.

Handles cgroup v1 (one line per hierarchy) and v2 (`0::/path`), the kubelet's systemd
driver (`kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`) and its
cgroupfs driver (`/kubepods/burstable/pod<uid>/<id>`), for containerd, CRI-O
(`crio-<id>.scope`) and Docker (`docker-<id>.scope`). Paths seen through a cgroup
namespace (`/../../kubepods-...`) parse the same. A process in no pod maps to None.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import Optional

# A pod UID is an RFC 4122 UUID (the systemd driver writes '_' for '-'); static pods
# use the 32-hex hash of their manifest instead.
_POD = re.compile(
    r"(?:^|[/-])pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})"
    r"(?:\.slice)?(?:/|$)")
_CONTAINER = re.compile(r"^(?:cri-containerd-|crio-|docker-|containerd-)?(?P<id>[0-9a-f]{64})(?:\.scope)?$")


@dataclass(frozen=True, slots=True)
class PidOwner:
    pod_uid: str  # with dashes, as the API server spells it
    container_id: str  # 64 hex; "" when the process sits in the pod cgroup itself (pause, conmon)


def parse_cgroup(text: str) -> Optional[PidOwner]:
    """Contents of /proc/<pid>/cgroup -> PidOwner, or None for a process in no pod."""
    for line in text.splitlines():
        _, _, path = line.partition(":")
        _, _, path = path.partition(":")
        m = _POD.search(path)
        if not m:
            continue
        uid = m["uid"].replace("_", "-")
        rest = path[m.end():].strip("/")
        leaf = rest.split("/")[0] if rest else ""
        c = _CONTAINER.match(leaf)
        return PidOwner(uid, c["id"] if c else "")
    return None


def read_start_time(procfs: str, pid: int) -> Optional[int]:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None when the PID is gone."""
    try:
        with open(f"{procfs}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


class PidResolver:
    """Caches PID -> PidOwner; a PID's entry is dropped when the PID goes, and its start
    time is re-checked at most every `revalidate_seconds` so a reused PID is re-mapped.
    Not thread-safe: the sampler's tick is its only caller."""

    def __init__(self, procfs: str = "/proc", revalidate_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.procfs = procfs.rstrip("/") or "/"
        self.revalidate_seconds = revalidate_seconds
        self._clock = clock
        # pid -> (start_time, owner, checked_at)
        self._cache: dict[int, tuple[Optional[int], Optional[PidOwner], float]] = {}
        self.reads = 0  # cgroup files read, for tests and self-metrics

    def resolve(self, pid: int) -> Optional[PidOwner]:
        now = self._clock()
        hit = self._cache.get(pid)
        if hit is not None:
            start, owner, checked = hit
            if now - checked < self.revalidate_seconds:
                return owner
            current = read_start_time(self.procfs, pid)
            if current == start and current is not None:
                self._cache[pid] = (start, owner, now)
                return owner
        return self._load(pid, now)

    def _load(self, pid: int, now: float) -> Optional[PidOwner]:
        start = read_start_time(self.procfs, pid)
        try:
            with open(f"{self.procfs}/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            self._cache.pop(pid, None)  # gone (or not visible): ask again next time
            return None
        self.reads += 1
        owner = parse_cgroup(text)
        self._cache[pid] = (start, owner, now)
        return owner

    def retain(self, pids: Iterable[int]) -> None:
        """Forget every PID not in `pids` (the processes NVML reports this tick)."""
        keep: Container[int] = pids if isinstance(pids, (set, frozenset, dict)) else set(pids)
        for pid in [p for p in self._cache if p not in keep]:
            del self._cache[pid]

    def __len__(self) -> int:
        return len(self._cache)
