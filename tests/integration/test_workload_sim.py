"""Queue depth end to end on simulated nodes: fake API server -> discovery -> HTTP scrape of
each server's own format -> adapters -> WorkloadSource.current() -> collector -> exposition.
"""

import dataclasses

import pytest
from gpulse import config as config_mod
from gpulse.collectors import workloads as collector
from gpulse.kernels import ExpositionEncoder
from gpulse.sim import scenario as scenario_mod
from gpulse.sim.apiserver import start_fake_apiserver
from gpulse.sim.inference import expected_model, expected_values, start_inference_servers
from gpulse.sim.proctree import build_proc_tree
from gpulse.snapshot import Snapshot
from gpulse.workloads import exposition
from gpulse.workloads.source import WorkloadSource

from tests.conftest import wait_for


class Clock:
    def __init__(self, t=10.0):
        self.t = t

    def __call__(self):
        return self.t


class Node:
    """One simulated node's queue-depth world plus a WorkloadSource reading it."""

    def __init__(self, scen, tmp_path):
        self.scenario = scen
        self.clock = Clock()
        push_socket, proc_root = str(tmp_path / "push.sock"), str(tmp_path / "proc")
        build_proc_tree(scen, proc_root)  # pushers are attested through it
        self.inference = start_inference_servers(scen, self.clock, push_socket=push_socket, push_interval=0.1,
                                                 proc_root=proc_root)
        self.api = start_fake_apiserver(scen, self.inference.endpoints)
        self.config = config_mod.Config(kube_apiserver=self.api.url, node_name=scen.node.name,
                                        workloads_scrape_interval=0.2, workloads_push_socket=push_socket,
                                        path_procfs=proc_root)
        self.source = WorkloadSource(self.config)
        self.source.start()

    def stop(self):
        self.source.stop()
        self.api.stop()
        self.inference.stop()

    def expected(self, t):
        return {(p.namespace, p.name): (p.workload.server, expected_model(p.workload), expected_values(p.workload, t))
                for p in self.scenario.pods if p.workload is not None}

    def observed(self):
        states = self.source.current()
        return {(s.namespace, s.pod): (s.server, s.model,
                                       {k: getattr(s, k) for k in ("queue_depth", "running_requests", "kv_cache_usage")
                                        if getattr(s, k) is not None})
                for s in states if s.scrape_up}

    def follows(self, t):
        self.clock.t = t
        want = self.expected(t)
        return wait_for(lambda: self.observed() == want), (self.observed(), want)


@pytest.fixture
def node(request, tmp_path):
    n = Node(request.param if not isinstance(request.param, str) else scenario_mod.load(request.param), tmp_path)
    yield n
    n.stop()


def render(states):
    snap = Snapshot(timestamp=0.0, node_name="n", workloads=states)
    body = ExpositionEncoder().render(collector.collect(snap))
    samples, types = exposition.parse(body)
    return samples, types


@pytest.mark.parametrize("node", ["reference"], indirect=True)
def test_reference_node_queue_depth_follows_the_trace(node):
    vllm_pods = [p for p in node.scenario.pods if p.workload is not None]
    assert vllm_pods and {p.workload.server for p in vllm_pods} == {"vllm"}
    for t in (10.0, 40.0, 75.0):  # the sines move between these points
        ok, (got, want) = node.follows(t)
        assert ok, f"t={t}: observed {len(got)} pods, differing: " \
                   f"{[k for k in want if got.get(k) != want[k]][:5]}"
    states, status = node.source.current(), node.source.status()
    assert status.up and status.error == ""
    samples, types = render(states)
    queue = {dict(l)["pod"]: v for name, l, v, _ in samples if name == "gpulse_workload_queue_depth"}
    assert queue == {p.name: expected_values(p.workload, 75.0)["queue_depth"] for p in vllm_pods}
    assert types["gpulse_workload_queue_depth"] == "gauge"



@pytest.mark.parametrize("node", ["g5-timeslice"], indirect=True)
def test_mixed_servers_in_one_vocabulary(node):
    ok, (got, want) = node.follows(20.0)
    assert ok, [k for k in want if got.get(k) != want[k]]
    states = node.source.current()
    assert {s.server for s in states} == {"tgi", "triton", "vllm", "trtllm"}
    samples, _types = render(states)
    by_server = {}
    for name, labels, _v, _ts in samples:
        by_server.setdefault(dict(labels)["server"], set()).add(name)
    for server, names in by_server.items():
        assert {"gpulse_workload_queue_depth", "gpulse_workload_scrape_up",
                "gpulse_workload_scrape_duration_seconds"} <= names, server
    # each server's own extras, where it has them, under the same names
    assert "gpulse_workload_kv_cache_usage_ratio" in by_server["vllm"] & by_server["trtllm"]
    assert "gpulse_workload_running_requests" in by_server["tgi"] & by_server["vllm"] & by_server["trtllm"]
    assert "gpulse_workload_kv_cache_usage_ratio" not in by_server["tgi"] | by_server["triton"]
    models = {dict(l)["model"] for name, l, _v, _ in samples if name == "gpulse_workload_queue_depth"
              and dict(l)["server"] == "trtllm"}
    assert models == {"llama3-8b-trtllm"}


def _with_pushing_pod(scen):
    pods = list(scen.pods)
    i = next(i for i, p in enumerate(pods) if p.workload is not None and p.workload.server == "tgi")
    pods[i] = dataclasses.replace(pods[i], workload=dataclasses.replace(pods[i].workload, server="tgi", push=True))
    return dataclasses.replace(scen, pods=tuple(pods)), pods[i]


PUSH_SCENARIO, PUSH_POD = _with_pushing_pod(scenario_mod.load("g5-timeslice"))


@pytest.mark.parametrize("node", [PUSH_SCENARIO], indirect=True)
def test_pushed_pod_reports_through_the_socket(node):
    assert (PUSH_POD.namespace, PUSH_POD.name) not in node.inference.endpoints
    # a pushed workload carries queue depth and running requests, no KV cache
    node.clock.t = 30.0
    want = expected_values(PUSH_POD.workload, 30.0)
    want.pop("kv_cache_usage", None)
    assert wait_for(lambda: node.observed().get((PUSH_POD.namespace, PUSH_POD.name)) ==
                    ("tgi", PUSH_POD.workload.model, want))


@pytest.mark.parametrize("node", ["g5-timeslice"], indirect=True)
def test_pod_changes_reach_the_scraper(node):
    assert node.follows(5.0)[0]
    node.api.delete_pod("inference", "tgi-00")
    assert wait_for(lambda: ("inference", "tgi-00") not in node.observed())
    # a broken opt-in on a running pod: skipped, the rest unaffected
    node.api.update_pod("inference", "vllm-02",
                        lambda o: o["metadata"]["annotations"].update({"gpulse.dev/port": "not-a-port"}))
    assert wait_for(lambda: ("inference", "vllm-02") not in node.observed())
    node.api.expire()  # watch history lost: re-list, state unchanged
    assert wait_for(lambda: len(node.observed()) == len(node.expected(5.0)) - 2)
    # an endpoint that starts failing shows scrape_up 0 and no values
    node.inference.set_fault(("inference", "triton-01"), "error")
    assert wait_for(lambda: any(s.pod == "triton-01" and not s.scrape_up and s.queue_depth is None
                                for s in node.source.current()))
