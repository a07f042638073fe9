"""The real attribution path on every built-in scenario: scenario -> fake NVML -> NVML
reader, fake kubelet (gRPC) -> PodResources client, generated /proc -> cgroup parser ->
Attributor -> pods collector. Time is a manual clock, so runs are deterministic."""

import dataclasses
import shutil
import tempfile

import pytest
from gpulse import config as cfgmod
from gpulse.attribution import Attributor
from gpulse.collectors import pods as pods_collector
from gpulse.kube.resourceslices import SliceIndex, parse_slice
from gpulse.kube.source import PodSource
from gpulse.nvml.reader import NvmlReader
from gpulse.sim import dra
from gpulse.sim import scenario as scen
from gpulse.sim.kubelet import start_fake_kubelet
from gpulse.sim.nvml import FakeNvml
from gpulse.sim.proctree import build_proc_tree, cgroup_file, pod_cgroup_path, write_process
from gpulse.snapshot import GpuState, Snapshot, SourceStatus
from gpulse.windowing import DeviceWindows, unit_utilization

WINDOW = 10.0


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Node:
    """The outside world of one scenario and the agent pieces that read it."""

    def __init__(self, name, with_directory=True):
        self.scenario = scen.load(name)
        self.dir = tempfile.mkdtemp(prefix="ga", dir="/tmp")
        self.clock = Clock()
        build_proc_tree(self.scenario, f"{self.dir}/proc")
        self.kubelet = start_fake_kubelet(self.scenario, f"{self.dir}/kubelet.sock")
        cfg = dataclasses.replace(cfgmod.load(None, environ={}), path_procfs=f"{self.dir}/proc",
                                  kubelet_pod_resources_socket=f"{self.dir}/kubelet.sock", kubelet_refresh_interval=5.0)
        self.uids = {p.uid: (p.namespace, p.name, {c.container_id: c.name for c in p.containers})
                     for p in self.scenario.pods}
        # Stand in for the Kubernetes API's node pod list and ResourceSlices (agent/kube/apiserver.py,
        # agent/kube/resourceslices.py): the same objects the fake API server serves, parsed by the agent.
        self.slices = SliceIndex()
        self.slices.replace(parse_slice(o) for o in dra.resource_slices(self.scenario))
        self.pods = PodSource(cfg, pod_directory=self.uids.get if with_directory else None, clock=self.clock,
                              slices=self.slices)
        self.reader = NvmlReader(FakeNvml(self.scenario, clock=self.clock), clock=self.clock)
        self.reader.start()
        self.attributor = Attributor(WINDOW)
        self.windows = DeviceWindows(WINDOW)  # what the sampler does for the device families
        self.mig_activity = None
        assert self.pods.refresh()

    def tick(self, seconds=1.0):
        self.clock.t += seconds
        now = self.clock.t
        reading = self.reader.read(now)
        self.gpus, self.migs = self.windows.apply(reading, now, self.mig_activity)
        self.reading = reading
        return self.attributor.update(reading, self.pods.current(), now, unit_utilization(self.gpus, self.migs))

    def gpu_mean(self, index):
        return self.gpus[index].values.get("gpulse_gpu_utilization_ratio")

    def close(self):
        self.kubelet.stop()
        self.pods.stop()
        self.reader.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def node_factory():
    made = []

    def make(name, **kw):
        made.append(Node(name, **kw))
        return made[-1]
    yield make
    for n in made:
        n.close()


def _window_mean(procs, now):
    """Mean load of `procs` over the window's ticks, as the fake driver reports it
    (each tick: the process's mean over the second before it)."""
    ticks = [now - i for i in range(int(WINDOW))]
    return sum(sum(p.utilization.at(t - 1 + k / 20) for k in range(1, 21)) / 20
               for p in procs for t in ticks) / WINDOW


def _expected_pods(scenario):
    return {(p.namespace, p.name) for p in scenario.pods if any(c.devices for c in p.containers)}


@pytest.mark.parametrize("name", scen.builtin_names())
def test_every_scenario_conserves_and_attributes(node_factory, name):
    node = node_factory(name)
    for _ in range(15):
        shares, unattributed = node.tick()
    assert {(s.namespace, s.pod) for s in shares} == _expected_pods(node.scenario)
    shared_gpus = {g.index for g in node.scenario.gpus if g.sharing != "exclusive"}
    assert set(unattributed) == shared_gpus
    for gpu in shared_gpus:
        on_gpu = [s for s in shares if s.gpu == gpu]
        assert all(s.utilization is not None for s in on_gpu)
        assert sum(s.allocated for s in on_gpu) <= 1.0 + 1e-9
        assert sum(s.utilization for s in on_gpu) + unattributed[gpu] == pytest.approx(node.gpu_mean(gpu), abs=1e-9)
    for s in shares:
        spec = node.scenario.gpus[s.gpu]
        if s.sharing == "exclusive":
            assert s.utilization == pytest.approx(node.gpu_mean(s.gpu))
        if s.sharing == "mig":
            assert s.mig_uuid and s.gpu_instance
            # GPM on Hopper gives each instance its own activity; A100 has none without dcgm-exporter.
            assert (s.utilization is not None) == spec.gpm
        assert s.memory_used_bytes > 0


