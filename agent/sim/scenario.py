"""Scenario files: one simulated node described as data.

A scenario names GPU models from hardware.yaml, the node's cloud hints, pods with their
containers, device assignments and processes, inference workloads and their queue
traces, and faults at given times. `load(name_or_path)` validates strictly: an unknown
key, a wrong type or an impossible MIG layout raises ScenarioError with one line naming
file, line and key. A GPU with `dra:` is handed out by a DRA driver (gpulse.sim.dra)
instead of the device plugin: its devices are named by claim.
"""

from __future__ import annotations

import os
import uuid as uuidlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar, overload

import yaml

from .. import safeyaml
from ..config import parse_duration
from ..nvml.metrics import CLOCK_EVENT_REASONS
from ..workloads import adapters
from . import dra, expositions, lifecycle
from .knobs import KNOBS
from .traces import Trace, TraceError, parse_trace

BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "scenarios")
SHARING_MODES = ("exclusive", "time-slicing", "mps")
FAULT_KINDS = ("xid", "unsupported", "lost", "nvml_error", "stall", "init_failure", "throttle", "ecc", "row_remap")
# Throttle reasons a fault can switch on: every clock event reason but idleness.
THROTTLE_REASONS = tuple(name for name, _ in CLOCK_EVENT_REASONS if name != "gpu_idle")
FAULT_FIELDS = KNOBS  # the metric rows' and the fake's knobs: one list
# every server gpulse reads that the simulator has a format for
SERVERS = tuple(s for s in adapters.BY_SERVER if s in expositions.FORMATS)


class ScenarioError(Exception):
    """One line: file:line: key: what is wrong."""


# --- YAML with line numbers -------------------------------------------------------

class _LineDict(dict[Any, Any]):
    __slots__ = ("lines", "line")
    lines: dict[Any, int]  # key -> line of the key
    line: int  # line of the mapping itself (0: not from the file)


