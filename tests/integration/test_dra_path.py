"""DRA and container identity through the whole agent on simulated nodes: the fake kubelet's
dynamic_resources, the fake API server's ResourceSlices and pod container IDs, generated
/proc cgroups and the fake NVML, read by the agent's own clients (tests/harness.py), and
`gpulse serve --scenario=dra` as users run it. Nothing here is built by hand: expectations
come from the scenario files."""

from __future__ import annotations

import re
import urllib.request

import pytest
from gpulse.sim import dra
from gpulse.sim import scenario as scen

from tests.conftest import ROOT, serve_process, wait_for
from tests.harness import Run

TWO_CONTAINERS = f"{ROOT}/tests/fixtures/scenarios/two-containers.yaml"
SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$", re.M)


def samples(text: str, name: str) -> list[tuple[dict, float]]:
    return [(dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(v))
            for n, labels, v in SAMPLE.findall(text) if n == name]


def by_container(text: str, name: str) -> dict:
    return {(d["namespace"], d["pod"], d["container"], d["gpu"]): (d, v) for d, v in samples(text, name)}


def window_mean(procs, now: float, window: float) -> float:
    """Mean load of `procs` over the window's ticks as the fake driver reports it (each tick:
    the process's mean over the second before it)."""
    ticks = [now - i for i in range(int(window))]
    return sum(sum(p.utilization.at(t - 1 + k / 20) for k in range(1, 21)) / 20
               for p in procs for t in ticks) / window


def holders(spec):
    """(namespace, pod, container, gpu) -> (container spec, device ref) for every device held."""
    return {(p.namespace, p.name, c.name, str(ref.gpu)): (c, ref) for p in spec.pods for c in p.containers
            for ref in c.devices}


def check_conservation(text: str, spec) -> None:
    util = by_container(text, "gpulse_pod_gpu_utilization_ratio")
    gpu_util = {d["gpu"]: v for d, v in samples(text, "gpulse_gpu_utilization_ratio")}
    unattributed = {d["gpu"]: v for d, v in samples(text, "gpulse_gpu_unattributed_utilization_ratio")}
    per_gpu: dict[str, list[str]] = {}
    for key in holders(spec):
        per_gpu.setdefault(key[3], []).append(key)
    for gpu, keys in per_gpu.items():
        if len(keys) > 1 and not spec.gpus[int(gpu)].mig_enabled:  # a shared device
            total = sum(util[k][1] for k in keys)
            assert total + unattributed[gpu] == pytest.approx(gpu_util[gpu], abs=0.02), f"GPU {gpu}"


def test_dra_node_end_to_end():
    spec = scen.load("dra")
    with Run("dra") as run:
        text = run.tick(12).text.decode()
        window = run.agent.config.collect_window
        now = run.clock.t
    expected = holders(spec)
    util = by_container(text, "gpulse_pod_gpu_utilization_ratio")
    memory = by_container(text, "gpulse_pod_gpu_memory_used_bytes")
    assert set(util) == set(expected) and set(memory) == set(expected)  # every holder, nothing else
    for key, (c, ref) in expected.items():
        labels, value = util[key]
        assert labels["allocation"] == ("dra" if ref.claim else "device-plugin")
        assert memory[key][1] == pytest.approx(sum(p.memory_mib for p in c.processes) * 1024 * 1024)
        gpu = spec.gpus[ref.gpu]
        if ref.mig is not None:  # MIG through DRA carries its profile
            assert (labels["sharing"], labels["mig_profile"]) == ("mig", gpu.mig_instances[ref.mig].profile)
            assert labels["mig_uuid"] == gpu.mig_instances[ref.mig].uuid
        elif sum(1 for k in expected if k[3] == key[3]) > 1:  # shared: each container by its own processes
            assert labels["sharing"] == "time-slicing"
            assert value == pytest.approx(window_mean(c.processes, now, window), abs=0.02), key
        else:
            assert labels["sharing"] == "exclusive"
    check_conservation(text, spec)
    # the four pods of one claim: a quarter each; the two containers of one claim: a half each
    allocated = by_container(text, "gpulse_pod_gpu_allocated")
    assert {v for k, (_, v) in allocated.items() if k[3] == "2"} == {0.25}
    assert {v for k, (_, v) in allocated.items() if k[3] == "5"} == {0.5}
    # a claim for every DRA holder, naming the device the driver published and its GPU
    claims = {(d["namespace"], d["pod"], d["container"]): d for d, v in samples(text, "gpulse_pod_gpu_claim_info")}
    dra_holders = {k[:3]: ref for k, (_, ref) in expected.items() if ref.claim}
    assert set(claims) == set(dra_holders)
    for key, ref in dra_holders.items():
        gpu = spec.gpus[ref.gpu]
        assert claims[key] == {"namespace": key[0], "pod": key[1], "container": key[2],
                               "claim_namespace": ref.claim_namespace, "claim": ref.claim, "driver": "gpu.nvidia.com",
                               "pool": spec.node.name, "device": dra.device_name(gpu, ref.mig), "uuid": gpu.uuid}
    ext = claims[("batch", "legacy-render-0", "render")]
    assert ext["claim"].startswith("legacy-render-0-extended-resources-")
    assert not samples(text, "gpulse_attribution_unresolved_allocations")
    assert 'reason="ambiguous_container"' not in text
    assert re.search(r'^gpulse_source_up\{source="resourceslices"\} 1$', text, re.M)


