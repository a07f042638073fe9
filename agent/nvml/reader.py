"""Reads every GPU once per tick through one chokepoint, with errors classified once.

`lib` is the pynvml module (gpulse.nvml.lib.load_real) or a fake with the same names. What is
read comes from the rows in gpulse.nvml.metrics; this module only knows how to ask NVML.

Outcomes of a call: ok; *unsupported* (NOT_SUPPORTED, FUNCTION_NOT_FOUND, NO_PERMISSION:
remembered per device, per call and argument, and never asked again); *no_data*
(NOT_FOUND, NO_DATA, or pynvml's size query answered SUCCESS: nothing this time); *gone*
(GPU_IS_LOST: the device reports gpulse_gpu_up 0 and is probed rarely); *broken*
(anything else: counted, the sample is omitted this tick, asked again next tick).
Every call is counted in `calls[function]`, every failure in `errors[(function, reason)]`,
and the last outcome per device and call in `outcomes` (what `gpulse check` prints).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Optional, Union

from ..kernels import fold_process_samples
from . import metrics as m
from .reading import DeviceFacts, DeviceReading, MigReading, NvmlReading, ProcessInfo, ProcessUtilization

log = logging.getLogger(__name__)
MIB = 1024 * 1024
_LOST_PROBE_SECONDS = 10.0
_GPM_MIN_INTERVAL = 0.1  # NVML wants GPM samples at least 100 ms apart
_MIG_RESCAN_SECONDS = 30.0
_NA_ID = 0xFFFFFFFF

OK, UNSUPPORTED, NO_DATA, GONE, BROKEN = "ok", "unsupported", "no_data", "gone", "broken"

# Versioned NVML symbols, newest first. pynvml's unversioned name calls the newest, which
# older drivers lack (FUNCTION_NOT_FOUND): the first one the driver has is kept for good.
VERSIONED = {
    "nvmlDeviceGetComputeRunningProcesses": ("nvmlDeviceGetComputeRunningProcesses_v3",
                                             "nvmlDeviceGetComputeRunningProcesses_v2"),
}
PROCESSES = "nvmlDeviceGetComputeRunningProcesses"
PROCESS_UTILIZATION = "nvmlDeviceGetProcessUtilization"
XID_EVENTS = "nvmlDeviceRegisterEvents"

# Errors after which only a new nvmlInit helps: the driver was reloaded or unloaded under us.
_RESTART_ERRORS = ("NVML_ERROR_UNINITIALIZED", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIB_RM_VERSION_MISMATCH")
_VIRT_MODES = ("NONE", "PASSTHROUGH", "VGPU", "HOST_VGPU", "HOST_VSGA")

LabeledValues = dict[tuple[str, ...], float]  # extra label values -> value
Value = Union[float, LabeledValues, None]
FieldValues = list[Optional[float]]  # this tick's value per field, by position in the plan
# One read of one row, made once per reader: (device, handle, this tick's call results, fields, GPM, scope).
_Getter = Callable[["_Device", Any, dict[str, Any], FieldValues, dict[str, float], str], Value]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Mig:
    __slots__ = ("handle", "gpu_instance", "compute_instance", "profile", "uuid", "name")

    def __init__(self, handle: Any, gpu_instance: int, compute_instance: int, profile: str, uuid: str,
                 name: str = ""):
        self.handle, self.gpu_instance, self.compute_instance = handle, gpu_instance, compute_instance
        self.profile, self.uuid, self.name = profile, uuid, name

    def layout(self) -> tuple[int, int, str, str]:
        return self.gpu_instance, self.compute_instance, self.profile, self.uuid


class _Device:
    """What the reader knows about one GPU between ticks."""

    def __init__(self, index: int, handle: Any):
        self.index = index
        self.handle = handle
        self.uuid = ""
        self.name = ""
        self.pci_bus_id = ""
        self.facts = DeviceFacts()
        self.unsupported: set[str] = set()  # call keys never to ask again
        self.lost = False
        self.lost_probe_at = 0.0
        self.last_seen_us = 0  # lastSeenTimeStamp for per-process utilization
        self.mig_enabled = False
        self.migs: list[_Mig] = []
        self.gpm = False
        self.gpm_samples: dict[Any, tuple[Any, float, Any]] = {}  # ("mig", gi) | "device" -> samples
        self.mig_scan_at = 0.0
        self.links: tuple[int, ...] = ()  # NVLink scopes to ask for links-scoped fields
        self.links_probed = False
        self.outcomes: dict[str, str] = {}  # call key -> last outcome (what `gpulse check` prints)
        # (len(unsupported) it was worked out for, (field id, scope) pairs, their fields)
        self.field_batch: Optional[tuple[int, list[tuple[int, int]], list[int]]] = None


class NvmlReader:
    def __init__(self, lib: Any, clock: Callable[[], float] = time.monotonic):
        self.lib = lib
        self.clock = clock
        self.devices: list[_Device] = []
        self.calls: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.system_outcomes: dict[str, str] = {}  # call key -> last outcome, for calls on no device
        self.driver_version = self.cuda_version = self.nvml_version = ""
        self.xids: Counter[tuple[Optional[int], int]] = Counter()  # (gpu index, xid) -> count
        self._xid_lock = threading.Lock()
        self._xid_thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._warned: set[tuple[Optional[int], str, str]] = set()
        self.functions: dict[str, str] = {}  # versioned family -> the symbol this driver has
        self.needs_restart = ""  # set when NVML must be initialised again (driver reload)
        self._consts: dict[str, Any] = {}  # NVML constant name -> value (None: this library lacks it)
        self._compiled: dict[int, list[tuple[str, tuple[_Getter, ...]]]] = {}  # id(plan) -> row getters
        self._gpm_metrics: dict[int, tuple[tuple[str, Any, str], ...]] = {}  # id(plan) -> (name, id, key)

    def _const(self, name: str) -> Any:
        """An NVML constant by name, looked up once (None when this library lacks it)."""
        try:
            return self._consts[name]
        except KeyError:
            value = self._consts[name] = getattr(self.lib, name, None)
            return value

    # --- the chokepoint ------------------------------------------------------------
    def _call(self, dev: Optional[_Device], function: str, *args: Any, key: str = "", scope: str = "") -> Any:
        """lib.<function>(*args), or None when the call yields nothing this time.

        `key` names the call with its arguments (unsupported is remembered per key);
        `scope` tells handles apart where the driver answers differently: "@mig" for calls
        on a MIG device handle, so a function refused on the parent is still asked per
        instance."""
        key = key or function
        if scope:
            key += scope
        if dev is not None and (dev.lost or key in dev.unsupported):
            return None
        self.calls[function] += 1
        try:
            result = getattr(self.lib, function)(*args)
        except self.lib.NVMLError as exc:
            self._classify(dev, function, exc, key)
            return None
        if dev is not None:
            dev.outcomes[key] = OK
        else:
            self.system_outcomes[key] = OK
        return result

    def _outcome(self, dev: Optional[_Device], key: str, outcome: str) -> None:
        (dev.outcomes if dev is not None else self.system_outcomes)[key] = outcome

    @property
    def outcomes(self) -> dict[tuple[Optional[int], str], str]:
        """(gpu index or None, call key) -> the last outcome of that call."""
        out: dict[tuple[Optional[int], str], str] = {(None, k): v for k, v in self.system_outcomes.items()}
        for dev in self.devices:
            out.update(((dev.index, k), v) for k, v in dev.outcomes.items())
        return out

    def _classify(self, dev: Optional[_Device], function: str, exc: Any, key: str = "") -> str:
        lib = self.lib
        code = getattr(exc, "value", None)
        key = key or function
        if code in (lib.NVML_ERROR_NOT_SUPPORTED, lib.NVML_ERROR_FUNCTION_NOT_FOUND, lib.NVML_ERROR_NO_PERMISSION):
            reason = UNSUPPORTED
            if dev is not None:
                dev.unsupported.add(key)
        elif code in (lib.NVML_ERROR_NOT_FOUND, lib.NVML_ERROR_NO_DATA, lib.NVML_SUCCESS):
            # pynvml raises NVMLError(SUCCESS) when a size query finds nothing to size
            reason = NO_DATA
        elif code == lib.NVML_ERROR_GPU_IS_LOST:
            reason = GONE
            if dev is not None and not dev.lost:
                log.error("GPU %d (%s) is lost: %s returned GPU_IS_LOST", dev.index, dev.uuid, function)
                dev.lost, dev.lost_probe_at = True, self.clock()
        else:
            reason = BROKEN
            if code in {getattr(lib, name, None) for name in _RESTART_ERRORS}:
                self.needs_restart = f"{function}: {exc}"
        self.errors[(function, reason)] += 1
        self._outcome(dev, key, reason)
        warn_key = (dev.index if dev else None, key, reason)
        if reason != NO_DATA and warn_key not in self._warned:
            self._warned.add(warn_key)
            where = f"GPU {dev.index}" if dev else "system"
            level = logging.DEBUG if reason == UNSUPPORTED else logging.WARNING
            log.log(level, "%s: %s: %s (%s)", where, key, exc, reason)
        return reason

    # --- start: init, enumerate, probe once -------------------------------------------
    def start(self) -> None:
        """nvmlInit and device discovery; raises the NVMLError when NVML cannot start."""
        self.calls["nvmlInit"] += 1
        try:
            self.lib.nvmlInit()
        except self.lib.NVMLError:
            self.errors[("nvmlInit", BROKEN)] += 1
            raise
        self.driver_version = _text(self._call(None, "nvmlSystemGetDriverVersion") or "")
        self.nvml_version = _text(self._call(None, "nvmlSystemGetNVMLVersion") or "")
        cuda = self._call(None, "nvmlSystemGetCudaDriverVersion")
        self.cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else ""
        count = self._call(None, "nvmlDeviceGetCount") or 0
        self.devices = []
        for i in range(count):
            handle = self._call(None, "nvmlDeviceGetHandleByIndex", i)
            if handle is None:
                continue
            dev = _Device(i, handle)
            self._probe(dev)
            self.devices.append(dev)
        if self.devices:
            self._probe_versions(self.devices[0])
        self._start_xid_thread()

    def _probe(self, dev: _Device) -> None:
        lib, h = self.lib, dev.handle
        dev.name = _text(self._call(dev, "nvmlDeviceGetName", h) or "")
        dev.uuid = _text(self._call(dev, "nvmlDeviceGetUUID", h) or "")
        pci = self._call(dev, "nvmlDeviceGetPciInfo", h)
        mem = self._call(dev, "nvmlDeviceGetMemoryInfo", h)
        cc = self._call(dev, "nvmlDeviceGetCudaComputeCapability", h)
        virt = self._call(dev, "nvmlDeviceGetVirtualizationMode", h)
        mig_mode = self._call(dev, "nvmlDeviceGetMigMode", h)
        dev.mig_enabled = bool(mig_mode and mig_mode[0] == lib.NVML_DEVICE_MIG_ENABLE)
        if pci is not None:
            dev.pci_bus_id = _text(pci.busId)
        virt_names = {getattr(lib, "NVML_GPU_VIRTUALIZATION_MODE_" + n, None): n.lower() for n in _VIRT_MODES}
        dev.migs = self._enumerate_migs(dev) if dev.mig_enabled else []
        dev.facts = DeviceFacts(
            name=dev.name,
            pci_device_id=(pci.pciDeviceId >> 16) if pci is not None else None,
            pci_subsystem_id=(pci.pciSubSystemId >> 16) if pci is not None else None,
            memory_mib=(mem.total // MIB) if mem is not None else None,
            compute_capability=f"{cc[0]}.{cc[1]}" if cc else "",
            mig_capable=mig_mode is not None,
            mig_enabled=dev.mig_enabled,
            mig_profiles=tuple(sorted(mg.profile for mg in dev.migs)),
            virtualization_mode=virt_names.get(virt, "") if virt is not None else "",
            driver_version=self.driver_version,
            compute_mode=self._call(dev, "nvmlDeviceGetComputeMode", h),
            minor_number=self._call(dev, "nvmlDeviceGetMinorNumber", h),
        )
        support = self._call(dev, "nvmlGpmQueryDeviceSupport", h)
        dev.gpm = bool(support is not None and support.isSupportedDevice)

    def _probe_versions(self, dev: _Device) -> None:
        lib = self.lib
        for family, candidates in VERSIONED.items():
            chosen = candidates[-1]
            for name in candidates:
                self.calls[name] += 1
                try:
                    getattr(lib, name)(dev.handle)
                except lib.NVMLError as exc:
                    if getattr(exc, "value", None) == lib.NVML_ERROR_FUNCTION_NOT_FOUND:
                        continue
                chosen = name
                break
            self.functions[family] = chosen
            log.debug("NVML %s: using %s", family, chosen)

    def _rescan_migs(self, dev: _Device, now: float) -> None:
        """MIG instances can be created and destroyed at run time: look again every 30 s."""
        if now - dev.mig_scan_at < _MIG_RESCAN_SECONDS:
            return
        dev.mig_scan_at = now
        migs = self._enumerate_migs(dev)
        if [mg.layout() for mg in migs] != [mg.layout() for mg in dev.migs]:
            log.info("GPU %d: MIG layout changed: %d instance(s)", dev.index, len(migs))
            dev.migs = migs
            dev.gpm_samples = {k: v for k, v in dev.gpm_samples.items() if k == "device"}
            dev.facts = replace(dev.facts, mig_profiles=tuple(sorted(mg.profile for mg in migs)))

    def _enumerate_migs(self, dev: _Device) -> list[_Mig]:
        migs = []
        for slot in range(self._call(dev, "nvmlDeviceGetMaxMigDeviceCount", dev.handle) or 0):
            try:
                self.calls["nvmlDeviceGetMigDeviceHandleByIndex"] += 1
                mh = self.lib.nvmlDeviceGetMigDeviceHandleByIndex(dev.handle, slot)
            except self.lib.NVMLError:
                continue  # empty slot: NOT_FOUND is the normal answer
            gi = self._call(dev, "nvmlDeviceGetGpuInstanceId", mh, scope="@mig")
            ci = self._call(dev, "nvmlDeviceGetComputeInstanceId", mh, scope="@mig")
            name = _text(self._call(dev, "nvmlDeviceGetName", mh, scope="@mig") or "")
            profile = name.rsplit(" MIG ", 1)[1].strip() if " MIG " in name else ""
            uuid = _text(self._call(dev, "nvmlDeviceGetUUID", mh, scope="@mig") or "")
            if gi is not None:
                migs.append(_Mig(mh, int(gi), int(ci or 0), profile, uuid, name))
        return migs

    def _probe_links(self, dev: _Device) -> None:
        """The NVLink scopes links-scoped fields are asked with: the all-links scope when the
        driver sums it (checked against the per-link sum once), else each active link."""
        dev.links_probed = True
        lib, h = self.lib, dev.handle
        count = None
        got = self._call(dev, "nvmlDeviceGetFieldValues", h, [lib.NVML_FI_DEV_NVLINK_LINK_COUNT],
                         key="field NVML_FI_DEV_NVLINK_LINK_COUNT")
        if got is not None and got[0].nvmlReturn == lib.NVML_SUCCESS:
            count = int(_field_value(lib, got[0]))
        active = []
        for link in range(count if count is not None else int(getattr(lib, "NVML_NVLINK_MAX_LINKS", 18))):
            try:
                self.calls["nvmlDeviceGetNvLinkState"] += 1
                state = lib.nvmlDeviceGetNvLinkState(h, link)
            except lib.NVMLError as exc:
                if getattr(exc, "value", None) in (lib.NVML_ERROR_NOT_SUPPORTED, lib.NVML_ERROR_FUNCTION_NOT_FOUND):
                    self._classify(dev, "nvmlDeviceGetNvLinkState", exc)
                    break  # no NVLink on this GPU
                if getattr(exc, "value", None) == lib.NVML_ERROR_INVALID_ARGUMENT:
                    break  # past the last link
                continue
            if state == getattr(lib, "NVML_FEATURE_ENABLED", 1):
                active.append(link)
        if not active:
            dev.links = ()
            return
        probe = getattr(lib, "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", None)
        if probe is None:
            dev.links = tuple(active)
            return
        asked = [(probe, m.ALL_LINKS_SCOPE)] + [(probe, link) for link in active]
        got = self._call(dev, "nvmlDeviceGetFieldValues", h, asked, key="field NVLink scope probe")
        dev.links = tuple(active)
        if got is None:
            return
        per_link = list(got)[1:]
        if got[0].nvmlReturn == lib.NVML_SUCCESS and all(fv.nvmlReturn == lib.NVML_SUCCESS for fv in per_link):
            total, parts = _field_value(lib, got[0]), sum(_field_value(lib, fv) for fv in per_link)
            # Trust the all-links scope only where it visibly is the sum: a driver that
            # ignores the scope answers one link's counter, and all-zero counters prove nothing.
            if total > 0 and abs(total - parts) <= 0.001 * parts + 1:
                dev.links = (m.ALL_LINKS_SCOPE,)
        log.debug("GPU %d: NVLink scopes %s", dev.index, dev.links)

    # --- XID events on their own thread ------------------------------------------------
    def _start_xid_thread(self) -> None:
        lib = self.lib
        event_set = self._call(None, "nvmlEventSetCreate")
        if event_set is None:
            return
        registered = 0
        for dev in self.devices:
            if self._call(dev, XID_EVENTS, dev.handle, lib.nvmlEventTypeXidCriticalError, event_set) is not None \
                    or dev.outcomes.get(XID_EVENTS) == OK:
                registered += 1
        if not registered:
            return
        self._stop.clear()
        self._xid_thread = threading.Thread(target=self._xid_loop, args=(event_set,), name="gpulse-xid", daemon=True)
        self._xid_thread.start()

    def _xid_loop(self, event_set: Any) -> None:
        lib = self.lib
        while not self._stop.is_set():
            try:
                data = lib.nvmlEventSetWait_v2(event_set, 500)
            except lib.NVMLError as exc:
                if getattr(exc, "value", None) != lib.NVML_ERROR_TIMEOUT:
                    self.errors[("nvmlEventSetWait_v2", BROKEN)] += 1
                    self._stop.wait(1.0)
                continue
            except Exception:
                log.exception("XID event wait failed")
                self.errors[("nvmlEventSetWait_v2", BROKEN)] += 1
                self._stop.wait(1.0)
                continue
            index = self._device_index(data.device)
            with self._xid_lock:
                self.xids[(index, int(data.eventData))] += 1
            log.warning("XID %d on GPU %s", data.eventData, index)
            if int(data.eventData) == 79 and index is not None:  # fallen off the bus
                self.devices[index].lost = True
        self._call(None, "nvmlEventSetFree", event_set)

    def _device_index(self, handle: Any) -> Optional[int]:
        # pynvml hands back a new ctypes object per event: compare what it points to. The
        # UUID is only a fallback, as a GPU that fell off the bus no longer answers it.
        key = _handle_key(handle)
        for dev in self.devices:
            if key is not None and _handle_key(dev.handle) == key:
                return dev.index
        uuid = _text(self._call(None, "nvmlDeviceGetUUID", handle) or "")
        return next((d.index for d in self.devices if d.uuid == uuid), None)

    def stop(self) -> None:
        self._stop.set()
        if self._xid_thread:
            self._xid_thread.join(timeout=2)
        try:
            self.lib.nvmlShutdown()
        except self.lib.NVMLError:
            pass

    # --- one tick ---------------------------------------------------------------------
    def read(self, now: float) -> NvmlReading:
        devices: list[DeviceReading] = []
        migs: list[MigReading] = []
        for dev in self.devices:
            if dev.lost and not self._probe_lost(dev, now):
                devices.append(DeviceReading(dev.index, dev.uuid, dev.name, dev.pci_bus_id, up=False,
                                             mig_enabled=dev.mig_enabled, labeled=self._xid_labels(dev),
                                             facts=dev.facts))
                continue
            reading, dev_migs = self._read_device(dev, now)
            devices.append(reading)
            migs.extend(dev_migs)
        return NvmlReading(now, tuple(devices), tuple(migs), self.driver_version, self.cuda_version, self.nvml_version)

    def _probe_lost(self, dev: _Device, now: float) -> bool:
        """A lost GPU is asked once every few seconds whether it came back (after a reset)."""
        if now - dev.lost_probe_at < _LOST_PROBE_SECONDS:
            return False
        dev.lost_probe_at = now
        dev.lost = False
        if self._call(dev, "nvmlDeviceGetUUID", dev.handle) is None or dev.lost:
            dev.lost = True
            return False
        return True

    def _read_device(self, dev: _Device, now: float) -> tuple[DeviceReading, tuple[MigReading, ...]]:
        plan = _PLANS[dev.mig_enabled]
        fields = self._read_fields(dev, plan)
        gpm = self._read_gpm(dev, "device", now, "nvmlGpmSampleGet", (dev.handle,), plan) if dev.gpm else {}
        values, labeled = self._apply_rows(dev, dev.handle, plan, fields, gpm, "")
        labeled.update(self._xid_labels(dev))
        if dev.mig_enabled:
            # Per instance: the parent's list needs privileges the DaemonSet does not have.
            self._rescan_migs(dev, now)
            mig_readings = self._read_migs(dev, now)
            processes = tuple(p for mr in mig_readings for p in mr.processes)
            proc_util: tuple[ProcessUtilization, ...] = ()  # not supported on MIG GPUs
        else:
            mig_readings = ()
            processes = self._processes(dev, dev.handle)
            proc_util = self._process_utilization(dev)
        reading = DeviceReading(dev.index, dev.uuid, dev.name, dev.pci_bus_id, up=not dev.lost,
                                mig_enabled=dev.mig_enabled, values=values, labeled=labeled, facts=dev.facts,
                                processes=processes, process_utilization=proc_util)
        return reading, mig_readings

    def _apply_rows(self, dev: _Device, handle: Any, plan: _Plan, fields: FieldValues,
                    gpm: dict[str, float], scope: str) -> tuple[dict[str, float], dict[str, LabeledValues]]:
        """Each row's value from its first read that answers: calls (once per tick even
        when several rows share them), this tick's batched fields and GPM metrics."""
        values: dict[str, float] = {}
        labeled: dict[str, LabeledValues] = {}
        memo: dict[str, Any] = {}
        for family, getters in self._getters(plan):
            for get in getters:
                got = get(dev, handle, memo, fields, gpm, scope)
                if got is None:
                    continue
                if isinstance(got, dict):
                    labeled[family] = got
                else:
                    values[family] = got
                break
        return values, labeled

    def _getters(self, plan: _Plan) -> list[tuple[str, tuple[_Getter, ...]]]:
        """Per row, one small function per read, made once per reader: the tick runs them
        without looking at the rows again."""
        compiled = self._compiled.get(id(plan))
        if compiled is None:
            compiled = self._compiled[id(plan)] = [
                (row.family, tuple(g for r in row.reads if (g := self._getter(r, plan)) is not None))
                for row in plan.rows]
        return compiled

    def _getter(self, read: m.Read, plan: _Plan) -> Optional[_Getter]:
        if isinstance(read, m.Field):
            index = plan.fields.index(read)
            return lambda dev, handle, memo, fields, gpm, scope: fields[index]
        if isinstance(read, m.LabeledFields):
            pairs = tuple((label, plan.fields.index(f)) for label, f in read.fields)

            def labeled_fields(dev: _Device, handle: Any, memo: dict[str, Any], fields: FieldValues,
                               gpm: dict[str, float], scope: str) -> Value:
                got: LabeledValues = {(label,): v for label, i in pairs if (v := fields[i]) is not None}
                return got or None
            return labeled_fields
        if isinstance(read, m.Gpm):
            metric = read.metric

            def gpm_metric(dev: _Device, handle: Any, memo: dict[str, Any], fields: FieldValues,
                           gpm: dict[str, float], scope: str) -> Value:
                v = gpm.get(metric)
                return None if v is None else max(0.0, min(1.0, v / 100.0))
            return gpm_metric
        if isinstance(read, m.Events):
            return None
        key, function, call = read.key, read.function, self._call
        args = tuple(self._const(a) for a in read.args) if isinstance(read, m.Call) else ()

        def result_of(dev: _Device, handle: Any, memo: dict[str, Any], scope: str) -> Any:
            if key in memo:
                return memo[key]
            result = memo[key] = call(dev, function, handle, *args, key=key, scope=scope)
            return result
        if isinstance(read, m.Flags):
            bits = tuple((name, int(bit)) for name, const in read.bits if (bit := self._const(const)) is not None)

            def flags(dev: _Device, handle: Any, memo: dict[str, Any], fields: FieldValues,
                      gpm: dict[str, float], scope: str) -> Value:
                result = result_of(dev, handle, memo, scope)
                if result is None:
                    return None
                mask = int(result)
                return {(name,): 1.0 if mask & bit else 0.0 for name, bit in bits}
            return flags
        if isinstance(read, m.Parts):
            labels = read.labels

            def parts(dev: _Device, handle: Any, memo: dict[str, Any], fields: FieldValues,
                      gpm: dict[str, float], scope: str) -> Value:
                result = result_of(dev, handle, memo, scope)
                if result is None:
                    return None
                return {(label,): float(v) for label, v in zip(labels, result, strict=True)}
            return parts
        pick, (divide, amount) = read.pick, read.factor

        def value(dev: _Device, handle: Any, memo: dict[str, Any], fields: FieldValues,
                  gpm: dict[str, float], scope: str) -> Value:
            result = memo.get(key, memo)  # the memo itself marks "not asked yet"
            if result is memo:
                result = memo[key] = call(dev, function, handle, *args, key=key, scope=scope)
            if result is None:
                return None
            if isinstance(pick, str):
                result = getattr(result, pick)
            elif pick is not None:
                result = result[pick]
            return float(result) / amount if divide else float(result) * amount
        return value

    def _xid_labels(self, dev: _Device) -> dict[str, LabeledValues]:
        with self._xid_lock:
            xids: LabeledValues = {(str(x),): float(n) for (i, x), n in self.xids.items() if i == dev.index}
        return {"gpulse_gpu_xid_errors_total": xids} if xids else {}

    def _read_fields(self, dev: _Device, plan: _Plan) -> FieldValues:
        """One nvmlDeviceGetFieldValues call for every field the rows still ask, as a list by
        the field's position in plan.fields (None: no value); links-scoped fields are asked
        per NVLink scope and summed."""
        lib = self.lib
        out: FieldValues = [None] * len(plan.fields)
        if not plan.fields:
            return out
        if not dev.links_probed and any(f.scope == "links" for f in plan.fields):
            self._probe_links(dev)
        if dev.field_batch is None or dev.field_batch[0] != len(dev.unsupported):
            asked_now, owners_now = self._field_batch(dev, plan)  # may mark fields unsupported
            dev.field_batch = (len(dev.unsupported), asked_now, owners_now)
        _, asked, owners = dev.field_batch
        if not asked:
            return out
        result = self._call(dev, "nvmlDeviceGetFieldValues", dev.handle, asked)
        if result is None:
            return out
        success = lib.NVML_SUCCESS
        sums = [0.0] * len(plan.fields)
        failed: dict[int, int] = {}
        for i, fv in zip(owners, result, strict=True):
            if fv.nvmlReturn == success:
                sums[i] += _field_value(lib, fv)
            elif i not in failed:
                failed[i] = int(fv.nvmlReturn)
        for i in dict.fromkeys(owners):
            f = plan.fields[i]
            code = failed.get(i)
            if code is None:
                divide, amount = f.factor
                out[i] = sums[i] / amount if divide else sums[i] * amount
                dev.outcomes[f.key] = OK
                continue
            name = f"nvmlDeviceGetFieldValues:{f.short}"
            if code in (lib.NVML_ERROR_NOT_SUPPORTED, lib.NVML_ERROR_NO_PERMISSION):
                dev.unsupported.add(f.key)
                self.errors[(name, UNSUPPORTED)] += 1
                self._outcome(dev, f.key, UNSUPPORTED)
            elif code in (lib.NVML_ERROR_NOT_FOUND, lib.NVML_ERROR_NO_DATA):
                self.errors[(name, NO_DATA)] += 1
                self._outcome(dev, f.key, NO_DATA)
            else:
                self.errors[(name, BROKEN)] += 1
                self._outcome(dev, f.key, BROKEN)
        return out

    def _field_batch(self, dev: _Device, plan: _Plan) -> tuple[list[tuple[int, int]], list[int]]:
        """The (field id, scope) pairs to ask and the position (in plan.fields) of the field
        each answers for; worked out again only when a field turns out unsupported."""
        asked: list[tuple[int, int]] = []
        owners: list[int] = []
        for i, f in enumerate(plan.fields):
            fid = self._const(f.const)
            if fid is None or f.key in dev.unsupported:
                continue
            if f.scope == "links":
                if not dev.links:
                    dev.unsupported.add(f.key)
                    self._outcome(dev, f.key, UNSUPPORTED)
                    continue
                scopes: tuple[int, ...] = dev.links
            else:
                scopes = (0,)
            for scope in scopes:
                asked.append((fid, scope))
                owners.append(i)
        return asked, owners

    def _processes(self, dev: _Device, handle: Any, scope: str = "") -> tuple[ProcessInfo, ...]:
        function = self.functions.get(PROCESSES, PROCESSES)
        procs = self._call(dev, function, handle, key=PROCESSES, scope=scope)
        if not procs:
            return ()
        out = []
        for p in procs:
            gi = getattr(p, "gpuInstanceId", _NA_ID)
            ci = getattr(p, "computeInstanceId", _NA_ID)
            out.append(ProcessInfo(int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory),
                                   None if gi in (None, _NA_ID) else int(gi),
                                   None if ci in (None, _NA_ID) else int(ci)))
        return tuple(out)

    def _process_utilization(self, dev: _Device) -> tuple[ProcessUtilization, ...]:
        """One mean sample per PID over the period since the last call (the driver may answer
        several samples per process, and old ones again: the fold skips those)."""
        samples = self._call(dev, PROCESS_UTILIZATION, dev.handle, dev.last_seen_us)
        if not samples:
            return ()
        folded = fold_process_samples(samples, dev.last_seen_us)
        mem: dict[int, float] = {}
        for s in samples:
            if int(s.timeStamp) > dev.last_seen_us:
                mem[s.pid] = mem.get(s.pid, 0.0) + float(s.memUtil)
        out = tuple(ProcessUtilization(int(pid), last_ts, total / count, mem.get(pid, 0.0) / count)
                    for pid, (total, count, last_ts) in sorted(folded.items()))
        if out:
            dev.last_seen_us = max(dev.last_seen_us, max(p.timestamp_us for p in out))
        return out

    def _read_migs(self, dev: _Device, now: float) -> tuple[MigReading, ...]:
        out = []
        for mg in dev.migs:
            gpm = self._read_gpm(dev, ("mig", mg.gpu_instance), now, "nvmlGpmMigSampleGet",
                                 (dev.handle, mg.gpu_instance), _MIG_PLAN) if dev.gpm else {}
            values, _ = self._apply_rows(dev, mg.handle, _MIG_PLAN, [], gpm, "@mig")
            procs = self._processes(dev, mg.handle, scope="@mig")
            out.append(MigReading(dev.index, dev.uuid, mg.gpu_instance, mg.compute_instance, mg.profile, mg.uuid,
                                  values, procs, mg.name))
        return tuple(out)

    def _read_gpm(self, dev: _Device, key: Any, now: float, sample_fn: str, args: tuple[Any, ...],
                  plan: _Plan) -> dict[str, float]:
        """GPM metrics (percent) from this tick's sample and the previous one (>= 100 ms apart).

        Two sample buffers per key alternate, so a tick costs one sample call and one
        metrics call whatever the number of metrics asked."""
        lib = self.lib
        metrics = self._gpm_metrics.get(id(plan))
        if metrics is None:
            metrics = self._gpm_metrics[id(plan)] = tuple(
                (name, mid, f"gpm {name}") for name in plan.gpm if (mid := self._const(name)) is not None)
        if not metrics:
            return {}
        prev = dev.gpm_samples.get(key)
        if prev is not None and now - prev[1] < _GPM_MIN_INTERVAL:
            return {}
        sample = prev[2] if prev is not None and prev[2] is not None else self._call(dev, "nvmlGpmSampleAlloc")
        if sample is None or self._call(dev, sample_fn, *args, sample) is None:
            return {}
        if prev is None:
            dev.gpm_samples[key] = (sample, now, self._call(dev, "nvmlGpmSampleAlloc"))
            return {}
        request = lib.c_nvmlGpmMetricsGet_t()
        request.version = lib.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(metrics)
        request.sample1, request.sample2 = prev[0], sample
        for i, (_, mid, _) in enumerate(metrics):
            request.metrics[i].metricId = mid
        dev.gpm_samples[key] = (sample, now, prev[0])  # the older buffer takes the next sample
        if self._call(dev, "nvmlGpmMetricsGet", request) is None:
            return {}
        out = {}
        success, outcomes, answers = lib.NVML_SUCCESS, dev.outcomes, request.metrics
        for i, (name, _, key) in enumerate(metrics):
            answer = answers[i]
            if answer.nvmlReturn == success:
                outcomes[key] = OK
                out[name] = float(answer.value)
            else:
                outcomes[key] = UNSUPPORTED
        return out


