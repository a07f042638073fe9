import re
import subprocess

import pytest
from gpulse.sim import scenario
from gpulse.sim.traces import parse_trace

from tests.conftest import gpulse_cmd

BASE = """name: t
node: {name: n}
gpus:
  - model: H100-SXM5-80GB
"""


@pytest.mark.parametrize("name", scenario.builtin_names())
def test_builtin_scenarios_load(name):
    s = scenario.load(name)
    assert s.gpus and s.node.name
    pids = [p.pid for p in s.processes()]
    assert len(pids) == len(set(pids))


def test_reference_is_the_design_node():
    s = scenario.load("reference")
    assert len(s.gpus) == 8 and all(g.name == "NVIDIA H100 80GB HBM3" for g in s.gpus)
    assert [len(g.mig_instances) for g in s.gpus[:4]] == [7, 7, 7, 7]
    assert all(g.sharing == "time-slicing" and g.replicas == 9 for g in s.gpus[4:])
    assert len(s.pods) == 64
    assert sum(1 for p in s.pods if p.workload and p.workload.server == "vllm") >= 28
    loads = {round(c.processes[0].utilization.at(10), 3) for p in s.pods for c in p.containers}
    assert len(loads) > 30, "pods' loads must differ"


@pytest.mark.parametrize("body,needle", [
    (BASE + "    colour: green\n", ":5: gpus[0].colour: unknown key"),
    (BASE.replace("name: t", "name: 7"), ":1: name: expected a string, got 7"),
    (BASE + "    count: two\n", ":5: gpus[0].count: expected an integer"),
    (BASE + "    mig: {instances: [{profile: 3g.40gb, count: 2}, {profile: 1g.10gb, count: 2}]}\n",
     "impossible MIG layout: 8 compute slices requested"),
    (BASE + "    mig: {instances: [{profile: 5g.50gb}]}\n", "impossible MIG layout: H100-SXM5-80GB has no profile '5g.50gb'"),
    (BASE.replace("H100-SXM5-80GB", "T4") + "    mig: {instances: [{profile: 1g.10gb}]}\n", "T4 does not support MIG"),
    (BASE.replace("H100-SXM5-80GB", "Z9000"), "unknown GPU model 'Z9000'"),
    (BASE + "faults:\n  - {at: soon, kind: xid, gpu: 0, xid: 79}\n", "faults[0].at: invalid duration 'soon'"),
    (BASE + "pods:\n  - {namespace: a, name: b, containers: [{name: c, devices: [{gpu: 3}]}]}\n", "no GPU 3"),
    (BASE + "  - model: A10G\n    utilization: {wobble: 1}\n", "unknown trace kind 'wobble'"),
    ("name: [unclosed\n", ":2: invalid YAML"),
])
def test_invalid_scenarios_fail_with_file_line_and_key(tmp_path, body, needle):
    path = tmp_path / "s.yaml"
    path.write_text(body)
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.load(str(path))
    msg = str(err.value)
    assert msg.startswith(str(path)), msg
    assert needle in msg, msg
    assert "\n" not in msg


DRA = BASE + "    dra: {}\n"
SHARED_DRA = BASE + "    dra: {driver: gpu.example.com}\n    sharing: {mode: time-slicing}\n"


def _pod(name, device, ns="a"):
    return f"  - {{namespace: {ns}, name: {name}, containers: [{{name: c, devices: [{device}]}}]}}\n"


