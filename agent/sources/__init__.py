"""Optional inputs beside NVML, e.g. a co-located dcgm-exporter."""