class _Loader(safeyaml.BoundedLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict()
    out.lines = {}
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ScenarioError(f"{{file}}:{key_node.start_mark.line + 1}: {key}: duplicate key")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


_T = TypeVar("_T")
_D = TypeVar("_D")


class _Ctx:
    def __init__(self, path: str) -> None:
        self.path = path
        self.base_dir = os.path.dirname(os.path.abspath(path))
        self.last_pid = 20000  # auto PIDs are deterministic per file

    def fail(self, where: Optional[Mapping[Any, Any]], key: str, msg: str, path: str = "") -> ScenarioError:
        line: int | str = "?"
        if isinstance(where, _LineDict):
            line = where.lines.get(key.split(".")[-1].split("[")[0], where.line)
        return ScenarioError(f"{self.path}:{line}: {path or key}: {msg}")

    def mapping(self, node: Any, path: str, allowed: Mapping[str, bool], parent: Optional[Mapping[Any, Any]] = None,
                key: str = "") -> dict[Any, Any]:
        """Check keys against allowed {name: required?}."""
        if not isinstance(node, dict):
            raise self.fail(parent, key, f"expected a mapping, got {type(node).__name__}", path)
        for k in node:
            if k not in allowed:
                raise self.fail(node, str(k), f"unknown key (allowed: {', '.join(allowed)})",
                                f"{path}.{k}" if path else str(k))
        for k, required in allowed.items():
            if required and k not in node:
                raise self.fail(node, k, "missing required key", f"{path}.{k}" if path else k)
        return node

    # typed(): node[key] checked against `types`; `default` (None unless given) when absent.
    @overload
    def typed(self, node: Mapping[Any, Any], key: str, types: type[_T], path: str) -> Optional[_T]: ...
    @overload
    def typed(self, node: Mapping[Any, Any], key: str, types: type[_T], path: str, default: _D) -> _T | _D: ...
    @overload
    def typed(self, node: Mapping[Any, Any], key: str, types: tuple[type[_T], ...], path: str,
              default: _D) -> _T | _D: ...

    def typed(self, node: Mapping[Any, Any], key: str, types: type[Any] | tuple[type[Any], ...], path: str,
              default: Any = None) -> Any:
        if key not in node:
            return default
        v = node[key]
        if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.fail(node, key, f"expected {_tname(types)}, got {v!r}", path)
        if not isinstance(v, types):
            raise self.fail(node, key, f"expected {_tname(types)}, got {v!r}", path)
        return v

    def required(self, node: Mapping[Any, Any], key: str, types: type[_T], path: str) -> _T:
        """typed() of a key that mapping() has already checked is present: never None."""
        v = self.typed(node, key, types, path)
        assert v is not None, path
        return v

    def trace(self, node: Mapping[Any, Any], key: str, path: str) -> Optional[Trace]:
        if key not in node:
            return None
        try:
            return parse_trace(node[key], self.base_dir)
        except TraceError as exc:
            raise self.fail(node, key, str(exc), path) from None

    def duration(self, node: Mapping[Any, Any], key: str, path: str, default: float = 0.0) -> float:
        if key not in node:
            return default
        v = node[key]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        try:
            return parse_duration(str(v))
        except ValueError as exc:
            raise self.fail(node, key, str(exc), path) from None


def _tname(types: type[Any] | tuple[type[Any], ...]) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names: dict[type[Any], str] = {int: "an integer", float: "a number", str: "a string", bool: "true/false",
                                   dict: "a mapping", list: "a list"}
    return " or ".join(names.get(t, t.__name__) for t in types)


# --- the model --------------------------------------------------------------------

@dataclass(frozen=True)
class MigInstanceSpec:
    index: int  # position on its GPU (NVML MIG device index)
    profile: str
    gpu_instance: int
    compute_instance: int
    uuid: str
    memory_mib: int


@dataclass(frozen=True)
class GpuSpec:
    index: int
    model: str
    name: str
    uuid: str
    pci_bus_id: str
    pci_device_id: int
    pci_subsystem_id: int
    memory_mib: int
    compute_capability: str
    power_limit_watts: float
    idle_power_watts: float
    max_sm_clock_mhz: int
    memory_clock_mhz: int
    nvlinks: int
    gpm: bool
    fan: bool
    mig_profiles: dict[str, dict[str, int]]  # hardware.yaml: profile -> slices, max, memory_mib
    unsupported: frozenset[str]
    sharing: str = "exclusive"  # exclusive | time-slicing | mps (MIG GPUs: see mig_instances)
    replicas: int = 1
    mig_instances: tuple[MigInstanceSpec, ...] = ()
    utilization: Optional[Trace] = None  # overrides the sum of its processes
    temperature_celsius: float = 40.0
    dra_driver: str = ""  # the DRA driver that publishes it; "" for the device plugin

    @property
    def mig_enabled(self) -> bool:
        return bool(self.mig_instances)


@dataclass(frozen=True)
class DeviceRef:
    gpu: int
    mig: Optional[int] = None  # MIG instance index on that GPU
    replica: Optional[int] = None  # time-slicing replica number
    resource: str = ""  # extended resource name; derived when empty
    claim: str = ""  # DRA: the ResourceClaim that holds the device
    claim_namespace: str = ""


@dataclass(frozen=True)
class ProcessSpec:
    pid: int
    gpu: int
    mig: Optional[int]
    memory_mib: float
    utilization: Trace
    pod_uid: str = ""  # empty for host processes
    container_id: str = ""
    container: str = ""


@dataclass(frozen=True)
class WorkloadSpec:
    server: str
    model: str = ""
    queue_depth: Optional[Trace] = None
    running_requests: Optional[Trace] = None
    kv_cache_usage: Optional[Trace] = None
    push: bool = False  # report over the push socket instead of serving /metrics
    version: str = ""  # the server's release, as gpulse.sim.expositions formats it ("" = current)
    tensor_parallel: int = 1  # ranks that each report the same values (SGLang tp_rank)
    data_parallel: int = 1  # ranks whose values add up (vLLM engine, SGLang dp_rank, replicas)


@dataclass(frozen=True)
class StartupSpec:
    """A pod that starts while the scenario runs (gpulse.sim.lifecycle): seconds."""
    scheduled: float  # scenario time it is bound to the node; it does not exist before
    image_pull: float = 0.0  # scheduled -> containers running
    cuda_init: float = 0.0  # containers running -> first GPU memory
    model_load: float = 0.0  # first GPU memory -> model ready
    first_request: float = 0.0  # model ready -> first request served
    answers_before_load: bool = False  # /metrics answers from the first GPU memory (Triton explicit mode)
    crashes: tuple[float, ...] = ()  # scenario times the first container exits with code 1
    backoff: float = 10.0  # the kubelet's first CrashLoopBackOff delay


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    container_id: str
    devices: tuple[DeviceRef, ...] = ()
    processes: tuple[ProcessSpec, ...] = ()


@dataclass(frozen=True)
class PodSpec:
    namespace: str
    name: str
    uid: str
    containers: tuple[ContainerSpec, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    workload: Optional[WorkloadSpec] = None
    qos: str = "burstable"  # cgroup parent: guaranteed | burstable | besteffort
    owner: tuple[str, str] = ("", "")  # controller (kind, name) in ownerReferences; none when empty
    startup: Optional[StartupSpec] = None  # starts while the scenario runs; None: running since before


@dataclass(frozen=True)
class FaultSpec:
    at: float
    kind: str
    gpu: Optional[int] = None
    field: str = ""
    xid: int = 0
    function: str = ""
    error: str = "UNKNOWN"
    seconds: float = 0.0
    until: float = 0.0
    count: int = 1


@dataclass(frozen=True)
class NodeSpec:
    name: str
    provider_id: str = ""
    dmi: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverSpec:
    version: str = "550.90.07"
    cuda_version: int = 12040
    nvml_version: str = "12.550.90.07"


@dataclass(frozen=True)
class CgroupSpec:
    version: int = 2
    driver: str = "systemd"  # systemd | cgroupfs
    runtime: str = "containerd"  # containerd | crio | docker


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str
    node: NodeSpec
    driver: DriverSpec
    cgroup: CgroupSpec
    gpus: tuple[GpuSpec, ...]
    pods: tuple[PodSpec, ...]
    host_processes: tuple[ProcessSpec, ...]
    faults: tuple[FaultSpec, ...]

    def processes(self) -> Iterator[ProcessSpec]:
        for pod in self.pods:
            for c in pod.containers:
                yield from c.processes
        yield from self.host_processes


def stable_uuid(*parts: str) -> str:
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "gpulse-sim:" + "/".join(parts)))