@pytest.mark.parametrize("body,needle", [
    (DRA + "pods:\n" + _pod("p", "{gpu: 0}"), "pods[0].containers[0].devices[0]: GPU 0 is handed out through DRA"),
    (DRA + "pods:\n" + _pod("p", "{gpu: 0, claim: x, replica: 0}"), "claims share it, not replicas"),
    (BASE + "pods:\n" + _pod("p", "{gpu: 0, claim: x}"), "GPU 0 is not handed out through DRA"),
    (DRA + "pods:\n" + _pod("p", "{gpu: 0, claim: x}") + _pod("q", "{gpu: 0, claim: y}"),
     "device already allocated to claim a/x"),
    (DRA + "  - model: H100-SXM5-80GB\n    dra: {}\npods:\n" + _pod("p", "{gpu: 0, claim: x}")
     + _pod("q", "{gpu: 1, claim: x}"), "claim a/x holds [(0, None)] elsewhere, here [(1, None)]"),
    (BASE + "    dra: {driver: ''}\n", "gpus[0].dra.driver: must not be empty"),
    (BASE + "    dra: {}\n    sharing: {mode: time-slicing, replicas: 2}\n", "shared through claims, not replicas"),
])
def test_invalid_dra_scenarios(tmp_path, body, needle):
    path = tmp_path / "s.yaml"
    path.write_text(body)
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.load(str(path))
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_dra_claims_shared_across_pods_and_extended_resources(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SHARED_DRA + "pods:\n" + _pod("p", "{gpu: 0, claim: x}") + _pod("q", "{gpu: 0, claim: x}")
                    + _pod("r", "{gpu: 0, claim: y}") + _pod("render", "{gpu: 0, resource: nvidia.com/gpu}", ns="b"))
    s = scenario.load(str(path))
    refs = [(p.name, c.devices[0].claim_namespace, c.devices[0].claim) for p in s.pods for c in p.containers]
    assert refs[:3] == [("p", "a", "x"), ("q", "a", "x"), ("r", "a", "y")]
    name, ns, claim = refs[3]
    assert ns == "b" and re.fullmatch(r"render-extended-resources-[bcdfghjklmnpqrstvwxz2456789]{5}", claim)
    assert s.gpus[0].dra_driver == "gpu.example.com"


def test_dra_builtin_mixes_every_kind_of_allocation():
    s = scenario.load("dra")
    refs = [(p, c, ref) for p in s.pods for c in p.containers for ref in c.devices]
    dra_gpus = {g.index for g in s.gpus if g.dra_driver == "gpu.nvidia.com"}
    assert dra_gpus == {0, 1, 2, 3, 4, 5}
    exclusive = [r for _, _, r in refs if r.claim and r.mig is None and s.gpus[r.gpu].sharing == "exclusive"]
    assert len(exclusive) >= 2
    shared = [p.name for p, _, r in refs if r.claim == "shared-h100"]
    assert len(shared) == 4 and s.gpus[2].sharing == "time-slicing"
    assert {r.mig for _, _, r in refs if r.claim and r.mig is not None} == {0, 1, 2, 3}
    assert any(r.resource == "nvidia.com/gpu" and "-extended-resources-" in r.claim for _, _, r in refs)
    assert any(len(p.containers) == 2 and all(c.devices[0].claim for c in p.containers) for p in s.pods)
    assert {r.gpu for _, _, r in refs if not r.claim} == {6, 7}


def test_cli_refuses_bad_scenario_with_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + "    colour: green\n")
    r = subprocess.run(gpulse_cmd("serve", "--nvml.backend=fake", f"--scenario={path}", "--web.listen-address=127.0.0.1:0"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == f"gpulse: {path}:5: gpus[0].colour: unknown key (allowed: {', '.join(scenario._GPU_KEYS)})"


@pytest.mark.parametrize("spec,t,value", [
    (0.5, 99, 0.5),
    ({"step": {"before": 1, "after": 5, "at": "10s"}}, 9.9, 1),
    ({"step": {"before": 1, "after": 5, "at": "10s"}}, 10, 5),
    ({"ramp": {"from": 0, "to": 10, "over": "10s"}}, 5, 5),
    ({"ramp": {"from": 0, "to": 10, "over": "10s"}}, 50, 10),
    ({"sine": {"mean": 1, "amplitude": 1, "period": "4s"}}, 1, 2),
])
def test_traces(spec, t, value):
    assert parse_trace(spec).at(t) == pytest.approx(value)


def test_replay_trace(tmp_path):
    (tmp_path / "q.csv").write_text("0,1\n10,7\n20,3\n")
    tr = parse_trace({"replay": "q.csv"}, str(tmp_path))
    assert [tr.at(t) for t in (0, 9, 10, 25)] == [1, 1, 7, 3]


def test_undecodable_scenario_and_replay_files_are_one_line_errors(tmp_path):
    from gpulse.sim.traces import TraceError
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(BASE.encode() + b"description: caf\xe9\n")
    with pytest.raises(scenario.ScenarioError) as err:
        scenario.load(str(bad))
    assert str(err.value) == f"{bad}:5: not UTF-8 text (byte {len(BASE) + 16})"
    (tmp_path / "q.csv").write_bytes(b"# depth\n0,1\n10,\xff\n")
    with pytest.raises(TraceError) as err:
        parse_trace({"replay": "q.csv"}, str(tmp_path))
    assert str(err.value) == f"replay: {tmp_path / 'q.csv'}:3: not UTF-8 text (byte 15)"
