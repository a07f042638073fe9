"""Simulation of the outside world: scenarios and fakes of NVML, kubelet, /proc, servers."""