def hardware_profiles() -> dict[str, dict[str, Any]]:
    with open(os.path.join(os.path.dirname(__file__), "hardware.yaml"), encoding="utf-8") as fh:
        profiles: dict[str, dict[str, Any]] = yaml.safe_load(fh)  # model -> its facts, as written
        return profiles


def builtin_names() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(BUILTIN_DIR) if f.endswith(".yaml"))


def resolve_path(name_or_path: str) -> str:
    if os.sep in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        return name_or_path
    candidate = os.path.join(BUILTIN_DIR, name_or_path + ".yaml")
    if not os.path.exists(candidate):
        raise ScenarioError(f"scenario {name_or_path!r}: not a built-in ({', '.join(builtin_names())}) nor a path")
    return candidate


def load(name_or_path: str) -> Scenario:
    path = resolve_path(name_or_path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = raw.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(f"{path}:{row}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except ScenarioError as exc:
        raise ScenarioError(str(exc).replace("{file}", path)) from None
    except safeyaml.YamlError as exc:
        raise ScenarioError(exc.at(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        raise ScenarioError(f"{path}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return _build(_Ctx(path), data)


def _build(ctx: _Ctx, data: Any) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{ctx.path}:1: expected a mapping at the top level")
    ctx.mapping(data, "", {"name": True, "description": False, "node": True, "driver": False,
                           "cgroup": False, "gpus": True, "pods": False, "host_processes": False, "faults": False})
    name = ctx.required(data, "name", str, "name")
    node = _node(ctx, data["node"], data)
    driver = _driver(ctx, data.get("driver", _empty()), data)
    cgroup = _cgroup(ctx, data.get("cgroup", _empty()), data)
    gpus = _gpus(ctx, name, data)
    pods = _pods(ctx, data, gpus, cgroup)
    host = tuple(_process(ctx, p, f"host_processes[{i}]", data, gpus, None, "", "", "")
                 for i, p in enumerate(_list(ctx, data, "host_processes")))
    faults = tuple(_fault(ctx, f, f"faults[{i}]", gpus) for i, f in enumerate(_list(ctx, data, "faults")))
    pids = [p.pid for pod in pods for c in pod.containers for p in c.processes] + [p.pid for p in host]
    dup = {p for p in pids if pids.count(p) > 1}
    if dup:
        raise ScenarioError(f"{ctx.path}:?: processes: PID {min(dup)} used twice")
    return Scenario(name, data.get("description", ""), ctx.path, node, driver, cgroup, gpus, pods, host, faults)


def _empty() -> _LineDict:
    d = _LineDict()
    d.lines, d.line = {}, 0
    return d


def _list(ctx: _Ctx, node: Mapping[Any, Any], key: str) -> list[Any]:
    v = node.get(key, [])
    if v is None:
        return []
    if not isinstance(v, list):
        raise ctx.fail(node, key, "expected a list", key)
    return v


def _node(ctx: _Ctx, n: Any, parent: Mapping[Any, Any]) -> NodeSpec:
    ctx.mapping(n, "node", {"name": True, "provider_id": False, "dmi": False, "labels": False}, parent, "node")
    for key in ("dmi", "labels"):
        v = n.get(key, {})
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise ctx.fail(n, key, "expected a mapping of strings", f"node.{key}")
    return NodeSpec(ctx.required(n, "name", str, "node.name"), ctx.typed(n, "provider_id", str, "node.provider_id", ""),
                    dict(n.get("dmi", {})), dict(n.get("labels", {})))


def _driver(ctx: _Ctx, n: Any, parent: Mapping[Any, Any]) -> DriverSpec:
    ctx.mapping(n, "driver", {"version": False, "cuda_version": False, "nvml_version": False}, parent, "driver")
    d = DriverSpec()
    return DriverSpec(ctx.typed(n, "version", str, "driver.version", d.version),
                      ctx.typed(n, "cuda_version", int, "driver.cuda_version", d.cuda_version),
                      ctx.typed(n, "nvml_version", str, "driver.nvml_version", d.nvml_version))


def _cgroup(ctx: _Ctx, n: Any, parent: Mapping[Any, Any]) -> CgroupSpec:
    ctx.mapping(n, "cgroup", {"version": False, "driver": False, "runtime": False}, parent, "cgroup")
    c = CgroupSpec(ctx.typed(n, "version", int, "cgroup.version", 2),
                   ctx.typed(n, "driver", str, "cgroup.driver", "systemd"),
                   ctx.typed(n, "runtime", str, "cgroup.runtime", "containerd"))
    if c.version not in (1, 2):
        raise ctx.fail(n, "version", "must be 1 or 2", "cgroup.version")
    if c.driver not in ("systemd", "cgroupfs"):
        raise ctx.fail(n, "driver", "must be systemd or cgroupfs", "cgroup.driver")
    if c.runtime not in ("containerd", "crio", "docker"):
        raise ctx.fail(n, "runtime", "must be containerd, crio or docker", "cgroup.runtime")
    return c


_GPU_KEYS = {"model": True, "count": False, "name": False, "pci_device_id": False, "pci_subsystem_id": False,
             "memory_mib": False, "compute_capability": False, "sharing": False, "mig": False,
             "utilization": False, "unsupported": False, "temperature_celsius": False, "power_limit_watts": False,
             "dra": False}


def _gpus(ctx: _Ctx, scen_name: str, data: Mapping[Any, Any]) -> tuple[GpuSpec, ...]:
    profiles = hardware_profiles()
    out: list[GpuSpec] = []
    for gi, g in enumerate(_list(ctx, data, "gpus")):
        path = f"gpus[{gi}]"
        ctx.mapping(g, path, _GPU_KEYS, data, "gpus")
        model = ctx.required(g, "model", str, f"{path}.model")
        if model not in profiles:
            raise ctx.fail(g, "model", f"unknown GPU model {model!r} (known: {', '.join(profiles)})", f"{path}.model")
        hw = dict(profiles[model])
        count = ctx.typed(g, "count", int, f"{path}.count", 1)
        if count < 1:
            raise ctx.fail(g, "count", "must be at least 1", f"{path}.count")
        for key in ("name", "compute_capability"):
            hw[key] = ctx.typed(g, key, str, f"{path}.{key}", hw[key])
        for key in ("pci_device_id", "pci_subsystem_id", "memory_mib"):
            hw[key] = ctx.typed(g, key, int, f"{path}.{key}", hw[key])
        hw["power_limit_watts"] = float(ctx.typed(g, "power_limit_watts", (int, float), f"{path}.power_limit_watts",
                                                  hw["power_limit_watts"]))
        unsupported = set(hw.get("unsupported", []))
        extra = ctx.typed(g, "unsupported", list, f"{path}.unsupported", [])
        for f in extra:
            if f not in FAULT_FIELDS:
                raise ctx.fail(g, "unsupported", f"unknown field {f!r} (one of {', '.join(FAULT_FIELDS)})",
                               f"{path}.unsupported")
        unsupported |= set(extra)
        sharing, replicas = "exclusive", 1
        if "sharing" in g:
            s = ctx.mapping(g["sharing"], f"{path}.sharing", {"mode": True, "replicas": False}, g, "sharing")
            sharing = ctx.required(s, "mode", str, f"{path}.sharing.mode")
            if sharing not in SHARING_MODES:
                raise ctx.fail(s, "mode", f"must be one of {', '.join(SHARING_MODES)}", f"{path}.sharing.mode")
            replicas = ctx.typed(s, "replicas", int, f"{path}.sharing.replicas", 1)
            if replicas < 1:
                raise ctx.fail(s, "replicas", "must be at least 1", f"{path}.sharing.replicas")
        mig_layout: list[str] = []
        if "mig" in g:
            m = ctx.mapping(g["mig"], f"{path}.mig", {"instances": True}, g, "mig")
            if sharing != "exclusive":
                raise ctx.fail(g, "mig", "a MIG GPU cannot also be time-sliced here", f"{path}.mig")
            mig_profiles = hw.get("mig_profiles") or {}
            if not mig_profiles:
                raise ctx.fail(g, "mig", f"impossible MIG layout: {model} does not support MIG", f"{path}.mig")
            slices = 0
            for ii, inst in enumerate(_list(ctx, m, "instances")):
                ipath = f"{path}.mig.instances[{ii}]"
                ctx.mapping(inst, ipath, {"profile": True, "count": False}, m, "instances")
                prof = ctx.required(inst, "profile", str, f"{ipath}.profile")
                if prof not in mig_profiles:
                    known = ", ".join(mig_profiles)
                    raise ctx.fail(inst, "profile",
                                   f"impossible MIG layout: {model} has no profile {prof!r} (has {known})",
                                   f"{ipath}.profile")
                n = ctx.typed(inst, "count", int, f"{ipath}.count", 1)
                if n < 1 or n > mig_profiles[prof]["max"]:
                    raise ctx.fail(inst, "count",
                                   f"impossible MIG layout: {prof} fits at most {mig_profiles[prof]['max']} times",
                                   f"{ipath}.count")
                slices += n * mig_profiles[prof]["slices"]
                mig_layout += [prof] * n
            if slices > 7:
                raise ctx.fail(m, "instances",
                               f"impossible MIG layout: {slices} compute slices requested, the GPU has 7",
                               f"{path}.mig.instances")
        dra_driver = ""
        if "dra" in g:
            dm = ctx.mapping(g["dra"], f"{path}.dra", {"driver": False}, g, "dra")
            dra_driver = ctx.typed(dm, "driver", str, f"{path}.dra.driver", "gpu.nvidia.com")
            if not dra_driver:
                raise ctx.fail(dm, "driver", "must not be empty", f"{path}.dra.driver")
            if replicas != 1:
                raise ctx.fail(g, "sharing", "a DRA GPU is shared through claims, not replicas",
                               f"{path}.sharing.replicas")
        util = ctx.trace(g, "utilization", f"{path}.utilization")
        temp = float(ctx.typed(g, "temperature_celsius", (int, float), f"{path}.temperature_celsius", 40.0))
        for _ in range(count):
            index = len(out)
            gpu_uuid = "GPU-" + stable_uuid(scen_name, "gpu", str(index))
            migs = tuple(MigInstanceSpec(i, prof, gpu_instance=i + 1, compute_instance=0,
                                         uuid="MIG-" + stable_uuid(scen_name, "gpu", str(index), "mig", str(i)),
                                         memory_mib=hw["mig_profiles"][prof]["memory_mib"])
                         for i, prof in enumerate(mig_layout))
            out.append(GpuSpec(
                index=index, model=model, name=hw["name"], uuid=gpu_uuid,
                pci_bus_id=f"00000000:{0x18 + 0x10 * index:02X}:00.0",
                pci_device_id=hw["pci_device_id"], pci_subsystem_id=hw["pci_subsystem_id"],
                memory_mib=hw["memory_mib"], compute_capability=hw["compute_capability"],
                power_limit_watts=hw["power_limit_watts"], idle_power_watts=float(hw["idle_power_watts"]),
                max_sm_clock_mhz=hw["max_sm_clock_mhz"], memory_clock_mhz=hw["memory_clock_mhz"],
                nvlinks=hw["nvlinks"], gpm=hw["gpm"], fan=hw["fan"], mig_profiles=hw.get("mig_profiles") or {},
                unsupported=frozenset(unsupported), sharing=sharing, replicas=replicas,
                mig_instances=migs, utilization=util, temperature_celsius=temp, dra_driver=dra_driver))
    if not out:
        line = getattr(data, "lines", {}).get("gpus", "?")
        raise ScenarioError(f"{ctx.path}:{line}: gpus: at least one GPU is needed")
    return tuple(out)


def _pods(ctx: _Ctx, data: Mapping[Any, Any], gpus: tuple[GpuSpec, ...], cgroup: CgroupSpec) -> tuple[PodSpec, ...]:
    pods: list[PodSpec] = []
    used: dict[tuple[int, Optional[int], Optional[int]], str] = {}  # device -> owner pod (or claim)
    claims: dict[tuple[str, str], tuple[tuple[int, Optional[int]], ...]] = {}  # DRA claim -> its devices
    for pi, p in enumerate(_list(ctx, data, "pods")):
        path = f"pods[{pi}]"
        ctx.mapping(p, path, {"namespace": True, "name": True, "uid": False, "annotations": False, "labels": False,
                              "containers": True, "workload": False, "qos": False, "owner": False,
                              "startup": False}, data, "pods")
        ns, name = ctx.required(p, "namespace", str, f"{path}.namespace"), ctx.required(p, "name", str, f"{path}.name")
        uid = ctx.typed(p, "uid", str, f"{path}.uid", stable_uuid(ns, name))
        qos = ctx.typed(p, "qos", str, f"{path}.qos", "burstable")
        if qos not in ("guaranteed", "burstable", "besteffort"):
            raise ctx.fail(p, "qos", "must be guaranteed, burstable or besteffort", f"{path}.qos")
        for key in ("annotations", "labels"):
            v = p.get(key, {})
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise ctx.fail(p, key, "expected a mapping of strings", f"{path}.{key}")
        containers: list[ContainerSpec] = []
        for ci, c in enumerate(_list(ctx, p, "containers")):
            cpath = f"{path}.containers[{ci}]"
            ctx.mapping(c, cpath, {"name": True, "devices": False, "processes": False}, p, "containers")
            cname = ctx.required(c, "name", str, f"{cpath}.name")
            cid = stable_uuid(uid, cname).replace("-", "") + stable_uuid(cname, uid).replace("-", "")
            devices = tuple(_device(ctx, d, f"{cpath}.devices[{di}]", c, gpus, used, f"{ns}/{name}")
                            for di, d in enumerate(_list(ctx, c, "devices")))
            _check_claims(ctx, c, cpath, devices, claims)
            default = devices[0] if devices else None
            procs = tuple(_process(ctx, pr, f"{cpath}.processes[{xi}]", c, gpus, default, uid, cid, cname)
                          for xi, pr in enumerate(_list(ctx, c, "processes")))
            containers.append(ContainerSpec(cname, cid, devices, procs))
        workload = _workload(ctx, p["workload"], f"{path}.workload", p) if "workload" in p else None
        owner = ("", "")
        if "owner" in p:
            o = ctx.mapping(p["owner"], f"{path}.owner", {"kind": True, "name": True}, p, "owner")
            owner = (ctx.required(o, "kind", str, f"{path}.owner.kind"),
                     ctx.required(o, "name", str, f"{path}.owner.name"))
        startup = _startup(ctx, p["startup"], f"{path}.startup", p) if "startup" in p else None
        pods.append(PodSpec(ns, name, uid, tuple(containers), dict(p.get("annotations", {})),
                            dict(p.get("labels", {})), workload, qos, owner, startup))
    return tuple(pods)


def _check_claims(ctx: _Ctx, c: Mapping[Any, Any], path: str, devices: tuple[DeviceRef, ...],
                  claims: dict[tuple[str, str], tuple[tuple[int, Optional[int]], ...]]) -> None:
    """A claim is allocated once: every container that references it holds the same devices."""
    mine: dict[tuple[str, str], list[tuple[int, Optional[int]]]] = {}
    for ref in devices:
        if ref.claim:
            mine.setdefault((ref.claim_namespace, ref.claim), []).append((ref.gpu, ref.mig))
    for key, devs in mine.items():
        known = claims.setdefault(key, tuple(devs))
        if known != tuple(devs):
            raise ctx.fail(c, "devices", f"claim {key[0]}/{key[1]} holds {list(known)} elsewhere, here {devs}",
                           f"{path}.devices")


def _dra_device(ctx: _Ctx, d: Mapping[Any, Any], path: str, g: GpuSpec, mig: Optional[int],
                used: dict[tuple[int, Optional[int], Optional[int]], str], owner: str) -> DeviceRef:
    """A device on a DRA GPU: named by its claim, or by the extended resource the pod asked
    for (then the scheduler's claim `<pod>-extended-resources-<suffix>` holds it)."""
    if "replica" in d:
        raise ctx.fail(d, "replica", f"GPU {g.index} is handed out through DRA: claims share it, not replicas",
                       f"{path}.replica")
    ns = owner.partition("/")[0]
    claim = ctx.typed(d, "claim", str, f"{path}.claim", "")
    resource = ctx.typed(d, "resource", str, f"{path}.resource", "")
    if not claim and not resource:
        raise ctx.fail(d, "gpu", f"GPU {g.index} is handed out through DRA: name the claim with claim: "
                                 "(or resource: for an extended resource DRA serves)", path)
    if not claim:
        claim = dra.extended_resource_claim(owner.partition("/")[2])
    claim_ns = ctx.typed(d, "claim_namespace", str, f"{path}.claim_namespace", ns)
    key = (g.index, mig, None)
    holder = f"claim {claim_ns}/{claim}"
    if key in used and used[key] != holder and g.sharing == "exclusive":
        raise ctx.fail(d, "gpu", f"device already allocated to {used[key]} (a GPU shared by several claims "
                                 "needs sharing: mode:)", path)
    used.setdefault(key, holder)
    return DeviceRef(g.index, mig, None, resource, claim, claim_ns)


def _device(ctx: _Ctx, d: Any, path: str, parent: Mapping[Any, Any], gpus: tuple[GpuSpec, ...],
            used: dict[tuple[int, Optional[int], Optional[int]], str], owner: str) -> DeviceRef:
    ctx.mapping(d, path, {"gpu": True, "mig": False, "replica": False, "resource": False, "claim": False,
                          "claim_namespace": False}, parent, "devices")
    gi = ctx.required(d, "gpu", int, f"{path}.gpu")
    if not 0 <= gi < len(gpus):
        raise ctx.fail(d, "gpu", f"no GPU {gi} (the scenario has {len(gpus)})", f"{path}.gpu")
    g = gpus[gi]
    mig = ctx.typed(d, "mig", int, f"{path}.mig")
    replica = ctx.typed(d, "replica", int, f"{path}.replica")
    if g.mig_enabled and mig is None:
        raise ctx.fail(d, "gpu", f"GPU {gi} is in MIG mode: name the instance with mig:", path)
    if mig is not None and not 0 <= mig < len(g.mig_instances):
        raise ctx.fail(d, "mig", f"GPU {gi} has {len(g.mig_instances)} MIG instances", f"{path}.mig")
    if g.dra_driver:
        return _dra_device(ctx, d, path, g, mig, used, owner)
    if "claim" in d or "claim_namespace" in d:
        raise ctx.fail(d, "claim", f"GPU {gi} is not handed out through DRA (give it dra:)", f"{path}.claim")
    if g.sharing != "exclusive" and replica is None:
        raise ctx.fail(d, "gpu", f"GPU {gi} is shared ({g.sharing}): name the replica with replica:", path)
    if replica is not None and not 0 <= replica < g.replicas:
        raise ctx.fail(d, "replica", f"GPU {gi} has {g.replicas} replicas", f"{path}.replica")
    key = (gi, mig, replica)
    if key in used:
        raise ctx.fail(d, "gpu", f"device already assigned to {used[key]}", path)
    used[key] = owner
    resource = ctx.typed(d, "resource", str, f"{path}.resource", "")
    if not resource:
        if mig is not None:
            resource = "nvidia.com/mig-" + g.mig_instances[mig].profile
        elif g.sharing != "exclusive":
            resource = "nvidia.com/gpu"  # the device plugin's default: renameByDefault false
        else:
            resource = "nvidia.com/gpu"
    return DeviceRef(gi, mig, replica, resource)


def _process(ctx: _Ctx, pr: Any, path: str, parent: Mapping[Any, Any], gpus: tuple[GpuSpec, ...],
             default: Optional[DeviceRef], pod_uid: str, cid: str, cname: str) -> ProcessSpec:
    ctx.mapping(pr, path, {"pid": False, "gpu": False, "mig": False, "memory_mib": False, "utilization": False},
                parent, "processes")
    gi = ctx.typed(pr, "gpu", int, f"{path}.gpu", default.gpu if default else None)
    if gi is None:
        raise ctx.fail(pr, "gpu", "the process needs a gpu: (its container has no device)", path)
    if not 0 <= gi < len(gpus):
        raise ctx.fail(pr, "gpu", f"no GPU {gi}", f"{path}.gpu")
    mig = ctx.typed(pr, "mig", int, f"{path}.mig", default.mig if default and default.gpu == gi else None)
    if gpus[gi].mig_enabled and (mig is None or not 0 <= mig < len(gpus[gi].mig_instances)):
        raise ctx.fail(pr, "mig", f"GPU {gi} is in MIG mode: the process needs a valid mig: instance", path)
    pid = ctx.typed(pr, "pid", int, f"{path}.pid")
    if pid is None:
        ctx.last_pid += 7
        pid = ctx.last_pid
    elif pid <= 1:
        raise ctx.fail(pr, "pid", "must be greater than 1", f"{path}.pid")
    mem = float(ctx.typed(pr, "memory_mib", (int, float), f"{path}.memory_mib", 1024))
    util = ctx.trace(pr, "utilization", f"{path}.utilization") or parse_trace(0.0)
    return ProcessSpec(pid, gi, mig, mem, util, pod_uid, cid, cname)


def _workload(ctx: _Ctx, w: Any, path: str, parent: Mapping[Any, Any]) -> WorkloadSpec:
    ctx.mapping(w, path, {"server": True, "model": False, "queue_depth": False, "running_requests": False,
                          "kv_cache_usage": False, "push": False, "version": False, "tensor_parallel": False,
                          "data_parallel": False}, parent, "workload")
    server = ctx.required(w, "server", str, f"{path}.server")
    if server not in SERVERS:
        raise ctx.fail(w, "server", f"unknown server {server!r} (one of {', '.join(SERVERS)})", f"{path}.server")
    version = ctx.typed(w, "version", str, f"{path}.version", "")
    try:
        expositions.resolve(server, version)
    except expositions.VersionError as exc:
        raise ctx.fail(w, "version", str(exc), f"{path}.version") from None
    ranks = {}
    for key in ("tensor_parallel", "data_parallel"):
        ranks[key] = ctx.typed(w, key, int, f"{path}.{key}", 1)
        if not 1 <= ranks[key] <= expositions.MAX_RANKS:
            raise ctx.fail(w, key, f"must be 1 to {expositions.MAX_RANKS}", f"{path}.{key}")
    return WorkloadSpec(server, ctx.typed(w, "model", str, f"{path}.model", ""),
                        ctx.trace(w, "queue_depth", f"{path}.queue_depth"),
                        ctx.trace(w, "running_requests", f"{path}.running_requests"),
                        ctx.trace(w, "kv_cache_usage", f"{path}.kv_cache_usage"),
                        ctx.typed(w, "push", bool, f"{path}.push", False), version,
                        ranks["tensor_parallel"], ranks["data_parallel"])


def _startup(ctx: _Ctx, n: Any, path: str, parent: Mapping[Any, Any]) -> StartupSpec:
    keys = ("scheduled", "image_pull", "cuda_init", "model_load", "first_request", "backoff")
    ctx.mapping(n, path, {**dict.fromkeys(keys, False), "scheduled": True, "answers_before_load": False,
                          "crashes": False}, parent, "startup")
    values = {}
    for key in keys:
        values[key] = ctx.duration(n, key, f"{path}.{key}", 10.0 if key == "backoff" else 0.0)
        if values[key] < 0:
            raise ctx.fail(n, key, "must not be negative", f"{path}.{key}")
    crashes = []
    for i, c in enumerate(_list(ctx, n, "crashes")):
        try:
            number = isinstance(c, (int, float)) and not isinstance(c, bool)
            crashes.append(float(c) if number else parse_duration(str(c)))
        except ValueError as exc:
            raise ctx.fail(n, "crashes", str(exc), f"{path}.crashes[{i}]") from None
    spec = StartupSpec(values["scheduled"], values["image_pull"], values["cuda_init"], values["model_load"],
                       values["first_request"], ctx.typed(n, "answers_before_load", bool,
                                                          f"{path}.answers_before_load", False),
                       tuple(sorted(crashes)), values["backoff"])
    try:
        lifecycle.runs(spec)
    except ValueError as exc:
        raise ctx.fail(n, "crashes", str(exc), f"{path}.crashes") from None
    return spec


def _fault(ctx: _Ctx, f: Any, path: str, gpus: tuple[GpuSpec, ...]) -> FaultSpec:
    ctx.mapping(f, path, {"at": True, "kind": True, "gpu": False, "field": False, "xid": False, "function": False,
                          "error": False, "seconds": False, "until": False, "count": False}, None, "faults")
    kind = ctx.required(f, "kind", str, f"{path}.kind")
    if kind not in FAULT_KINDS:
        raise ctx.fail(f, "kind", f"unknown fault {kind!r} (one of {', '.join(FAULT_KINDS)})", f"{path}.kind")
    gpu = ctx.typed(f, "gpu", int, f"{path}.gpu")
    if gpu is not None and not 0 <= gpu < len(gpus):
        raise ctx.fail(f, "gpu", f"no GPU {gpu}", f"{path}.gpu")
    if kind in ("xid", "unsupported", "lost", "throttle", "ecc", "row_remap") and gpu is None:
        raise ctx.fail(f, "kind", f"a {kind} fault needs gpu:", path)
    fld = ctx.typed(f, "field", str, f"{path}.field", "")
    if kind == "unsupported" and fld not in FAULT_FIELDS:
        raise ctx.fail(f, "field", f"unknown field {fld!r} (one of {', '.join(FAULT_FIELDS)})", f"{path}.field")
    allowed_fields = {"throttle": THROTTLE_REASONS, "ecc": ("correctable", "uncorrectable"), "row_remap": ("failure",)}
    if kind in allowed_fields and fld not in allowed_fields[kind]:
        raise ctx.fail(f, "field", f"a {kind} fault needs field: one of {', '.join(allowed_fields[kind])}",
                       f"{path}.field")
    xid = ctx.typed(f, "xid", int, f"{path}.xid", 0)
    if kind == "xid" and xid <= 0:
        raise ctx.fail(f, "xid", "an xid fault needs a positive xid:", f"{path}.xid")
    function = ctx.typed(f, "function", str, f"{path}.function", "")
    if kind in ("nvml_error", "stall") and not function.startswith("nvml"):
        raise ctx.fail(f, "function", "needs the NVML function name, e.g. nvmlDeviceGetPowerUsage", f"{path}.function")
    return FaultSpec(ctx.duration(f, "at", f"{path}.at"), kind, gpu, fld, xid, function,
                     ctx.typed(f, "error", str, f"{path}.error", "UNKNOWN"),
                     ctx.duration(f, "seconds", f"{path}.seconds"), ctx.duration(f, "until", f"{path}.until"),
                     ctx.typed(f, "count", int, f"{path}.count", 1))
