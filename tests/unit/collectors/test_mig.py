"""The mig collector renders what the snapshot holds, fresh every tick."""

from types import MappingProxyType

from gpulse.collectors import mig as mig_collector
from gpulse.snapshot import MigState

from tests.unit.collectors.test_pods import G, _render, _snap


def test_mig_families():
    m = MigState(0, G, 3, 0, "1g.10gb", "MIG-x", MappingProxyType({"gpulse_mig_utilization_ratio": 0.4,
                                                                   "gpulse_mig_memory_total_bytes": 10.0}))
    text = _render(mig_collector, _snap([], migs=(m,)))
    labels = f'gpu="0",uuid="{G}",gpu_instance="3",compute_instance="0",mig_profile="1g.10gb",mig_uuid="MIG-x"'
    assert f"gpulse_mig_utilization_ratio{{{labels}}} 0.4" in text
    assert f"gpulse_mig_memory_total_bytes{{{labels}}} 10" in text
    assert "gpulse_mig_memory_used_bytes" not in text  # unknown: omitted
