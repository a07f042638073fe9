"""The collector registry: families from the catalog, each rendered by exactly one collector."""

import pytest
from gpulse import catalog
from gpulse.collectors import REGISTRY, FunctionCollector, Registry, RegistryError
from gpulse.config import Config

from tests.conftest import load_flags


def fc(name, *families):
    return FunctionCollector(name, families, lambda snapshot: ())


def test_every_catalog_family_is_declared_by_exactly_one_collector():
    declared = [f for c in REGISTRY for f in c.families]
    assert len(declared) == len(set(declared))
    assert set(declared) == set(catalog.BY_NAME)
    for fam in declared:
        assert REGISTRY.owner(fam) == catalog.BY_NAME[fam].collector


@pytest.mark.parametrize("collector,message", [
    (fc("gpu", "gpulse_gpu_bogus"), "not in the catalog"),
    (fc("gpu", "gpulse_pod_gpu_allocated"), "gives 'gpulse_pod_gpu_allocated' to collector 'pods'"),
    (fc("nvlink", "gpulse_gpu_up"), "not in the catalog's collector list"),
])
def test_refused_at_registration(collector, message):
    with pytest.raises(RegistryError, match=message):
        Registry().register(collector)


def test_no_two_collectors_share_a_name_so_none_share_a_family():
    """The catalog gives each family one collector name, so a second collector of that
    name is the only way to render a family twice; it is refused."""
    r = Registry()
    r.register(fc("gpu", "gpulse_gpu_up"))
    with pytest.raises(RegistryError, match="registered twice"):
        r.register(fc("gpu", "gpulse_gpu_up"))


def test_switches_turn_collectors_on_and_off():
    names = {c.name for c in REGISTRY.enabled(Config())}
    assert names == {"gpu", "mig", "pods", "workloads", "startup", "identity", "energy", "cost"}
    cfg = load_flags(["--no-collector.mig", "--collector.dcgm_compat", "--no-collector.cost"])
    assert {c.name for c in REGISTRY.enabled(cfg)} == {"gpu", "pods", "workloads", "startup", "identity", "dcgm_compat",
                                                        "energy"}
    cfg = load_flags([], environ={"GPULSE_COLLECTOR_PODS": "false"})
    assert "pods" not in {c.name for c in REGISTRY.enabled(cfg)}
    assert "self" not in {c.name for c in REGISTRY.enabled(cfg)}, "self runs last, always"
