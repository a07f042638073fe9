"""This node's DRA devices: ResourceSlices (resource.k8s.io/v1), listed and watched with
the field selector spec.nodeName=<node>, indexed by (driver, pool, device).

The kubelet's PodResources API names a DRA allocation by driver, pool and device name only
(gpulse.kube.source). What that device is comes from the ResourceSlice the driver published:
its attributes. gpulse reads the ones that tie a device to NVML, whatever the driver:

  uuid        the device's own UUID (GPU-... for a GPU, MIG-... for a static MIG device)
  parentUUID  a MIG device's physical GPU, with
  profile     its MIG profile ("1g.10gb"); all that a not-yet-created (dynamic) MIG
              device carries
  pciBusID    resource.kubernetes.io/pciBusID, the standard attribute, for drivers that
              publish no uuid; else the driver's own pciBusID, or pcieBusID (what NVIDIA's
              driver published before it added the standard one)

An attribute name without a domain is in the driver's own domain, so "uuid" and
"<driver>/uuid" are the same attribute; any other domain is accepted last. NVIDIA's DRA
driver (gpu.nvidia.com) publishes `type` (gpu, mig, vfio), `uuid`, `parentUUID` and `profile`
(kubernetes-sigs/dra-driver-nvidia-gpu, cmd/gpu-kubelet-plugin/deviceinfo.go and mig.go);
dcgm-exporter's DRA mapping reads the same four.

A pool may span several slices and is republished with a higher generation: only the slices
of a pool's newest generation count (as the scheduler does). The index holds at most
MAX_DEVICES devices; a 404 from the list means the API server serves no resource.k8s.io/v1
(Kubernetes before 1.34, or DRA off): the index stays empty and up, and the watcher asks
again every NOT_SERVED_RECHECK_SECONDS.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Optional, Protocol

from .apiserver import KubeClient, KubeError, ListWatcher

log = logging.getLogger(__name__)

API_PATH = "/apis/resource.k8s.io/v1/resourceslices"
MAX_DEVICES = 4096  # devices one node's slices may name before the index stops taking more
NOT_SERVED_RECHECK_SECONDS = 300.0
PCI_BUS_ID_ATTRIBUTE = "resource.kubernetes.io/pciBusID"

DeviceKey = tuple[str, str, str]  # (driver, pool, device name)


@dataclass(frozen=True, slots=True)
class SliceDevice:
    """What a driver published about one device; "" where it published nothing."""
    driver: str
    pool: str
    name: str
    uuid: str = ""
    parent_uuid: str = ""
    profile: str = ""
    pci_bus_id: str = ""
    type: str = ""


@dataclass(frozen=True, slots=True)
class Slice:
    """One ResourceSlice, reduced to what the index needs."""
    name: str
    driver: str
    pool: str
    generation: int
    devices: tuple[SliceDevice, ...]


class SliceLookup(Protocol):
    """What attribution asks of the index (SliceIndex, or a stand-in in tests)."""

    @property
    def synced(self) -> bool: ...

    def device(self, driver: str, pool: str, name: str) -> Optional[SliceDevice]: ...

    def has_driver(self, driver: str) -> bool: ...


def _attribute(attributes: Mapping[str, Any], driver: str, name: str) -> str:
    """The string (or version) value of attribute `name`: unqualified, in the driver's domain,
    then in any other domain; "" when absent or of another type."""
    for key in (name, f"{driver}/{name}"):
        value = _string(attributes.get(key))
        if value:
            return value
    suffix = "/" + name
    for key, raw in attributes.items():
        if isinstance(key, str) and key.endswith(suffix):
            value = _string(raw)
            if value:
                return value
    return ""


def _string(raw: object) -> str:
    if not isinstance(raw, Mapping):
        return ""
    for kind in ("string", "version"):
        value = raw.get(kind)
        if isinstance(value, str):
            return value
    return ""


def _pci_bus_id(attributes: Mapping[str, Any], driver: str) -> str:
    return (_string(attributes.get(PCI_BUS_ID_ATTRIBUTE)) or _attribute(attributes, driver, "pciBusID")
            or _attribute(attributes, driver, "pcieBusID"))


def parse_slice(obj: Mapping[str, Any]) -> Optional[Slice]:
    """A ResourceSlice object as the API server's JSON decodes it -> Slice; None when it is
    not one this node can use (no driver, pool or name)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        return None
    name, driver = meta.get("name"), spec.get("driver")
    pool = spec.get("pool") or {}
    if not (isinstance(name, str) and isinstance(driver, str) and driver and isinstance(pool, Mapping)):
        return None
    pool_name, generation = pool.get("name"), pool.get("generation", 0)
    if not isinstance(pool_name, str) or not pool_name:
        return None
    devices: list[SliceDevice] = []
    for dev in spec.get("devices") or ():
        if not isinstance(dev, Mapping) or not isinstance(dev.get("name"), str):
            continue
        attrs = dev.get("attributes")
        if not isinstance(attrs, Mapping):  # v1beta1 wrapped them in "basic"
            basic = dev.get("basic")
            attrs = basic.get("attributes") if isinstance(basic, Mapping) else None
        attrs = attrs if isinstance(attrs, Mapping) else {}
        devices.append(SliceDevice(driver, pool_name, dev["name"], _attribute(attrs, driver, "uuid"),
                                   _attribute(attrs, driver, "parentUUID"), _attribute(attrs, driver, "profile"),
                                   _pci_bus_id(attrs, driver),
                                   _attribute(attrs, driver, "type")))
    return Slice(name, driver, pool_name, generation if isinstance(generation, int) else 0, tuple(devices))


