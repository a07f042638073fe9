"""/proc/<pid>/cgroup -> pod UID and container id, and the per-PID cache."""

import os

import pytest
from gpulse.kube.cgroup import PidOwner, PidResolver, parse_cgroup, read_start_time
from gpulse.sim.proctree import remove_process, stat_line, write_process

UID = "6f1c2e3a-9b8d-4c7e-a1f2-0123456789ab"
UID_ = UID.replace("-", "_")
CID = "3f" * 32
STATIC_UID = "0e5d5b3c6f7a8b9c0d1e2f3a4b5c6d7e"

CASES = [
    # cgroup v2, systemd driver, containerd, burstable
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
     PidOwner(UID, CID)),
    # v2 systemd, guaranteed QoS (no QoS slice)
    (f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n", PidOwner(UID, CID)),
    # v2 systemd, CRI-O
    (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope\n",
     PidOwner(UID, CID)),
    # CRI-O's conmon sits in the pod but in no container
    (f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{CID}.scope\n",
     PidOwner(UID, "")),
    # v2 systemd, Docker (cri-dockerd)
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{CID}.scope\n",
     PidOwner(UID, CID)),
    # v2 cgroupfs driver, containerd
    (f"0::/kubepods/burstable/pod{UID}/{CID}\n", PidOwner(UID, CID)),
    # v2 cgroupfs, CRI-O
    (f"0::/kubepods/besteffort/pod{UID}/crio-{CID}\n", PidOwner(UID, CID)),
    # seen through a private cgroup namespace
    (f"0::/../../kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n", PidOwner(UID, CID)),
    # kind / nested kubelet under kubelet.slice
    (f"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n", PidOwner(UID, CID)),
    # cgroup v1, cgroupfs driver, Docker: several hierarchies, some unrelated
    (f"12:blkio:/\n11:memory:/kubepods/burstable/pod{UID}/{CID}\n10:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n"
     f"1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n", PidOwner(UID, CID)),
    # cgroup v1, systemd driver
    (f"9:pids:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{CID}.scope\n"
     f"0::/\n", PidOwner(UID, CID)),
    # static pod: UID is the 32-hex config hash
    (f"0::/kubepods/burstable/pod{STATIC_UID}/{CID}\n", PidOwner(STATIC_UID, CID)),
    # the pod cgroup itself (e.g. a process moved there)
    (f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice\n", PidOwner(UID, "")),
]

NON_POD = [
    "0::/system.slice/nvidia-persistenced.service\n",
    "0::/user.slice/user-1000.slice/session-3.scope\n",
    "12:memory:/\n11:cpu:/user.slice\n1:name=systemd:/init.scope\n",
    "0::/\n",
    "",
    "0::/kubepods.slice/kubepods-burstable.slice\n",  # QoS parent, no pod
    "0::/system.slice/podman-1234.scope\n",  # 'pod' inside a word, no UID
    f"0::/kubepods/burstable/podnot-a-uid/{CID}\n",
]


@pytest.mark.parametrize("text,expected", CASES)
def test_pod_forms(text, expected):
    assert parse_cgroup(text) == expected


@pytest.mark.parametrize("text", NON_POD)
def test_non_pod_processes(text):
    assert parse_cgroup(text) is None


def _pod_cgroup(uid, cid=CID):
    return f"0::/kubepods/burstable/pod{uid}/{cid}\n"


def test_start_time_from_stat_with_odd_comm(tmp_path):
    write_process(str(tmp_path), 77, "0::/\n", 123456, comm="we ird) (name")
    assert read_start_time(str(tmp_path), 77) == 123456
    assert read_start_time(str(tmp_path), 78) is None
    assert stat_line(1, "x", 5).split()[21] == "5"  # field 22, 1-based


def test_resolver_caches_and_evicts(tmp_path):
    root = str(tmp_path)
    write_process(root, 100, _pod_cgroup(UID), 1000)
    write_process(root, 200, "0::/system.slice/x.service\n", 2000)
    r = PidResolver(root, revalidate_seconds=60)
    assert r.resolve(100) == PidOwner(UID, CID)
    assert r.resolve(200) is None
    assert r.resolve(100) == PidOwner(UID, CID)
    assert r.reads == 2  # cached
    r.retain({100})
    assert len(r) == 1
    assert r.resolve(300) is None  # no such PID
    assert len(r) == 1


def test_pid_reused_by_another_pod_is_remapped(tmp_path):
    root = str(tmp_path)
    other = "11111111-2222-4333-8444-555555555555"
    clock = [0.0]
    r = PidResolver(root, revalidate_seconds=5, clock=lambda: clock[0])
    write_process(root, 100, _pod_cgroup(UID), 1000)
    assert r.resolve(100).pod_uid == UID
    # The process exits and the PID is reused at once by another pod's process.
    remove_process(root, 100)
    write_process(root, 100, _pod_cgroup(other, "ab" * 32), 1500)
    clock[0] = 1.0
    assert r.resolve(100).pod_uid == UID  # within the revalidation period: cached
    clock[0] = 6.0
    assert r.resolve(100) == PidOwner(other, "ab" * 32)  # start time changed: re-read
    # The same process keeps its mapping without re-reading its cgroup.
    reads = r.reads
    clock[0] = 12.0
    assert r.resolve(100).pod_uid == other
    assert r.reads == reads


def test_pid_that_went_and_came_back_is_reread(tmp_path):
    root = str(tmp_path)
    other = "11111111-2222-4333-8444-555555555555"
    r = PidResolver(root, revalidate_seconds=3600)
    write_process(root, 100, _pod_cgroup(UID), 1000)
    assert r.resolve(100).pod_uid == UID
    r.retain(set())  # NVML no longer lists it: evicted
    write_process(root, 100, _pod_cgroup(other), 1500)
    assert r.resolve(100).pod_uid == other


def test_unreadable_cgroup_is_not_cached(tmp_path):
    root = str(tmp_path)
    r = PidResolver(root)
    assert r.resolve(55) is None
    write_process(root, 55, _pod_cgroup(UID), 1)
    assert r.resolve(55).pod_uid == UID
    assert os.path.exists(os.path.join(root, "55", "cgroup"))
