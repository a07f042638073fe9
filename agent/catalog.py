"""Every metric family gpulse exports, as data.

The catalog is the source of truth: collectors build families from it, the metrics
reference in the README is generated from it, and tests check that every metric named
in deploy/ rules, the adapter and KEDA config and dashboards/ exists here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .family import Family

GPU = ("gpu", "uuid")
MIG = ("gpu", "uuid", "gpu_instance", "compute_instance", "mig_profile", "mig_uuid")
POD = ("namespace", "pod", "container", "gpu", "uuid", "sharing",
       "gpu_instance", "compute_instance", "mig_profile", "mig_uuid")
WORKLOAD = ("namespace", "pod", "server", "model")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str  # gauge | counter | info
    unit: str  # base unit, "" when dimensionless
    help: str
    labels: tuple
    collector: str  # the collector that renders it
    source: str  # where the value comes from (NVML call or field, kubelet, ...)
    stability: str = "stable"  # stable | experimental


def _m(name, type_, unit, help_, labels, collector, source, stability="stable"):
    return MetricSpec(name, type_, unit, help_, tuple(labels), collector, source, stability)


CATALOG: tuple[MetricSpec, ...] = (
    # --- device (collector "gpu"); values come from GpuState.values / .labeled ---
    _m("gpulse_gpu_up", "gauge", "", "1 when the GPU answers NVML, 0 when it is lost or fell off the bus.", GPU, "gpu", "nvmlDeviceGetHandleByIndex / GPU_IS_LOST"),
    _m("gpulse_gpu_utilization_ratio", "gauge", "ratio", "Fraction of time a kernel ran on the GPU, mean over the window.", GPU, "gpu", "nvmlDeviceGetUtilizationRates.gpu"),
    _m("gpulse_gpu_utilization_max_ratio", "gauge", "ratio", "Highest GPU utilization sample within the window.", GPU, "gpu", "nvmlDeviceGetUtilizationRates.gpu"),
    _m("gpulse_gpu_memory_utilization_ratio", "gauge", "ratio", "Fraction of time device memory was read or written, mean over the window.", GPU, "gpu", "nvmlDeviceGetUtilizationRates.memory"),
    _m("gpulse_gpu_memory_used_bytes", "gauge", "bytes", "Device memory in use.", GPU, "gpu", "nvmlDeviceGetMemoryInfo.used"),
    _m("gpulse_gpu_memory_total_bytes", "gauge", "bytes", "Device memory installed, as reported.", GPU, "gpu", "nvmlDeviceGetMemoryInfo.total"),
    _m("gpulse_gpu_power_watts", "gauge", "watts", "Power draw.", GPU, "gpu", "NVML_FI_DEV_POWER_INSTANT"),
    _m("gpulse_gpu_power_limit_watts", "gauge", "watts", "Enforced power limit.", GPU, "gpu", "nvmlDeviceGetEnforcedPowerLimit"),
    _m("gpulse_gpu_energy_joules_total", "counter", "joules", "Energy consumed since the driver was loaded.", GPU, "gpu", "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION"),
    _m("gpulse_gpu_temperature_celsius", "gauge", "celsius", "GPU core temperature.", GPU, "gpu", "nvmlDeviceGetTemperature"),
    _m("gpulse_gpu_memory_temperature_celsius", "gauge", "celsius", "HBM temperature.", GPU, "gpu", "NVML_FI_DEV_MEMORY_TEMP"),
    _m("gpulse_gpu_sm_clock_hertz", "gauge", "hertz", "Current SM clock.", GPU, "gpu", "nvmlDeviceGetClockInfo(SM)"),
    _m("gpulse_gpu_memory_clock_hertz", "gauge", "hertz", "Current memory clock.", GPU, "gpu", "nvmlDeviceGetClockInfo(MEM)"),
    _m("gpulse_gpu_fan_speed_ratio", "gauge", "ratio", "Fan speed as a fraction of its maximum.", GPU, "gpu", "nvmlDeviceGetFanSpeed"),
    _m("gpulse_gpu_encoder_utilization_ratio", "gauge", "ratio", "Video encoder utilization.", GPU, "gpu", "nvmlDeviceGetEncoderUtilization"),
    _m("gpulse_gpu_decoder_utilization_ratio", "gauge", "ratio", "Video decoder utilization.", GPU, "gpu", "nvmlDeviceGetDecoderUtilization"),
    _m("gpulse_gpu_tensor_active_ratio", "gauge", "ratio", "Fraction of time the SMs ran tensor-core operations (GPM, Hopper+).", GPU, "gpu", "nvmlGpmMetricsGet ANY_TENSOR_UTIL"),
    _m("gpulse_gpu_dram_active_ratio", "gauge", "ratio", "Device memory bandwidth used, as a fraction of the maximum (GPM, Hopper+).", GPU, "gpu", "nvmlGpmMetricsGet DRAM_BW_UTIL"),
    _m("gpulse_gpu_sm_occupancy_ratio", "gauge", "ratio", "Resident warps as a fraction of the maximum (GPM, Hopper+).", GPU, "gpu", "nvmlGpmMetricsGet SM_OCCUPANCY"),
    _m("gpulse_gpu_clock_event_active", "gauge", "", "1 while a clock event (throttle) reason is active.", GPU + ("reason",), "gpu", "nvmlDeviceGetCurrentClocksEventReasons"),
    _m("gpulse_gpu_ecc_errors_total", "counter", "", "ECC errors since the last counter reset, by type.", GPU + ("type",), "gpu", "NVML_FI_DEV_ECC_SBE_AGG_TOTAL / DBE_AGG_TOTAL"),
    _m("gpulse_gpu_remapped_rows", "gauge", "", "Remapped memory rows by state (correctable, uncorrectable, pending, failure).", GPU + ("state",), "gpu", "nvmlDeviceGetRemappedRows"),
    _m("gpulse_gpu_xid_errors_total", "counter", "", "XID errors seen since the agent started, by XID code.", GPU + ("xid",), "gpu", "nvmlEventSetWait (XID critical errors)"),
    _m("gpulse_gpu_pcie_tx_bytes_total", "counter", "bytes", "Bytes sent over PCIe.", GPU, "gpu", "NVML_FI_DEV_PCIE_COUNT_TX_BYTES"),
    _m("gpulse_gpu_pcie_rx_bytes_total", "counter", "bytes", "Bytes received over PCIe.", GPU, "gpu", "NVML_FI_DEV_PCIE_COUNT_RX_BYTES"),
    _m("gpulse_gpu_pcie_replay_errors_total", "counter", "", "PCIe replay events.", GPU, "gpu", "NVML_FI_DEV_PCIE_REPLAY_COUNTER"),
    _m("gpulse_gpu_nvlink_tx_bytes_total", "counter", "bytes", "Data bytes sent over all NVLinks.", GPU, "gpu", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX"),
    _m("gpulse_gpu_nvlink_rx_bytes_total", "counter", "bytes", "Data bytes received over all NVLinks.", GPU, "gpu", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX"),
    # --- MIG (collector "mig") ---
    _m("gpulse_mig_utilization_ratio", "gauge", "ratio", "Graphics engine activity of a MIG instance, mean over the window (GPM on Hopper+, dcgm-exporter on A100/A30).", MIG, "mig", "nvmlGpmMigSampleGet + nvmlGpmMetricsGet / DCGM_FI_PROF_GR_ENGINE_ACTIVE"),
    _m("gpulse_mig_memory_used_bytes", "gauge", "bytes", "Memory in use on a MIG instance.", MIG, "mig", "nvmlDeviceGetMemoryInfo(MIG handle)"),
    _m("gpulse_mig_memory_total_bytes", "gauge", "bytes", "Memory of a MIG instance.", MIG, "mig", "nvmlDeviceGetMemoryInfo(MIG handle)"),
    # --- pods (collector "pods") ---
    _m("gpulse_pod_gpu_allocated", "gauge", "", "GPUs allocated to a container: 1 per whole GPU or MIG instance, 1/replicas per time-sliced share.", POD, "pods", "kubelet PodResources List"),
    _m("gpulse_pod_gpu_utilization_ratio", "gauge", "ratio", "The container's share of the GPU's (or MIG instance's) utilization, mean over the window.", POD, "pods", "nvmlDeviceGetProcessUtilization + /proc/<pid>/cgroup"),
    _m("gpulse_pod_gpu_memory_used_bytes", "gauge", "bytes", "Device memory used by the container's processes.", POD, "pods", "nvmlDeviceGetComputeRunningProcesses + /proc/<pid>/cgroup"),
    _m("gpulse_gpu_unattributed_utilization_ratio", "gauge", "ratio", "Utilization of a shared GPU that no pod could be tied to.", GPU, "pods", "attribution"),
    _m("gpulse_attribution_unresolved_processes", "gauge", "", "GPU processes whose usage could not be tied to a pod, by reason (not_in_pod, unknown_pod_uid, pod_holds_no_slot, ambiguous_container).", GPU + ("reason",), "pods", "/proc/<pid>/cgroup + kubelet + API"),
    # --- workloads (collector "workloads") ---
    _m("gpulse_workload_queue_depth", "gauge", "", "Requests waiting in the inference server's queue.", WORKLOAD, "workloads", "server adapters / push"),
    _m("gpulse_workload_running_requests", "gauge", "", "Requests being processed by the inference server.", WORKLOAD, "workloads", "server adapters / push"),
    _m("gpulse_workload_kv_cache_usage_ratio", "gauge", "ratio", "Fraction of the KV cache in use.", WORKLOAD, "workloads", "server adapters"),
    _m("gpulse_workload_scrape_up", "gauge", "", "1 when the last scrape of the workload's endpoint succeeded.", ("namespace", "pod", "server"), "workloads", "HTTP scrape / push"),
    _m("gpulse_workload_scrape_duration_seconds", "gauge", "seconds", "Duration of the last scrape of the workload's endpoint.", ("namespace", "pod", "server"), "workloads", "HTTP scrape"),
    # --- identity (collector "identity") ---
    _m("gpulse_gpu_info", "info", "", "Canonical identity of a GPU; join with * on (uuid) group_left(model).", GPU + ("vendor", "family", "chip", "model", "sku", "form_factor", "memory_gb", "compute_capability", "pci_device_id", "virtualization", "vgpu_profile", "mig_capable", "mig_enabled", "raw_name", "source"), "identity", "NVML + identity tables"),
    _m("gpulse_node_info", "info", "", "Identity of the node: cloud, instance type, driver and GPU inventory.", ("node", "cloud", "region", "zone", "instance_type", "gpu_model", "gpu_count", "driver_version", "cuda_version"), "identity", "providerID, DMI, node labels, NVML"),
    _m("gpulse_identity_conflict", "gauge", "", "1 for each node label whose GPU identity disagrees with NVML.", ("node", "label", "label_value", "nvml_value", "field"), "identity", "node labels vs NVML"),
    _m("gpulse_identity_unknown_gpus", "gauge", "", "GPUs whose identity fell back to the raw name (unknown part).", ("node",), "identity", "identity tables"),
    # --- self (collector "self") ---
    _m("gpulse_build_info", "info", "", "Build of the agent.", ("version", "python", "extensions", "nvml_backend"), "self", "agent"),
    _m("gpulse_collector_success", "gauge", "", "1 when the collector rendered without error in the last tick.", ("collector",), "self", "agent"),
    _m("gpulse_collector_duration_seconds", "gauge", "seconds", "Time the collector took in the last tick.", ("collector",), "self", "agent"),
    _m("gpulse_tick_duration_seconds", "gauge", "seconds", "Duration of the previous sampler tick (read, attribute, render); this tick is still running when it is rendered.", (), "self", "agent"),
    _m("gpulse_ticks_total", "counter", "", "Sampler ticks completed.", (), "self", "agent"),
    _m("gpulse_ticks_missed_total", "counter", "", "Ticks skipped because the previous one overran.", (), "self", "agent"),
    _m("gpulse_last_tick_timestamp_seconds", "gauge", "seconds", "Unix time of the tick that produced this scrape.", (), "self", "agent"),
    _m("gpulse_snapshot_age_seconds", "gauge", "seconds", "Age of each source's data when the snapshot was built.", ("source",), "self", "agent"),
    _m("gpulse_source_up", "gauge", "", "1 when the source's last refresh succeeded.", ("source",), "self", "agent"),
    _m("gpulse_nvml_errors_total", "counter", "", "NVML calls that failed, by function and reason (broken, gone, no_data, unsupported).", ("function", "reason"), "self", "agent"),
    _m("gpulse_nvml_calls_total", "counter", "", "NVML calls made, by function.", ("function",), "self", "agent"),
    _m("gpulse_series_dropped_total", "counter", "", "Series dropped by the cardinality ceiling, by family.", ("family",), "self", "agent"),
    _m("process_cpu_seconds_total", "counter", "seconds", "Total user and system CPU time spent by the agent.", (), "self", "psutil"),
    _m("process_resident_memory_bytes", "gauge", "bytes", "Resident memory of the agent.", (), "self", "psutil"),
    _m("process_start_time_seconds", "gauge", "seconds", "Start time of the agent since the epoch.", (), "self", "psutil"),
    _m("process_open_fds", "gauge", "", "Open file descriptors of the agent.", (), "self", "psutil"),
)

BY_NAME: dict[str, MetricSpec] = {s.name: s for s in CATALOG}
assert len(BY_NAME) == len(CATALOG), "duplicate metric name in catalog"


def family(name: str) -> Family:
    """A fresh, empty family for a catalog entry."""
    spec = BY_NAME[name]
    return Family(spec.name, spec.type, spec.help, spec.labels)


def for_collector(collector: str) -> tuple[MetricSpec, ...]:
    return tuple(s for s in CATALOG if s.collector == collector)