class _Plan:
    """What a tick asks of one device kind, worked out once from the rows."""

    def __init__(self, rows: tuple[m.DeviceMetric, ...]):
        self.rows = tuple(r for r in rows if not r.of)
        reads = m.reads(self.rows)
        self.fields = tuple(r for r in reads if isinstance(r, m.Field))
        self.gpm = tuple(r.metric for r in reads if isinstance(r, m.Gpm))


_PLANS = {False: _Plan(m.DEVICE_METRICS), True: _Plan(tuple(r for r in m.DEVICE_METRICS if r.on_mig))}
_MIG_PLAN = _Plan(m.MIG_METRICS)


def _handle_key(handle: Any) -> Any:
    """The device a handle points to: the address for ctypes handles, the object otherwise."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


def _field_value(lib: Any, fv: Any) -> float:
    t = fv.valueType
    if t == lib.NVML_VALUE_TYPE_DOUBLE:
        return float(fv.value.dVal)
    if t == lib.NVML_VALUE_TYPE_UNSIGNED_INT:
        return float(fv.value.uiVal)
    if t == lib.NVML_VALUE_TYPE_UNSIGNED_LONG:
        return float(fv.value.ulVal)
    if t == lib.NVML_VALUE_TYPE_SIGNED_LONG_LONG:
        return float(fv.value.sllVal)
    if t == getattr(lib, "NVML_VALUE_TYPE_SIGNED_INT", -1):
        return float(fv.value.siVal)
    return float(fv.value.ullVal)