def test_two_container_pod_split_by_container_ids_from_the_api():
    """Device plugin, two replicas of one GPU in one pod: the containers' IDs come from the
    fake API server's pod status, their processes' cgroups from /proc."""
    spec = scen.load(TWO_CONTAINERS)
    with Run(TWO_CONTAINERS) as run:
        text = run.tick(12).text.decode()
        window, now = run.agent.config.collect_window, run.clock.t
    util = by_container(text, "gpulse_pod_gpu_utilization_ratio")
    pod = spec.pods[0]
    for c in pod.containers:
        assert util[("ml", pod.name, c.name, "0")][1] == pytest.approx(window_mean(c.processes, now, window), abs=0.02)
    assert util[("ml", pod.name, "prep", "0")][1] > util[("ml", pod.name, "infer", "0")][1] + 0.05
    assert "ambiguous_container" not in text
    check_conservation(text, spec)


def test_slices_that_go_away_leave_allocations_unresolved_until_they_return():
    with Run("dra") as run:
        run.tick(2)
        api, watcher = run.world.apiserver, run.sampler.inputs.sources["resourceslices"]
        (obj,) = api.objects("resourceslices")
        version = watcher.index.version
        api.delete_slice(obj["metadata"]["name"])
        assert wait_for(lambda: watcher.index.version > version)
        text = run.tick().text.decode()
        assert {d["allocation"] for d, _ in samples(text, "gpulse_pod_gpu_allocated")} == {"device-plugin"}
        assert not samples(text, "gpulse_pod_gpu_claim_info")
        # the driver has no slices on this node any more: its claims are not node-local GPUs
        assert not samples(text, "gpulse_attribution_unresolved_allocations")
        # the slice is back but names another GPU for gpu-0: a uuid NVML does not know
        gone = "GPU-99999999-9999-4999-8999-999999999999"
        obj["spec"]["devices"][0]["attributes"]["uuid"]["string"] = gone
        version = watcher.index.version
        api.add_slice(obj)
        assert wait_for(lambda: watcher.index.version > version)
        text = run.tick().text.decode()
        assert samples(text, "gpulse_attribution_unresolved_allocations") == [
            ({"allocation": "dra", "driver": "gpu.nvidia.com", "reason": "unknown_device"}, 1.0)]
        assert len(samples(text, "gpulse_pod_gpu_claim_info")) == 13 - 1


def test_without_the_slice_watch_dra_allocations_are_counted_not_guessed():
    with Run("dra", kube_resource_slices=False) as run:
        text = run.tick(2).text.decode()
    assert "resourceslices" not in text
    assert {d["allocation"] for d, _ in samples(text, "gpulse_pod_gpu_allocated")} == {"device-plugin"}
    assert samples(text, "gpulse_attribution_unresolved_allocations") == [
        ({"allocation": "dra", "driver": "gpu.nvidia.com", "reason": "slice_not_seen"}, 13.0)]


@pytest.fixture(scope="module")
def served_dra():
    with serve_process("--scenario=dra", settle=4.0) as (proc, base):  # a few ticks at 1 s: windows, slices and attribution fill in
        yield base


def test_gpulse_serve_scenario_dra(served_dra):
    spec = scen.load("dra")
    with urllib.request.urlopen(served_dra + "/metrics", timeout=10) as r:
        text = r.read().decode()
    expected = holders(spec)
    assert set(by_container(text, "gpulse_pod_gpu_utilization_ratio")) == set(expected)
    assert set(by_container(text, "gpulse_pod_gpu_memory_used_bytes")) == set(expected)
    check_conservation(text, spec)
    mig = [d for d, _ in samples(text, "gpulse_pod_gpu_utilization_ratio") if d.get("mig_profile")]
    assert sorted(d["mig_profile"] for d in mig) == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
    assert {d["allocation"] for d in mig} == {"dra"}
    assert len(samples(text, "gpulse_pod_gpu_claim_info")) == sum(1 for _, ref in expected.values() if ref.claim)
