"""Reads every GPU once per tick through one chokepoint, with errors classified once.

`lib` is the pynvml module (gpulse.nvml.lib.load_real) or a FakeNvml: same names either way.
Outcomes of a call: ok; *unsupported* (NOT_SUPPORTED, FUNCTION_NOT_FOUND, NO_PERMISSION:
remembered per device and never asked again); *no_data* (NOT_FOUND, NO_DATA: nothing this
time); *gone* (GPU_IS_LOST: the device reports gpulse_gpu_up 0 and is probed rarely);
*broken* (anything else: counted, the sample is omitted this tick, asked again next tick).
Everything is counted in `errors[(function, reason)]` and `calls[function]`.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import Counter

from ..kernels import fold_process_samples
from .reading import DeviceReading, MigReading, NvmlReading, ProcessInfo, ProcessUtilization

log = logging.getLogger(__name__)
MIB = 1024 * 1024
_LOST_PROBE_SECONDS = 10.0
_GPM_MIN_INTERVAL = 0.1  # NVML wants GPM samples at least 100 ms apart
_MIG_RESCAN_SECONDS = 30.0
_NA_ID = 0xFFFFFFFF

# Throttle reasons exported as gpulse_gpu_clock_event_active{reason}; the names match
# dcgm-exporter's DCGM_FI_DEV_CLOCK_THROTTLE_REASONS documentation, snake_cased.
CLOCK_EVENT_REASONS = (
    ("gpu_idle", "nvmlClocksEventReasonGpuIdle"),
    ("applications_clocks_setting", "nvmlClocksEventReasonApplicationsClocksSetting"),
    ("sw_power_cap", "nvmlClocksEventReasonSwPowerCap"),
    ("hw_slowdown", "nvmlClocksEventReasonHwSlowdown"),
    ("sync_boost", "nvmlClocksEventReasonSyncBoost"),
    ("sw_thermal_slowdown", "nvmlClocksEventReasonSwThermalSlowdown"),
    ("hw_thermal_slowdown", "nvmlClocksEventReasonHwThermalSlowdown"),
    ("hw_power_brake_slowdown", "nvmlClocksEventReasonHwPowerBrakeSlowdown"),
    ("display_clock_setting", "nvmlClocksEventReasonDisplayClockSetting"),
)

# Batched through nvmlDeviceGetFieldValues: (NVML field constant, catalog family, scale, extra labels)
FIELDS = (
    ("NVML_FI_DEV_POWER_INSTANT", "gpulse_gpu_power_watts", 1e-3, None),
    ("NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "gpulse_gpu_energy_joules_total", 1e-3, None),
    ("NVML_FI_DEV_MEMORY_TEMP", "gpulse_gpu_memory_temperature_celsius", 1.0, None),
    ("NVML_FI_DEV_ECC_SBE_AGG_TOTAL", "gpulse_gpu_ecc_errors_total", 1.0, ("correctable",)),
    ("NVML_FI_DEV_ECC_DBE_AGG_TOTAL", "gpulse_gpu_ecc_errors_total", 1.0, ("uncorrectable",)),
    ("NVML_FI_DEV_PCIE_COUNT_TX_BYTES", "gpulse_gpu_pcie_tx_bytes_total", 1.0, None),
    ("NVML_FI_DEV_PCIE_COUNT_RX_BYTES", "gpulse_gpu_pcie_rx_bytes_total", 1.0, None),
    ("NVML_FI_DEV_PCIE_REPLAY_COUNTER", "gpulse_gpu_pcie_replay_errors_total", 1.0, None),
    ("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", "gpulse_gpu_nvlink_tx_bytes_total", 1024.0, None),
    ("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", "gpulse_gpu_nvlink_rx_bytes_total", 1024.0, None),
)


# Device-level GPM metrics (Hopper+), the profiling counters DCGM exposes as DCGM_FI_PROF_*.
GPM_DEVICE_METRICS = {
    "NVML_GPM_METRIC_ANY_TENSOR_UTIL": "gpulse_gpu_tensor_active_ratio",
    "NVML_GPM_METRIC_DRAM_BW_UTIL": "gpulse_gpu_dram_active_ratio",
    "NVML_GPM_METRIC_SM_OCCUPANCY": "gpulse_gpu_sm_occupancy_ratio",
}


# Versioned NVML symbols, newest first. pynvml's unversioned name calls the newest, which
# older drivers lack (FUNCTION_NOT_FOUND): the first one the driver has is kept for good.
VERSIONED = {
    "nvmlDeviceGetComputeRunningProcesses": ("nvmlDeviceGetComputeRunningProcesses_v3",
                                             "nvmlDeviceGetComputeRunningProcesses_v2"),
}


# Errors after which only a new nvmlInit helps: the driver was reloaded or unloaded under us.
_RESTART_ERRORS = ("NVML_ERROR_UNINITIALIZED", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIB_RM_VERSION_MISMATCH")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Device:
    """What the reader knows about one GPU between ticks."""

    def __init__(self, index, handle):
        self.index = index
        self.handle = handle
        self.uuid = ""
        self.name = ""
        self.pci_bus_id = ""
        self.raw: dict = {}
        self.unsupported: set = set()  # functions never to ask again
        self.field_ids: list = []  # field ids still worth asking
        self.lost = False
        self.lost_probe_at = 0.0
        self.last_seen_us = 0  # lastSeenTimeStamp for per-process utilization
        self.mig_enabled = False
        self.migs: list = []  # [(handle, gi, ci, profile, mig_uuid)]
        self.gpm = False
        self.gpm_samples: dict = {}  # ("mig", gi) | "device" -> (sample, time, spare sample)
        self.mig_scan_at = 0.0


class NvmlReader:
    def __init__(self, lib, clock=time.monotonic):
        self.lib = lib
        self.clock = clock
        self.devices: list = []
        self.calls: Counter = Counter()
        self.errors: Counter = Counter()
        self.driver_version = self.cuda_version = self.nvml_version = ""
        self.xids: Counter = Counter()  # (gpu index, xid) -> count
        self._xid_lock = threading.Lock()
        self._xid_thread = None
        self._stop = threading.Event()
        self._warned: set = set()
        self.functions: dict = {}  # versioned family -> the symbol this driver has
        self.needs_restart = ""  # set when NVML must be initialised again (driver reload)
        self._field_names = {getattr(lib, const): const[len("NVML_FI_DEV_"):].lower()
                             for const, *_ in FIELDS if hasattr(lib, const)}

    # --- the chokepoint ------------------------------------------------------------
    def _call(self, dev, function, *args, scope: str = ""):
        """Call lib.<function>(*args); None when the call yields nothing this time.

        `scope` tells handles apart where the driver answers differently: "@mig" for calls on
        a MIG device handle, so a function refused on the parent (NO_PERMISSION for the
        whole GPU's processes without privileges) is still asked per instance."""
        if dev is not None and (dev.lost or function + scope in dev.unsupported):
            return None
        self.calls[function] += 1
        try:
            return getattr(self.lib, function)(*args)
        except self.lib.NVMLError as exc:
            self._classify(dev, function, exc, scope)
            return None

    def _classify(self, dev, function, exc, scope: str = "") -> str:
        lib = self.lib
        code = getattr(exc, "value", None)
        if code in (lib.NVML_ERROR_NOT_SUPPORTED, lib.NVML_ERROR_FUNCTION_NOT_FOUND, lib.NVML_ERROR_NO_PERMISSION):
            reason = "unsupported"
            if dev is not None:
                dev.unsupported.add(function + scope)
        elif code in (lib.NVML_ERROR_NOT_FOUND, lib.NVML_ERROR_NO_DATA):
            reason = "no_data"
        elif code == lib.NVML_ERROR_GPU_IS_LOST:
            reason = "gone"
            if dev is not None and not dev.lost:
                log.error("GPU %d (%s) is lost: %s returned GPU_IS_LOST", dev.index, dev.uuid, function)
                dev.lost, dev.lost_probe_at = True, self.clock()
        else:
            reason = "broken"
            if code in {getattr(lib, name, None) for name in _RESTART_ERRORS}:
                self.needs_restart = f"{function}: {exc}"
        self.errors[(function, reason)] += 1
        key = (dev.index if dev else None, function, reason)
        if reason != "no_data" and key not in self._warned:
            self._warned.add(key)
            where = f"GPU {dev.index}" if dev else "system"
            level = logging.DEBUG if reason == "unsupported" else logging.WARNING
            log.log(level, "%s: %s: %s (%s)", where, function, exc, reason)
        return reason

    # --- start: init, enumerate, probe once -------------------------------------------
    def start(self) -> None:
        """nvmlInit and device discovery; raises the NVMLError when NVML cannot start."""
        self.calls["nvmlInit"] += 1
        try:
            self.lib.nvmlInit()
        except self.lib.NVMLError as exc:
            self.errors[("nvmlInit", "broken")] += 1
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
        compute_mode = self._call(dev, "nvmlDeviceGetComputeMode", h)
        minor = self._call(dev, "nvmlDeviceGetMinorNumber", h)
        dev.mig_enabled = bool(mig_mode and mig_mode[0] == lib.NVML_DEVICE_MIG_ENABLE)
        if pci is not None:
            dev.pci_bus_id = _text(pci.busId)
        virt_names = {getattr(lib, n): n[len("NVML_GPU_VIRTUALIZATION_MODE_"):].lower()
                      for n in ("NVML_GPU_VIRTUALIZATION_MODE_NONE", "NVML_GPU_VIRTUALIZATION_MODE_PASSTHROUGH",
                                "NVML_GPU_VIRTUALIZATION_MODE_VGPU", "NVML_GPU_VIRTUALIZATION_MODE_HOST_VGPU",
                                "NVML_GPU_VIRTUALIZATION_MODE_HOST_VSGA")}
        dev.migs = self._enumerate_migs(dev) if dev.mig_enabled else []
        dev.raw = {
            "name": dev.name,
            "pci_device_id": (pci.pciDeviceId >> 16) if pci is not None else None,
            "pci_subsystem_id": (pci.pciSubSystemId >> 16) if pci is not None else None,
            "memory_mib": (mem.total // MIB) if mem is not None else None,
            "compute_capability": f"{cc[0]}.{cc[1]}" if cc else "",
            "mig_capable": mig_mode is not None,
            "mig_enabled": dev.mig_enabled,
            "mig_profiles": sorted(m[3] for m in dev.migs),  # one entry per instance
            "virtualization_mode": virt_names.get(virt, "") if virt is not None else "",
            "driver_version": self.driver_version,
            "compute_mode": compute_mode,  # NVML_COMPUTEMODE_*; EXCLUSIVE_PROCESS under MPS
            "minor_number": minor,  # /dev/nvidia<N>, as GKE device ids name GPUs
        }
        dev.field_ids = []
        for const, family, scale, labels in FIELDS:
            fid = getattr(lib, const, None)
            if fid is not None:
                dev.field_ids.append((fid, family, scale, labels))
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
        if [m[1:] for m in migs] != [m[1:] for m in dev.migs]:
            log.info("GPU %d: MIG layout changed: %d instance(s)", dev.index, len(migs))
            dev.migs = migs
            dev.gpm_samples = {k: v for k, v in dev.gpm_samples.items() if k == "device"}
            dev.raw = dict(dev.raw, mig_profiles=sorted(m[3] for m in migs))

    def _enumerate_migs(self, dev: _Device) -> list:
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
            profile = name.rsplit(" ", 1)[-1] if " MIG " in f" {name} " or "MIG" in name else ""
            migs.append((mh, gi, ci, profile, _text(self._call(dev, "nvmlDeviceGetUUID", mh, scope="@mig") or "")))
        return migs

    # --- XID events on their own thread ------------------------------------------------
    def _start_xid_thread(self) -> None:
        lib = self.lib
        event_set = self._call(None, "nvmlEventSetCreate")
        if event_set is None:
            return
        registered = 0
        for dev in self.devices:
            self.calls["nvmlDeviceRegisterEvents"] += 1
            try:
                lib.nvmlDeviceRegisterEvents(dev.handle, lib.nvmlEventTypeXidCriticalError, event_set)
                registered += 1
            except lib.NVMLError as exc:
                self._classify(dev, "nvmlDeviceRegisterEvents", exc)
        if not registered:
            return
        self._stop.clear()
        self._xid_thread = threading.Thread(target=self._xid_loop, args=(event_set,), name="gpulse-xid", daemon=True)
        self._xid_thread.start()

    def _xid_loop(self, event_set) -> None:
        lib = self.lib
        while not self._stop.is_set():
            try:
                data = lib.nvmlEventSetWait_v2(event_set, 500)
            except lib.NVMLError as exc:
                if getattr(exc, "value", None) != lib.NVML_ERROR_TIMEOUT:
                    self.errors[("nvmlEventSetWait_v2", "broken")] += 1
                    self._stop.wait(1.0)
                continue
            except Exception:  # noqa: BLE001 - the XID watch must outlive any surprise
                log.exception("XID event wait failed")
                self.errors[("nvmlEventSetWait_v2", "broken")] += 1
                self._stop.wait(1.0)
                continue
            index = self._device_index(data.device)
            with self._xid_lock:
                self.xids[(index, int(data.eventData))] += 1
            log.warning("XID %d on GPU %s", data.eventData, index)
            if int(data.eventData) == 79 and index is not None:  # fallen off the bus
                self.devices[index].lost = True
        self._call(None, "nvmlEventSetFree", event_set)

    def _device_index(self, handle):
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
        devices, migs = [], []
        for dev in self.devices:
            if dev.lost and not self._probe_lost(dev, now):
                devices.append(DeviceReading(dev.index, dev.uuid, dev.name, dev.pci_bus_id, up=False,
                                             mig_enabled=dev.mig_enabled, labeled=self._xid_labels(dev), raw=dev.raw))
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

    def _read_device(self, dev: _Device, now: float):
        lib, h, call = self.lib, dev.handle, self._call
        values, labeled = {}, {}
        util = memutil = None
        if not dev.mig_enabled:
            u = call(dev, "nvmlDeviceGetUtilizationRates", h)
            if u is not None:
                util, memutil = u.gpu / 100.0, u.memory / 100.0
        mem = call(dev, "nvmlDeviceGetMemoryInfo", h)
        if mem is not None:
            values["gpulse_gpu_memory_used_bytes"] = float(mem.used)
            values["gpulse_gpu_memory_total_bytes"] = float(mem.total)
        self._read_fields(dev, values, labeled)
        if "gpulse_gpu_power_watts" not in values:
            mw = call(dev, "nvmlDeviceGetPowerUsage", h)
            if mw is not None:
                values["gpulse_gpu_power_watts"] = mw / 1000.0
        limit = call(dev, "nvmlDeviceGetEnforcedPowerLimit", h)
        if limit is not None:
            values["gpulse_gpu_power_limit_watts"] = limit / 1000.0
        temp = call(dev, "nvmlDeviceGetTemperature", h, lib.NVML_TEMPERATURE_GPU)
        if temp is not None:
            values["gpulse_gpu_temperature_celsius"] = float(temp)
        sm = call(dev, "nvmlDeviceGetClockInfo", h, lib.NVML_CLOCK_SM)
        if sm is not None:
            values["gpulse_gpu_sm_clock_hertz"] = sm * 1e6
        memclk = call(dev, "nvmlDeviceGetClockInfo", h, lib.NVML_CLOCK_MEM)
        if memclk is not None:
            values["gpulse_gpu_memory_clock_hertz"] = memclk * 1e6
        fan = call(dev, "nvmlDeviceGetFanSpeed", h)
        if fan is not None:
            values["gpulse_gpu_fan_speed_ratio"] = fan / 100.0
        for function, family in (("nvmlDeviceGetEncoderUtilization", "gpulse_gpu_encoder_utilization_ratio"),
                                 ("nvmlDeviceGetDecoderUtilization", "gpulse_gpu_decoder_utilization_ratio")):
            r = call(dev, function, h)
            if r is not None:
                values[family] = r[0] / 100.0
        reasons = call(dev, "nvmlDeviceGetCurrentClocksEventReasons", h)
        if reasons is not None:
            labeled["gpulse_gpu_clock_event_active"] = {
                (name,): 1.0 if reasons & getattr(lib, const, 0) else 0.0 for name, const in CLOCK_EVENT_REASONS}
        rows = call(dev, "nvmlDeviceGetRemappedRows", h)
        if rows is not None:
            labeled["gpulse_gpu_remapped_rows"] = {("correctable",): float(rows[0]), ("uncorrectable",): float(rows[1]),
                                                   ("pending",): float(rows[2]), ("failure",): float(rows[3])}
        labeled.update(self._xid_labels(dev))
        if dev.gpm and not dev.mig_enabled:
            for name, value in self._gpm(dev, "device", now, "nvmlGpmSampleGet", (h,), tuple(GPM_DEVICE_METRICS)).items():
                values[GPM_DEVICE_METRICS[name]] = max(0.0, min(1.0, value / 100.0))
        if dev.mig_enabled:
            # Per instance: the parent's list needs privileges the DaemonSet does not have.
            self._rescan_migs(dev, now)
            mig_readings = self._read_migs(dev, now)
            processes = tuple(p for m in mig_readings for p in m.processes)
            proc_util = ()  # not supported on MIG GPUs
        else:
            mig_readings = ()
            processes = self._processes(dev, h)
            proc_util = self._process_utilization(dev)
        up = not dev.lost
        reading = DeviceReading(dev.index, dev.uuid, dev.name, dev.pci_bus_id, up=up, mig_enabled=dev.mig_enabled,
                                utilization=util, memory_utilization=memutil, values=values, labeled=labeled,
                                raw=dev.raw, processes=processes, process_utilization=proc_util)
        return reading, mig_readings

    def _xid_labels(self, dev: _Device) -> dict:
        with self._xid_lock:
            xids = {(str(x),): float(n) for (i, x), n in self.xids.items() if i == dev.index}
        return {"gpulse_gpu_xid_errors_total": xids} if xids else {}

    def _read_fields(self, dev: _Device, values: dict, labeled: dict) -> None:
        if not dev.field_ids or "nvmlDeviceGetFieldValues" in dev.unsupported:
            return
        lib = self.lib
        result = self._call(dev, "nvmlDeviceGetFieldValues", dev.handle, [f[0] for f in dev.field_ids])
        if result is None:
            return
        keep = []
        for spec, fv in zip(dev.field_ids, result):
            fid, family, scale, labels = spec
            ret = fv.nvmlReturn
            if ret == lib.NVML_SUCCESS:
                keep.append(spec)
                v = _field_value(lib, fv) * scale
                if labels:
                    labeled.setdefault(family, {})[labels] = v
                else:
                    values[family] = v
            elif ret in (lib.NVML_ERROR_NOT_SUPPORTED, lib.NVML_ERROR_NO_PERMISSION):
                self.errors[(f"nvmlDeviceGetFieldValues:{self._field_names.get(fid, fid)}", "unsupported")] += 1  # then dropped
            else:
                keep.append(spec)
                self.errors[(f"nvmlDeviceGetFieldValues:{self._field_names.get(fid, fid)}", "broken")] += 1
        dev.field_ids = keep

    def _processes(self, dev: _Device, handle, scope: str = "") -> tuple:
        function = self.functions.get("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses")
        procs = self._call(dev, function, handle, scope=scope)
        if not procs:
            return ()
        out = []
        for p in procs:
            gi = getattr(p, "gpuInstanceId", _NA_ID)
            ci = getattr(p, "computeInstanceId", _NA_ID)
            out.append(ProcessInfo(int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory),
                                   None if gi in (None, _NA_ID) else int(gi), None if ci in (None, _NA_ID) else int(ci)))
        return tuple(out)

    def _process_utilization(self, dev: _Device) -> tuple:
        """One mean sample per PID over the period since the last call (the driver may answer
        several samples per process, and old ones again: the fold skips those)."""
        samples = self._call(dev, "nvmlDeviceGetProcessUtilization", dev.handle, dev.last_seen_us)
        if not samples:
            return ()
        folded = fold_process_samples(samples, dev.last_seen_us)
        mem = {}
        for s in samples:
            if int(s.timeStamp) > dev.last_seen_us:
                mem[s.pid] = mem.get(s.pid, 0.0) + float(s.memUtil)
        out = tuple(ProcessUtilization(int(pid), last_ts, total / count, mem.get(pid, 0.0) / count)
                    for pid, (total, count, last_ts) in sorted(folded.items()))
        if out:
            dev.last_seen_us = max(dev.last_seen_us, max(p.timestamp_us for p in out))
        return out

    def _read_migs(self, dev: _Device, now: float) -> tuple:
        out = []
        for mh, gi, ci, profile, mig_uuid in dev.migs:
            mem = self._call(dev, "nvmlDeviceGetMemoryInfo", mh, scope="@mig")
            procs = self._processes(dev, mh, scope="@mig")
            util = self._gpm_utilization(dev, gi, now) if dev.gpm else None
            out.append(MigReading(dev.index, dev.uuid, gi, ci, profile, mig_uuid,
                                  float(mem.used) if mem is not None else None,
                                  float(mem.total) if mem is not None else None, util, procs))
        return tuple(out)

    def _gpm_utilization(self, dev: _Device, gi: int, now: float):
        """Graphics activity of one GPU instance, as a ratio."""
        got = self._gpm(dev, ("mig", gi), now, "nvmlGpmMigSampleGet", (dev.handle, gi), ("NVML_GPM_METRIC_GRAPHICS_UTIL",))
        util = got.get("NVML_GPM_METRIC_GRAPHICS_UTIL")
        return None if util is None else max(0.0, min(1.0, util / 100.0))

    def _gpm(self, dev: _Device, key, now: float, sample_fn: str, args: tuple, metrics: tuple) -> dict:
        """GPM metrics (percent) from this tick's sample and the previous one (>= 100 ms apart).

        Two sample buffers per key alternate, so a tick costs one sample call and one
        metrics call whatever the number of metrics asked."""
        lib = self.lib
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
        for i, name in enumerate(metrics):
            request.metrics[i].metricId = getattr(lib, name)
        dev.gpm_samples[key] = (sample, now, prev[0])  # the older buffer takes the next sample
        if self._call(dev, "nvmlGpmMetricsGet", request) is None:
            return {}
        return {name: request.metrics[i].value for i, name in enumerate(metrics)
                if request.metrics[i].nvmlReturn == lib.NVML_SUCCESS}


def _handle_key(handle):
    """The device a handle points to: the address for ctypes handles, the object otherwise."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


def _field_value(lib, fv) -> float:
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
