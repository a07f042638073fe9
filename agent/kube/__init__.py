"""Kubernetes inputs: kubelet PodResources (gRPC), /proc cgroups, the API server."""
