"""A generated /proc tree: <root>/<pid>/cgroup and <root>/<pid>/stat per scenario process.

The cgroup paths take the form the scenario's cgroup version, kubelet driver and
container runtime would produce, so the agent's real parser maps PIDs to pods; host
processes get a systemd service cgroup. stat carries a start time (field 22) so PID
reuse can be simulated by rewriting one PID with a new start time.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scenario import CgroupSpec, Scenario

_V1_CONTROLLERS = ("12:memory", "11:cpu,cpuacct", "10:devices", "9:pids", "1:name=systemd")


def container_leaf(runtime: str, driver: str, container_id: str) -> str:
    if driver == "systemd":
        prefix = {"containerd": "cri-containerd", "crio": "crio", "docker": "docker"}[runtime]
        return f"{prefix}-{container_id}.scope"
    return f"crio-{container_id}" if runtime == "crio" else container_id


def pod_cgroup_path(cgroup: CgroupSpec, qos: str, pod_uid: str, container_id: str) -> str:
    """The kubelet's cgroup path of one container (without the v1/v2 line prefix)."""
    leaf = container_leaf(cgroup.runtime, cgroup.driver, container_id)
    if cgroup.driver == "systemd":
        uid = pod_uid.replace("-", "_")
        if qos == "guaranteed":
            return f"/kubepods.slice/kubepods-pod{uid}.slice/{leaf}"
        return f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice/{leaf}"
    if qos == "guaranteed":
        return f"/kubepods/pod{pod_uid}/{leaf}"
    return f"/kubepods/{qos}/pod{pod_uid}/{leaf}"


def cgroup_file(version: int, path: str) -> str:
    if version == 2:
        return f"0::{path}\n"
    return "".join(f"{c}:{path}\n" for c in _V1_CONTROLLERS)


HOST_CGROUP = "/system.slice/gpu-burn.service"


def stat_line(pid: int, comm: str, start_time: int) -> str:
    # Fields 3..52 of /proc/<pid>/stat; field 22 (index 19 after comm) is the start time.
    rest = ["S", "1", str(pid), str(pid)] + ["0"] * 15 + [str(start_time)] + ["0"] * 30
    return f"{pid} ({comm}) {' '.join(rest)}\n"


def write_process(root: str, pid: int, cgroup_text: str, start_time: int, comm: str = "python3") -> None:
    d = os.path.join(root, str(pid))
    os.makedirs(d, exist_ok=True)
    for name, text in (("cgroup", cgroup_text), ("stat", stat_line(pid, comm, start_time))):
        tmp = os.path.join(d, f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.path.join(d, name))


def remove_process(root: str, pid: int) -> None:
    d = os.path.join(root, str(pid))
    for name in ("cgroup", "stat"):
        try:
            os.unlink(os.path.join(d, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(d)
    except OSError:
        pass


def build_proc_tree(scenario: Scenario, root: str) -> None:
    """Write cgroup and stat files for every process of `scenario` under `root`."""
    os.makedirs(root, exist_ok=True)
    cg = scenario.cgroup
    for pod in scenario.pods:
        for c in pod.containers:
            path = pod_cgroup_path(cg, pod.qos, pod.uid, c.container_id)
            for proc in c.processes:
                write_process(root, proc.pid, cgroup_file(cg.version, path), 10_000 + proc.pid)
    for proc in scenario.host_processes:
        write_process(root, proc.pid, cgroup_file(cg.version, HOST_CGROUP), 10_000 + proc.pid, "gpu-burn")
