"""The energy and cost collectors render what the snapshot's accounts hold; unknown values
are omitted, never NaN, and a GPU without a price has no price series."""

from gpulse import catalog
from gpulse.collectors import cost as cost_collector
from gpulse.collectors import energy as energy_collector
from gpulse.kernels import ExpositionEncoder
from gpulse.snapshot import GpuAccount, PodAccount, Snapshot

G = "GPU-00000000-0000-4000-8000-000000000000"
H = "GPU-11111111-1111-4111-8111-111111111111"
LABELS = ("ml", "a", "main", "0", G, "mig", "3", "0", "1g.10gb", "MIG-x", "dra")
SERIES = ('{namespace="ml",pod="a",container="main",gpu="0",uuid="' + G +
          '",sharing="mig",gpu_instance="3",compute_instance="0",mig_profile="1g.10gb",mig_uuid="MIG-x",'
          'allocation="dra"}')


def _render(collector, snap):
    return ExpositionEncoder().render(list(collector.collect(snap))).decode()


def _snap():
    pods = (PodAccount(LABELS, energy_joules=1234.5, power_watts=80.25, idle_seconds=12.0, cost=0.75),
            PodAccount(("ml", "b", "main", "1", H, "exclusive", "", "", "", "", "device-plugin")))
    gpus = (GpuAccount(0, G, unattributed_energy_joules=10.0, idle_power_watts=70.5, idle_power_estimate="fit",
                       price_per_hour=6.88, price_key="H100-SXM5-80GB", cloud="aws", pricing_kind="on-demand",
                       currency="USD", price_region="us-east-1", price_source="https://example/prices",
                       price_as_of="2026-11-09"),
            GpuAccount(1, H))
    return Snapshot(timestamp=0.0, node_name="n", pod_accounts=pods, gpu_accounts=gpus)


def test_energy_families():
    text = _render(energy_collector.COLLECTOR, _snap())
    assert f"gpulse_pod_gpu_energy_joules_total{SERIES} 1234.5" in text
    assert f"gpulse_pod_gpu_power_watts{SERIES} 80.25" in text
    assert f'gpulse_gpu_unattributed_energy_joules_total{{gpu="0",uuid="{G}"}} 10' in text
    assert f'gpulse_gpu_idle_power_watts{{gpu="0",uuid="{G}",estimate="fit"}} 70.5' in text
    assert 'pod="b"' not in text and H not in text and "NaN" not in text


def test_cost_families():
    text = _render(cost_collector.COLLECTOR, _snap())
    assert f"gpulse_pod_gpu_allocated_idle_seconds_total{SERIES} 12" in text
    assert f"gpulse_pod_gpu_cost_total{SERIES} 0.75" in text
    assert (f'gpulse_gpu_price_per_hour{{gpu="0",uuid="{G}",price_key="H100-SXM5-80GB",cloud="aws",'
            'pricing_kind="on-demand",currency="USD",region="us-east-1",source="https://example/prices",'
            'as_of="2026-11-09"} 6.88') in text
    assert H not in text and 'pod="b"' not in text and "NaN" not in text


def test_declared_families_are_the_catalogs():
    for c in (energy_collector.COLLECTOR, cost_collector.COLLECTOR):
        assert set(c.families) == {s.name for s in catalog.for_collector(c.name)}
    assert catalog.BY_NAME["gpulse_pod_gpu_energy_joules_total"].labels == catalog.POD
    assert "allocated fraction" in catalog.BY_NAME["gpulse_pod_gpu_cost_total"].help, \
        "the catalog says what drives cost"
