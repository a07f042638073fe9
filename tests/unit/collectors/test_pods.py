"""The pods collector renders what the snapshot holds, fresh every tick."""

from types import MappingProxyType

from gpulse.collectors import pods as pods_collector
from gpulse.kernels import ExpositionEncoder
from gpulse.snapshot import GpuState, PodClaim, PodShare, Snapshot, SourceStatus

G = "GPU-00000000-0000-4000-8000-000000000000"


def _snap(pods, unattributed=None, kubelet=True, migs=(), claims=(), unresolved_allocations=None):
    return Snapshot(timestamp=0.0, node_name="n", gpus=(GpuState(0, G, "H100"),), migs=migs, pods=tuple(pods),
                    unattributed=MappingProxyType(unattributed or {}), claims=tuple(claims),
                    unresolved_allocations=MappingProxyType(unresolved_allocations or {}),
                    sources=MappingProxyType({"kubelet": SourceStatus(kubelet, 1.0, "" if kubelet else "down")}))


def _render(collector, snap):
    return ExpositionEncoder().render(list(collector.collect(snap))).decode()


def test_pod_series_and_empty_mig_labels():
    shares = [PodShare("ml", "a", "main", 0, G, "time-slicing", 0.25, 0.1, 5.0),
              PodShare("ml", "b", "main", 0, G, "mig", 1.0, None, 7.0, "3", "0", "1g.10gb", "MIG-x")]
    text = _render(pods_collector, _snap(shares, {0: 0.05}))
    assert f'gpulse_pod_gpu_allocated{{namespace="ml",pod="a",container="main",gpu="0",uuid="{G}",sharing="time-slicing",allocation="device-plugin"}} 0.25' in text
    assert ('gpulse_pod_gpu_memory_used_bytes{namespace="ml",pod="b",container="main",gpu="0",'
            f'uuid="{G}",sharing="mig",gpu_instance="3",compute_instance="0",mig_profile="1g.10gb",mig_uuid="MIG-x",'
            'allocation="device-plugin"} 7') in text
    assert 'pod="b"' not in "".join(l for l in text.splitlines() if l.startswith("gpulse_pod_gpu_utilization_ratio"))
    assert f'gpulse_gpu_unattributed_utilization_ratio{{gpu="0",uuid="{G}"}} 0.05' in text
    assert "NaN" not in text


def test_gone_pod_has_no_series():
    text = _render(pods_collector, _snap([], kubelet=False))
    assert "gpulse_pod_gpu" not in text


def test_dra_shares_claims_and_unresolved_allocations():
    shares = [PodShare("ml", "a", "main", 0, G, "exclusive", 1.0, 0.5, 5.0, allocation="dra")]
    claims = [PodClaim("ml", "a", "main", "ml", "a-gpu-x7k2p", "gpu.nvidia.com", "node-1", "gpu-0", G)]
    text = _render(pods_collector, _snap(shares, claims=claims, unresolved_allocations={
        ("dra", "gpu.nvidia.com", "slice_not_seen"): 2, ("device-plugin", "", "unknown_device"): 1}))
    assert (f'gpulse_pod_gpu_utilization_ratio{{namespace="ml",pod="a",container="main",gpu="0",uuid="{G}",'
            'sharing="exclusive",allocation="dra"} 0.5') in text
    assert ('gpulse_pod_gpu_claim_info{namespace="ml",pod="a",container="main",claim_namespace="ml",'
            f'claim="a-gpu-x7k2p",driver="gpu.nvidia.com",pool="node-1",device="gpu-0",uuid="{G}"}} 1') in text
    assert ('gpulse_attribution_unresolved_allocations{allocation="dra",driver="gpu.nvidia.com",'
            'reason="slice_not_seen"} 2') in text
    assert 'gpulse_attribution_unresolved_allocations{allocation="device-plugin",reason="unknown_device"} 1' in text
