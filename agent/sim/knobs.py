"""The scenario knobs that make the fake NVML answer NOT_SUPPORTED, in one list.

Most come from the metric rows (each read names its knob, gpulse.nvml.metrics); the calls
that are not rows are listed here. Scenario files validate `unsupported:` against KNOBS.
"""

from __future__ import annotations

from ..nvml.metrics import sim_knobs

# Calls that are not metric rows, by the scenario knob that switches them off.
STRUCTURAL_KNOBS: dict[str, tuple[str, ...]] = {
    "processes": ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v3",
                  "nvmlDeviceGetComputeRunningProcesses_v2"),
    "process_utilization": ("nvmlDeviceGetProcessUtilization",),
    "gpm": ("nvmlGpmQueryDeviceSupport", "nvmlGpmMigSampleGet", "nvmlGpmSampleGet"),
    "nvlink": ("nvmlDeviceGetNvLinkState",),
    "ecc": ("nvmlDeviceGetTotalEccErrors",),
}
ROW_KNOBS = sim_knobs()  # NVML function or field constant -> knob
KNOBS = tuple(sorted(set(ROW_KNOBS.values()) | set(STRUCTURAL_KNOBS)))