class SliceIndex:
    """This node's slices by name and their devices by (driver, pool, device name); the device
    map is replaced wholesale on every change, so readers need no lock."""

    def __init__(self, max_devices: int = MAX_DEVICES) -> None:
        self.max_devices = max_devices
        self._slices: dict[str, Slice] = {}
        self._devices: Mapping[DeviceKey, SliceDevice] = MappingProxyType({})
        self._drivers: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._warned_full = False
        self.synced = False
        self.version = 0

    def device(self, driver: str, pool: str, name: str) -> Optional[SliceDevice]:
        return self._devices.get((driver, pool, name))

    def has_driver(self, driver: str) -> bool:
        return driver in self._drivers

    def devices(self) -> tuple[SliceDevice, ...]:
        return tuple(self._devices.values())

    # --- writers (the watch thread) ---

    def replace(self, slices: Iterable[Slice]) -> None:
        with self._lock:
            self._slices = {s.name: s for s in slices}
            self._publish()
        self.synced = True

    def apply(self, kind: str, item: Slice) -> None:
        with self._lock:
            if kind == "DELETED":
                self._slices.pop(item.name, None)
            else:
                self._slices[item.name] = item
            self._publish()

    def _publish(self) -> None:
        newest: dict[tuple[str, str], int] = {}
        for s in self._slices.values():
            key = (s.driver, s.pool)
            newest[key] = max(newest.get(key, s.generation), s.generation)
        devices: dict[DeviceKey, SliceDevice] = {}
        full = False
        for s in sorted(self._slices.values(), key=lambda s: s.name):
            if s.generation != newest[(s.driver, s.pool)]:
                continue  # an older generation of the pool, being replaced
            for d in s.devices:
                if len(devices) >= self.max_devices:
                    full = True
                    break
                devices[(d.driver, d.pool, d.name)] = d
        if full and not self._warned_full:
            self._warned_full = True
            log.warning("resource slices: this node's slices name more than %d devices; the rest are not indexed",
                        self.max_devices)
        self._devices = MappingProxyType(devices)
        self._drivers = frozenset(d for d, _ in newest)
        self.version += 1


class ResourceSliceWatcher(ListWatcher[SliceIndex]):
    """Keeps a SliceIndex current from list + watch of this node's ResourceSlices (source
    "resourceslices"); the session loop is the pod watch's (gpulse.kube.apiserver.ListWatcher)."""

    what = "resourceslices"
    idle_when_unserved = NOT_SERVED_RECHECK_SECONDS

    def __init__(self, client: KubeClient, node_name: str, index: Optional[SliceIndex] = None) -> None:
        super().__init__(client, node_name, index or SliceIndex(), "resourceslices")
        self.served = True  # False while the API server answers 404 for resource.k8s.io/v1

    def _path(self, extra: str = "") -> str:
        return KubeClient.on_node(API_PATH, self.node_name, extra)

    def _watch_path(self, resource_version: str) -> str:
        return self._path(KubeClient.watch_query(resource_version))

    def _list(self) -> bool:
        """List this node's slices into the index; False when the API is not served (404)."""
        try:
            items, self._rv = self.client.list_objects(self._path())
        except KubeError as exc:
            if exc.status != 404:
                raise
            if self.served:
                log.info("resource slices: %s; this API server serves no resource.k8s.io/v1 "
                         "(Kubernetes before 1.34, or DRA off): DRA allocations stay unresolved", exc)
            self.served = False
            self.index.replace(())
            return False
        self.served = True
        self.index.replace(s for s in (parse_slice(o) for o in items) if s is not None)
        self.relists += 1
        return True

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        item = parse_slice(obj)
        if item is not None:
            self.index.apply(kind, item)