@pytest.mark.parametrize("name", [n for n in scen.builtin_names()
                                  if any(g.sharing != "exclusive" for g in scen.load(n).gpus)])
def test_shares_follow_each_process_load(node_factory, name):
    node = node_factory(name)
    for _ in range(12):
        shares, _ = node.tick()
    now = node.clock.t
    by_container = {(s.namespace, s.pod, s.container): s for s in shares}
    for pod in node.scenario.pods:
        for c in pod.containers:
            gpu = node.scenario.gpus[c.processes[0].gpu]
            if gpu.sharing == "exclusive":
                continue
            expected = _window_mean(c.processes, now)
            assert by_container[(pod.namespace, pod.name, c.name)].utilization == pytest.approx(expected, abs=0.02)
    values_per_gpu = {}
    for s in shares:
        values_per_gpu.setdefault(s.gpu, []).append(s.utilization)
    for gpu, values in values_per_gpu.items():
        if node.scenario.gpus[gpu].sharing != "exclusive":
            assert len(set(round(v, 6) for v in values)) == len(values)  # loads differ, so do the shares


def test_reference_scrape_shows_all_64_pods(node_factory):
    node = node_factory("reference")
    for _ in range(5):
        shares, unattributed = node.tick()
    gpus = tuple(GpuState(d.index, d.uuid, d.name) for d in node.reading.devices)
    snap = Snapshot(timestamp=0.0, node_name="n", gpus=gpus, pods=shares, unattributed=unattributed,
                    sources={"kubelet": SourceStatus(True, 0.0)})
    fams = {f.name: f for f in pods_collector.collect(snap)}
    util = fams["gpulse_pod_gpu_utilization_ratio"].samples
    assert len({labels[1] for labels, _ in util}) == 64
    mig = [labels for labels, _ in util if labels[5] == "mig"]
    assert len(mig) == 28 and all(labels[9].startswith("MIG-") for labels in mig)
    assert len(fams["gpulse_gpu_unattributed_utilization_ratio"].samples) == 4
    # the host process on GPU 4 is nobody's: GPU 4 has more unattributed than its siblings
    assert unattributed[4] > max(unattributed[g] for g in (5, 6, 7))


def test_elimination_without_the_api_on_exclusive_gpus(node_factory):
    node = node_factory("t4-legacy", with_directory=False)  # cgroup v1, cgroupfs, Docker
    node.tick()
    assert set(node.attributor.uid_pairs.values()) == _expected_pods(node.scenario)


def test_churn_pod_leaves_and_pid_is_reused(node_factory):
    node = node_factory("g5-timeslice")
    for _ in range(3):
        shares, _ = node.tick()
    pods = node.scenario.pods
    leaving, staying = pods[0], pods[1]  # both on GPU 0
    assert {s.pod for s in shares} >= {leaving.name, staying.name}
    # The pod leaves: the kubelet no longer lists it; its series go at the next tick.
    node.kubelet.set_pods(pods[1:])
    assert node.pods.refresh()
    shares, _ = node.tick()
    assert leaving.name not in {s.pod for s in shares}
    # Its PID is reused at once by a process of the staying pod (new start time).
    pid = leaving.containers[0].processes[0].pid
    c = staying.containers[0]
    write_process(f"{node.dir}/proc", pid,
                  cgroup_file(2, pod_cgroup_path(node.scenario.cgroup, staying.qos, staying.uid, c.container_id)), 99_999)
    node.clock.t += node.pods.interval  # past the revalidation period
    assert node.pods.current().resolve_pid(pid).pod_uid == staying.uid
    for _ in range(int(WINDOW)):
        shares, _ = node.tick()
    got = {s.pod: s.utilization for s in shares}[staying.name]
    alone = _window_mean(c.processes, node.clock.t)
    both = _window_mean(c.processes + leaving.containers[0].processes, node.clock.t)
    # the reused PID's load now counts for the staying pod
    assert got == pytest.approx(both, abs=0.02) and both - alone > 0.04
