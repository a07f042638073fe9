"""Which container holds which GPU (kubelet PodResources) and which pod a PID is in.

PodSource(config) refreshes allocations on its own thread every
`kubelet.refresh-interval`, off the tick; current() hands the sampler an immutable
PodView. A failed refresh keeps the last good allocations and shows up=False with the
error (rendered as gpulse_source_up{source="kubelet"} 0); retries back off exponentially up to the
refresh interval.

PodResources names pods by namespace/name, a process's cgroup names them by UID. The
join comes from a pod directory: any callable `uid -> (namespace, name)`,
`(namespace, name, {container_id: container_name})`, an object with .namespace and
.name (and optionally .container_ids), or None; typically the node's pod
list from the Kubernetes API (field selector spec.nodeName), kept in memory by its
owner and so cheap to call every tick. Without one the attributor falls back to
elimination (see agent/attribution.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

from .cgroup import PidOwner, PidResolver
from .devices import DeviceId, is_gpu_resource, parse_device_id
from .podresources import Backoff, PodResourcesClient, PodResourcesError

log = logging.getLogger(__name__)

_MAX_LOGGED_IDS = 1000


@dataclass(frozen=True, slots=True)
class Allocation:
    """One device the kubelet assigned to one container."""
    namespace: str
    pod: str
    container: str
    resource: str
    device: DeviceId


@dataclass(frozen=True, slots=True)
class PodIdentity:
    namespace: str
    name: str
    containers: Mapping[str, str] = field(default_factory=dict)  # container id (64 hex, no runtime prefix) -> name


PodDirectory = Callable[[str], Any]


def _strip_runtime(container_id: str) -> str:
    """'containerd://abc' (API server form) -> 'abc' (cgroup form)."""
    return container_id.rpartition("://")[2]


def as_identity(found: Any) -> Optional[PodIdentity]:
    """Normalize what a pod directory answers into a PodIdentity (None stays None)."""
    if found is None or isinstance(found, PodIdentity):
        return found
    if hasattr(found, "namespace") and hasattr(found, "name"):  # e.g. apiserver.PodInfo
        containers = getattr(found, "container_ids", None) or {}
        return PodIdentity(found.namespace, found.name,
                           MappingProxyType({_strip_runtime(k): v for k, v in dict(containers).items()}))
    if isinstance(found, tuple) and len(found) in (2, 3):
        containers = found[2] if len(found) == 3 else {}
        return PodIdentity(str(found[0]), str(found[1]),
                           MappingProxyType({_strip_runtime(k): v for k, v in dict(containers).items()}))
    raise TypeError(f"pod directory answered {type(found).__name__}; expected (namespace, name[, containers]), a pod or None")


@dataclass(frozen=True)
class PodView:
    allocations: tuple = ()  # Allocation
    allocatable: tuple = ()  # DeviceId of every attributable device on the node
    up: bool = False
    age_seconds: Optional[float] = None
    error: str = "kubelet not yet refreshed"
    resolver: Optional[PidResolver] = field(default=None, compare=False, repr=False)
    directory: Optional[PodDirectory] = field(default=None, compare=False, repr=False)

    def resolve_pid(self, pid: int) -> Optional[PidOwner]:
        return self.resolver.resolve(pid) if self.resolver is not None else None

    def retain_pids(self, pids) -> None:
        if self.resolver is not None:
            self.resolver.retain(pids)

    def pod_for_uid(self, uid: str) -> Optional[PodIdentity]:
        if self.directory is None:
            return None
        try:
            return as_identity(self.directory(uid))
        except Exception as exc:  # a broken directory must not break the tick
            log.debug("pod directory lookup %s failed: %s", uid, exc)
            return None


def _gpu_devices(device_lists, extra_resources, on_malformed, where: str):
    """(resource name, DeviceId) for each well-formed GPU device id in ContainerDevices lists."""
    for devices in device_lists:
        if not is_gpu_resource(devices.resource_name, extra_resources):
            continue
        for raw in devices.device_ids:
            dev = parse_device_id(raw)
            if dev is None:
                if on_malformed:
                    on_malformed(raw, f"{where} {devices.resource_name}")
                continue
            yield devices.resource_name, dev


def parse_allocations(response, extra_resources=(), on_malformed=None) -> tuple:
    """ListPodResourcesResponse -> tuple[Allocation] for GPU resources."""
    return tuple(Allocation(pod.namespace, pod.name, container.name, resource, dev)
                 for pod in response.pod_resources for container in pod.containers
                 for resource, dev in _gpu_devices(container.devices, extra_resources, on_malformed,
                                                   f"{pod.namespace}/{pod.name}/{container.name}"))


def parse_allocatable(response, extra_resources=(), on_malformed=None) -> tuple:
    """AllocatableResourcesResponse -> tuple[DeviceId] for GPU resources."""
    return tuple(dev for _, dev in _gpu_devices(response.devices, extra_resources, on_malformed, "allocatable"))


class PodSource:
    def __init__(self, config, pod_directory: Optional[PodDirectory] = None,
                 client: Optional[PodResourcesClient] = None, clock: Callable[[], float] = time.monotonic,
                 timeout_seconds: float = 2.0):
        self.config = config
        self.interval = float(config.kubelet_refresh_interval)
        self.extra_resources = tuple(config.kubelet_resource_names)
        self.client = client or PodResourcesClient(config.kubelet_pod_resources_socket, timeout_seconds)
        self.resolver = PidResolver(config.path_procfs, revalidate_seconds=self.interval, clock=clock)
        self.directory = pod_directory
        self._clock = clock
        self._lock = threading.Lock()
        self._allocations: tuple = ()
        self._allocatable: tuple = ()
        self._last_success: Optional[float] = None
        self._up = False
        self._error = "kubelet not yet refreshed"
        self._logged_ids: set = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.backoff = Backoff(base=min(0.5, self.interval), ceiling=self.interval)
        self.refreshes = 0

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpulse-kubelet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.client.timeout_seconds + 1.0)
            self._thread = None
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ok = self.refresh()
            except Exception as exc:  # noqa: BLE001 - a surprise must not end the refresh thread
                log.exception("kubelet refresh failed")
                with self._lock:
                    self._up, self._error = False, f"{type(exc).__name__}: {exc}"
                ok = False
            delay = self.interval if ok else self.backoff.next_delay()
            self._wake.wait(delay)
            self._wake.clear()

    # --- one refresh ---------------------------------------------------------------

    def _malformed(self, raw: str, where: str) -> None:
        if raw in self._logged_ids or len(self._logged_ids) >= _MAX_LOGGED_IDS:
            return
        self._logged_ids.add(raw)
        log.warning("kubelet device id %r (%s) is not a known form; skipped", raw, where)

    def refresh(self) -> bool:
        """List (and GetAllocatableResources) once; True on success. Safe to call directly."""
        self.refreshes += 1
        try:
            allocations = parse_allocations(self.client.list(), self.extra_resources, self._malformed)
        except PodResourcesError as exc:
            self.client.reset()
            with self._lock:
                if self._up or self._error != str(exc):
                    log.warning("%s; keeping the last good pod allocations", exc)
                self._up, self._error = False, str(exc)
            return False
        try:
            allocatable = parse_allocatable(self.client.allocatable(), self.extra_resources, self._malformed)
        except PodResourcesError as exc:  # kubelets before 1.21 lack it: replicas come from List
            log.debug("%s", exc)
            allocatable = None
        with self._lock:
            self._allocations = allocations
            if allocatable is not None:
                self._allocatable = allocatable
            self._last_success = self._clock()
            if not self._up and self._error != "kubelet not yet refreshed":
                log.info("kubelet PodResources answers again")
            self._up, self._error = True, ""
        self.backoff.reset()
        return True

    def current(self) -> PodView:
        with self._lock:
            age = None if self._last_success is None else max(0.0, self._clock() - self._last_success)
            return PodView(self._allocations, self._allocatable, self._up, age, self._error,
                           self.resolver, self.directory)
