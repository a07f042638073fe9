"""Every metric family gpulse exports, as data.

The catalog is the source of truth: collectors declare the families they render and the
registry holds them to it, the metrics reference in the README is generated from it, and
tests check that every metric named in deploy/ rules, the adapter and KEDA config and
dashboards/ exists here. Device and MIG families come from their NVML rows
(gpulse.nvml.metrics); dcgm-exporter's names under --collector.dcgm_compat are here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .family import Family
from .nvml.metrics import ALL_METRICS, GPU_LABELS, MIG_LABELS

GPU = GPU_LABELS
MIG = MIG_LABELS
POD = ("namespace", "pod", "container", "gpu", "uuid", "sharing",
       "gpu_instance", "compute_instance", "mig_profile", "mig_uuid", "allocation")
CLAIM = ("namespace", "pod", "container", "claim_namespace", "claim", "driver", "pool", "device", "uuid")
WORKLOAD = ("namespace", "pod", "server", "model")
STARTUP_POD = ("namespace", "pod", "workload", "workload_type", "start")
# Cold starts of GPU inference pods run from seconds (cached image, small model) to an hour
# (a large image pulled and 100+ GB of weights loaded).
STARTUP_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 450.0, 600.0,
                   900.0, 1200.0, 1800.0, 2700.0, 3600.0)

# Collectors that can be switched: name -> (on by default, what it renders). "self" (the
# agent's own health) always runs.
COLLECTORS: dict[str, tuple[bool, str]] = {
    "gpu": (True, "per-GPU NVML metrics."),
    "mig": (True, "per-MIG-instance metrics."),
    "pods": (True, "per-pod GPU allocation, utilization and memory."),
    "workloads": (True, "per-workload queue depth, running requests and KV cache."),
    "startup": (True, "cold-start timeline of inference pods: phases, starts in progress, a histogram per workload."),
    "identity": (True, "GPU and node identity (gpulse_gpu_info, gpulse_node_info)."),
    "dcgm_compat": (False, "dcgm-exporter's DCGM_FI_* names and labels, for its dashboards and alerts."),
    "energy": (True, "per-pod GPU energy and power, the unattributed rest and each GPU's idle floor."),
    "cost": (True, "per-pod GPU cost and idle-allocated time, and each GPU's price per hour."),
}
SELF = "self"

MetricType = Literal["gauge", "counter", "info", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: MetricType
    unit: str  # base unit, "" when dimensionless
    help: str
    labels: tuple[str, ...]
    collector: str  # the collector that renders it
    source: str  # where the value comes from (NVML call or field, kubelet, ...)
    stability: str = "stable"  # stable | experimental
    buckets: tuple[float, ...] = ()  # histograms: upper bounds (+Inf implied)


def _m(name: str, type_: MetricType, unit: str, help_: str, labels: tuple[str, ...], collector: str,
       source: str, stability: str = "stable", buckets: tuple[float, ...] = ()) -> MetricSpec:
    return MetricSpec(name, type_, unit, help_, tuple(labels), collector, source, stability, buckets)


def _rows() -> tuple[MetricSpec, ...]:
    return tuple(MetricSpec(r.family, r.type, r.unit, r.help, r.labels, r.scope, r.source, r.stability)
                 for r in ALL_METRICS)


# --- dcgm-exporter's names (collector "dcgm_compat") ------------------------------------
# Labels of its GPU series: gpu, UUID, pci_bus_id, device ("nvidia<N>"), modelName, Hostname
# (released versions up to 4.5.3-4.8.2), DCGM_FI_DRIVER_VERSION (a "label" field of its
# default counters), GPU_I_PROFILE/GPU_I_ID on MIG instances, container/namespace/pod.
DCGM_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "GPU_I_PROFILE", "GPU_I_ID",
               "Hostname", "DCGM_FI_DRIVER_VERSION", "container", "namespace", "pod")
MIB = 1024.0 * 1024.0
PERCENT = 100.0


@dataclass(frozen=True)
class DcgmField:
    """A dcgm-exporter family rendered from a gpulse family: value = gpulse value * scale."""
    name: str
    type: Literal["gauge", "counter"]
    help: str  # dcgm-exporter's help text
    source: str  # gpulse family (GpuState.values, or MigState.values under its gpulse_mig_ name)
    scale: float = 1.0  # gpulse base unit -> DCGM unit
    mig: bool = False  # also rendered per MIG instance


# Names, types and units follow dcgm-exporter's default counters (etc/default-counters.csv):
# utilization in percent, memory in MiB, clocks in MHz, energy in millijoules.
DCGM_FIELDS: tuple[DcgmField, ...] = (
    DcgmField("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "gpulse_gpu_sm_clock_hertz", 1e-6),
    DcgmField("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "gpulse_gpu_memory_clock_hertz", 1e-6),
    DcgmField("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", "gpulse_gpu_memory_temperature_celsius"),
    DcgmField("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "gpulse_gpu_temperature_celsius"),
    DcgmField("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "gpulse_gpu_power_watts"),
    DcgmField("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).",
              "gpulse_gpu_energy_joules_total", 1000.0),
    DcgmField("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.",
              "gpulse_gpu_pcie_replay_errors_total"),
    DcgmField("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "gpulse_gpu_utilization_ratio", PERCENT),
    DcgmField("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).",
              "gpulse_gpu_memory_utilization_ratio", PERCENT),
    DcgmField("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", "gpulse_gpu_encoder_utilization_ratio", PERCENT),
    DcgmField("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %).", "gpulse_gpu_decoder_utilization_ratio", PERCENT),
    DcgmField("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "gpulse_gpu_memory_used_bytes",
              1 / MIB, mig=True),
    # MIG instances' graphics activity is gpulse_mig_utilization_ratio (GPM or a co-located
    # dcgm-exporter); whole-GPU engine activity comes from GPM on Hopper+.
    DcgmField("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.",
              "gpulse_mig_utilization_ratio", mig=True),
    DcgmField("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.",
              "gpulse_gpu_tensor_active_ratio"),
    DcgmField("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
              "Ratio of cycles the device memory interface is active sending or receiving data.",
              "gpulse_gpu_dram_active_ratio"),
)

# dcgm-exporter families derived from more than one gpulse value (rendered by the collector).
DCGM_DERIVED: tuple[tuple[str, Literal["gauge", "counter"], str, str], ...] = (
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.",
     "gpulse_gpu_xid_errors_total: the code when exactly one was seen, 0 when none"),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).",
     "gpulse_gpu_memory_total_bytes - gpulse_gpu_memory_used_bytes"),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors",
     'gpulse_gpu_remapped_rows{state="uncorrectable"}'),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors",
     'gpulse_gpu_remapped_rows{state="correctable"}'),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed",
     'gpulse_gpu_remapped_rows{state="failure"}'),
)


def _dcgm() -> tuple[MetricSpec, ...]:
    fields = tuple(MetricSpec(f.name, f.type, "", f.help, DCGM_LABELS, "dcgm_compat",
                              f"{f.source}" + (f" x {f.scale:g}" if f.scale != 1.0 else ""))
                   for f in DCGM_FIELDS)
    derived = tuple(MetricSpec(name, type_, "", help_, DCGM_LABELS, "dcgm_compat", source)
                    for name, type_, help_, source in DCGM_DERIVED)
    return fields + derived


CATALOG: tuple[MetricSpec, ...] = (
    # --- device (collector "gpu"); the NVML rows, after gpulse_gpu_up ---
    _m("gpulse_gpu_up", "gauge", "", "1 when the GPU answers NVML, 0 when it is lost or fell off the bus.", GPU, "gpu", "nvmlDeviceGetHandleByIndex / GPU_IS_LOST"),
    *_rows(),
    # --- pods (collector "pods") ---
    _m("gpulse_pod_gpu_allocated", "gauge", "", "GPUs allocated to a container: 1 per whole GPU or MIG instance, 1/replicas per time-sliced share, 1/holders of a DRA device several containers hold.", POD, "pods", "kubelet PodResources List"),
    _m("gpulse_pod_gpu_utilization_ratio", "gauge", "ratio", "The container's share of the GPU's (or MIG instance's) utilization, mean over the window.", POD, "pods", "nvmlDeviceGetProcessUtilization + /proc/<pid>/cgroup"),
    _m("gpulse_pod_gpu_memory_used_bytes", "gauge", "bytes", "Device memory used by the container's processes.", POD, "pods", "nvmlDeviceGetComputeRunningProcesses + /proc/<pid>/cgroup"),
    _m("gpulse_gpu_unattributed_utilization_ratio", "gauge", "ratio", "Utilization of a shared GPU that no pod could be tied to.", GPU, "pods", "attribution"),
    _m("gpulse_attribution_unresolved_processes", "gauge", "", "GPU processes whose usage could not be tied to a pod, by reason (not_in_pod, unknown_pod_uid, pod_holds_no_slot, ambiguous_container).", GPU + ("reason",), "pods", "/proc/<pid>/cgroup + kubelet + API"),
    _m("gpulse_pod_gpu_claim_info", "info", "", "A container's DRA claim on a device and the GPU it resolved to; join with * on (namespace, pod, container, uuid) group_left(claim).", CLAIM, "pods", "kubelet PodResources List (dynamic_resources) + ResourceSlices"),
    _m("gpulse_attribution_unresolved_allocations", "gauge", "", "Allocations the kubelet reports that could not be tied to a GPU, by how they were made (device-plugin, dra) and reason (unknown_device, slice_not_seen, ambiguous_device).", ("allocation", "driver", "reason"), "pods", "kubelet PodResources List + ResourceSlices + NVML"),
    # --- energy (collector "energy"); the model: gpulse.energy and the README ---
    _m("gpulse_pod_gpu_energy_joules_total", "counter", "joules", "Energy of the GPU attributed to the container: all of it on a whole GPU; on a shared or MIG GPU the idle floor's energy by allocation and the energy above it by activity.", POD, "energy", "NVML energy counter + attribution"),
    _m("gpulse_pod_gpu_power_watts", "gauge", "watts", "The container's part of the GPU's power draw, split like its energy.", POD, "energy", "NVML power + attribution"),
    _m("gpulse_gpu_unattributed_energy_joules_total", "counter", "joules", "Energy of the GPU no pod could take (idle capacity nobody holds, host processes, unknown pods); with the pods' energy it adds up to gpulse_gpu_energy_joules_total.", GPU, "energy", "NVML energy counter + attribution"),
    _m("gpulse_gpu_idle_power_watts", "gauge", "watts", "Estimated power the GPU draws with nothing running, by estimate (idle: lowest power under 5% activity; fit: intercept of power against activity; lowest_seen: lowest power seen, an upper bound).", GPU + ("estimate",), "energy", "NVML power and utilization"),
    # --- cost (collector "cost") ---
    _m("gpulse_pod_gpu_allocated_idle_seconds_total", "counter", "seconds", "Time the container held the unit while its utilization per allocated GPU stayed under --cost.idle-threshold, weighted by the allocated fraction.", POD, "cost", "attribution"),
    _m("gpulse_pod_gpu_cost_total", "counter", "", "Cost of the container's GPU use in the price table's currency: the GPU's price per hour accrued by the container's allocated fraction of the GPU (a MIG instance: its slices of the GPU's), or by its energy share with --cost.basis=energy.", POD, "cost", "price table x attribution"),
    _m("gpulse_gpu_price_per_hour", "gauge", "", "Price of one GPU-hour of this GPU from the price table, with the row's source; absent when the table has no row for its SKU or model on this cloud and pricing kind.", GPU + ("price_key", "cloud", "pricing_kind", "currency", "region", "source", "as_of"), "cost", "price table (--cost.price-file)"),
    # --- workloads (collector "workloads") ---
    _m("gpulse_workload_queue_depth", "gauge", "", "Requests waiting in the inference server's queue.", WORKLOAD, "workloads", "server adapters / push"),
    _m("gpulse_workload_running_requests", "gauge", "", "Requests being processed by the inference server.", WORKLOAD, "workloads", "server adapters / push"),
    _m("gpulse_workload_kv_cache_usage_ratio", "gauge", "ratio", "Fraction of the KV cache in use.", WORKLOAD, "workloads", "server adapters"),
    _m("gpulse_workload_scrape_up", "gauge", "", "1 when the last scrape of the workload's endpoint succeeded.", ("namespace", "pod", "server"), "workloads", "HTTP scrape / push"),
    _m("gpulse_workload_samples_dropped_total", "counter", "", "Scraped samples of the workload's endpoint dropped as out of range, by reason: not_finite, negative, too_large (a count over 1e12 like the push limit, a KV ratio over 1). The model's value for that signal is not exported.", ("namespace", "pod", "server", "reason"), "workloads", "HTTP scrape"),
    _m("gpulse_workload_scrape_duration_seconds", "gauge", "seconds", "Duration of the last scrape of the workload's endpoint.", ("namespace", "pod", "server"), "workloads", "HTTP scrape"),
    # --- startup (collector "startup") ---
    _m("gpulse_workload_startup_phase_seconds", "gauge", "seconds", "Seconds the latest start of an inference pod spent in each phase, named after the milestone that ends it: containers_started (from PodScheduled, or from the previous container's exit for start=restart: image pull, init containers, back-off), gpu_memory_allocated (the first tick its processes hold GPU memory), server_answering (first successful scrape or push), model_ready (the server's own ready signal), first_request_served (first increase of its request counter). The phase in progress counts up; a milestone not seen, or seen only after a later one, has no series. Gone with the pod.", STARTUP_POD + ("phase",), "startup", "API pod status + NVML processes + scrapes", "experimental"),
    _m("gpulse_workload_starting", "gauge", "", "1 while an inference pod is between scheduled (or a container restart) and model ready: capacity on its way, phase is the phase it waits in; 0 once ready.", STARTUP_POD + ("phase",), "startup", "API pod status + NVML processes + scrapes", "experimental"),
    _m("gpulse_workload_startup_seconds", "histogram", "seconds", "Completed starts on this node, scheduled (start=restart: the previous container's exit) to model ready. workload is the pod's controller: a ReplicaSet <name>-<pod-template-hash> is its Deployment (workload_type=deployment; rollout for Argo Rollouts), a StatefulSet, DaemonSet, Job or other controller is itself (its kind in lower case), a pod without owner is itself (pod).", ("namespace", "workload", "workload_type", "start"), "startup", "API pod status + scrapes", "experimental", STARTUP_BUCKETS),
    # --- identity (collector "identity") ---
    _m("gpulse_gpu_info", "info", "", "Canonical identity of a GPU; join with * on (uuid) group_left(model).", GPU + ("vendor", "family", "chip", "model", "sku", "form_factor", "memory_gb", "compute_capability", "pci_device_id", "virtualization", "vgpu_profile", "mig_capable", "mig_enabled", "raw_name", "source"), "identity", "NVML + identity tables"),
    _m("gpulse_node_info", "info", "", "Identity of the node: cloud, instance type, driver and GPU inventory.", ("node", "cloud", "region", "zone", "instance_type", "gpu_model", "gpu_count", "driver_version", "cuda_version"), "identity", "providerID, DMI, node labels, NVML"),
    _m("gpulse_identity_conflict", "gauge", "", "1 for each identity disagreement: a node label or instance type against NVML, or a GPU's own NVML fact (label nvml:name, nvml:pci_device_id, nvml:memory_total, nvml:compute_capability) outvoted by the others; field names what disagrees.", ("node", "label", "label_value", "nvml_value", "field", "gpu", "uuid"), "identity", "node labels vs NVML; NVML name vs PCI id vs memory vs CC"),
    _m("gpulse_identity_unknown_gpus", "gauge", "", "GPUs whose identity fell back to the raw name (unknown part).", ("node",), "identity", "identity tables"),
    # --- self (collector "self") ---
    _m("gpulse_build_info", "info", "", "Build of the agent.", ("version", "python", "extensions", "nvml_backend"), SELF, "agent"),
    _m("gpulse_collector_success", "gauge", "", "1 when the collector rendered without error in the last tick.", ("collector",), SELF, "agent"),
    _m("gpulse_collector_duration_seconds", "gauge", "seconds", "Time the collector took in the last tick.", ("collector",), SELF, "agent"),
    _m("gpulse_tick_duration_seconds", "gauge", "seconds", "Duration of the previous sampler tick (read, attribute, render); this tick is still running when it is rendered.", (), SELF, "agent"),
    _m("gpulse_ticks_total", "counter", "", "Sampler ticks completed.", (), SELF, "agent"),
    _m("gpulse_ticks_missed_total", "counter", "", "Ticks skipped because the previous one overran.", (), SELF, "agent"),
    _m("gpulse_last_tick_timestamp_seconds", "gauge", "seconds", "Unix time of the tick that produced this scrape.", (), SELF, "agent"),
    _m("gpulse_snapshot_age_seconds", "gauge", "seconds", "Age of each background source's data when the snapshot was built.", ("source",), SELF, "agent"),
    _m("gpulse_source_up", "gauge", "", "1 when the source's last refresh succeeded.", ("source",), SELF, "agent"),
    _m("gpulse_nvml_errors_total", "counter", "", "NVML calls that failed, by function and reason (broken, gone, no_data, unsupported).", ("function", "reason"), SELF, "agent"),
    _m("gpulse_nvml_calls_total", "counter", "", "NVML calls made, by function.", ("function",), SELF, "agent"),
    _m("gpulse_series_dropped_total", "counter", "", "Series dropped by the cardinality ceiling, by family.", ("family",), SELF, "agent"),
    _m("gpulse_requests_refused_total", "counter", "", "Connections, requests and pushes refused, by component (http, push) and reason.", ("component", "reason"), SELF, "agent"),
    _m("process_cpu_seconds_total", "counter", "seconds", "Total user and system CPU time spent by the agent.", (), SELF, "psutil"),
    _m("process_resident_memory_bytes", "gauge", "bytes", "Resident memory of the agent.", (), SELF, "psutil"),
    _m("process_start_time_seconds", "gauge", "seconds", "Start time of the agent since the epoch.", (), SELF, "psutil"),
    _m("process_open_fds", "gauge", "", "Open file descriptors of the agent.", (), SELF, "psutil"),
    # --- dcgm-exporter's names (collector "dcgm_compat", off by default) ---
    *_dcgm(),
)

BY_NAME: dict[str, MetricSpec] = {s.name: s for s in CATALOG}
assert len(BY_NAME) == len(CATALOG), "duplicate metric name in catalog"
assert {s.collector for s in CATALOG} == set(COLLECTORS) | {SELF}, "every family has a known collector"


def family(name: str) -> Family:
    """A fresh, empty family for a catalog entry."""
    spec = BY_NAME[name]
    return Family(spec.name, spec.type, spec.help, spec.labels, buckets=spec.buckets)


def for_collector(collector: str) -> tuple[MetricSpec, ...]:
    return tuple(s for s in CATALOG if s.collector == collector)
