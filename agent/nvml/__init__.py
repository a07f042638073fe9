"""NVML access. Only this package imports pynvml."""
