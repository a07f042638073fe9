"""gpulse serve | check | identify | labels | probe | scenarios.

The one module that knows the simulator: with --nvml.backend=fake it starts the scenario's
outside world, validates the settings the world hands back through the same config loader,
and gives the agent the fake library's loader. Every error a user can cause (bad flag
value, bad config or scenario file, no NVML) ends in one line on stderr naming what and
where, and a non-zero exit: 2 for bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

from . import __version__, memory
from . import config as config_mod
from .config import Config
from .errors import one_line

log = logging.getLogger(__name__)

# Which settings each subcommand takes (serve takes them all).
_NVML_FLAGS = ("config.file", "nvml.backend", "scenario", "log.level")
_CHECK_FLAGS = _NVML_FLAGS + ("path.procfs", "path.sysfs", "kubelet.pod-resources-socket")
_IDENTITY_FLAGS = _NVML_FLAGS + ("path.sysfs", "node.name", "kube.apiserver", "kube.enabled")


def _parser() -> argparse.ArgumentParser:
    from .identity import cli as identity_cli

    p = argparse.ArgumentParser(prog="gpulse", description="GPU node agent for Prometheus.")
    p.add_argument("--version", action="version", version=f"gpulse {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="sample GPUs and serve /metrics")
    config_mod.add_flags(serve)
    check = sub.add_parser("check", help="diagnose NVML, GPUs, kubelet socket and proc root; "
                                         "non-zero when the agent cannot work here")
    config_mod.add_flags(check, _CHECK_FLAGS)
    identify = sub.add_parser("identify", help="print this node's canonical GPU identity, or explain a raw one offline")
    config_mod.add_flags(identify, _IDENTITY_FLAGS)
    identity_cli.add_identify_arguments(identify)
    labels = sub.add_parser("labels", help="print the gpulse.dev/ node labels")
    config_mod.add_flags(labels, _IDENTITY_FLAGS)
    identity_cli.add_labels_arguments(labels)
    probe = sub.add_parser("probe", help="fetch one inference endpoint once and show what the agent reads "
                                         "from it: server, per-model queue, running and KV cache")
    from . import probe as probe_mod
    probe_mod.add_arguments(probe)
    scen = sub.add_parser("scenarios", help="list the built-in scenarios, or validate scenario files")
    scen.add_argument("files", nargs="*", help="scenario files to validate")
    return p


class _BadInputError(Exception):
    """The user's input (a scenario, a flag combination) is wrong: exit 2."""


class _NvmlUnavailableError(Exception):
    """NVML cannot be used on this machine: exit 1 with one line saying why."""


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    if args.command == "scenarios":
        return scenarios_main(args)
    if args.command == "probe":
        from . import probe as probe_mod
        return probe_mod.main(args)
    try:
        cfg = config_mod.load(args)
    except config_mod.ConfigError as exc:
        print(f"gpulse: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if getattr(args, "setting_scenario", None) is not None and cfg.nvml_backend != "fake":
            raise _BadInputError("--scenario simulates a node: add --nvml.backend=fake "
                                 "(or drop --scenario on a GPU node)")
        if args.command == "serve":
            return serve_main(cfg)
        if args.command == "check":
            return check_main(cfg)
        from .identity import cli as identity_cli
        if args.command == "identify":
            return identity_cli.identify_main(args, cfg, lambda: node_identity(cfg))
        if args.command == "labels":
            return identity_cli.labels_main(args, cfg, lambda: node_identity(cfg))
    except _BadInputError as exc:
        print(f"gpulse: {exc}", file=sys.stderr)
        return 2
    except _NvmlUnavailableError as exc:
        print(f"gpulse {args.command}: {exc}", file=sys.stderr)
        return 1
    return 2


# --- the simulated outside world (--nvml.backend=fake) ---------------------------------------
class _Nvml:
    """Where NVML comes from: the driver's library, or a started simulated world."""

    def __init__(self, cfg: Config):
        self.world: Any = None
        self.cfg = cfg
        if cfg.nvml_backend == "fake":
            self._start_world()

    def _start_world(self) -> None:
        from .sim.scenario import ScenarioError
        from .sim.world import World

        try:
            world = World.from_name(self.cfg.scenario)
            overrides = world.start()
        except ScenarioError as exc:
            raise _BadInputError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a fake that cannot start is one line too
            raise _BadInputError(f"scenario {self.cfg.scenario}: cannot start the simulated node: "
                                 f"{one_line(exc)}") from None
        self.world = world
        try:
            self.cfg = config_mod.with_overrides(self.cfg, overrides, f"scenario {self.cfg.scenario}")
        except config_mod.ConfigError as exc:
            world.stop()
            raise _BadInputError(str(exc)) from None

    @property
    def loader(self) -> Callable[[], Any]:
        if self.world is not None:
            world = self.world
            return lambda: world.nvml
        from .nvml.lib import load_real
        return load_real

    def stop(self) -> None:
        if self.world is not None:
            self.world.stop()


def serve_main(cfg: Config) -> int:
    from .app import build
    from .httpconn import Limits
    from .server import make_server, serve_in_thread

    memory.bound_allocator()
    try:
        web = _web_options(cfg)
    except _BadInputError as exc:
        print(f"gpulse: {exc}", file=sys.stderr)
        return 2
    nvml = _Nvml(cfg)
    cfg = nvml.cfg
    try:
        agent = build(cfg, nvml_loader=nvml.loader)
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
        nvml.stop()
        print(f"gpulse: cannot start: {one_line(exc)}", file=sys.stderr)
        return 1
    agent.on_stop.append(nvml.stop)
    try:
        if cfg.web_kubernetes_auth:
            web["authorizer"] = _kube_authorizer(cfg)
        server = make_server(cfg.web_listen_address, agent.sampler, refusals=agent.refusals,
                             debug_snapshot=cfg.web_debug_snapshot,
                             limits=Limits(max_connections=cfg.web_max_connections,
                                           header_timeout=cfg.web_header_timeout), **web)
    except _BadInputError as exc:
        agent.stop()
        print(f"gpulse: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        agent.stop()
        print(f"gpulse: --web.listen-address {cfg.web_listen_address}: {exc.strerror or one_line(exc)}",
              file=sys.stderr)
        return 2
    # The handler only records the signal, and the main thread looks every half second: an
    # Event.set() in a handler deadlocks when a second signal (make forwards Ctrl-C) lands
    # inside the first set(), and an untimed wait misses a signal a gRPC thread took.
    signalled: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: signalled.append(signum))
    agent.start()
    serve_in_thread(server)
    host, port = server.server_address[:2]
    scheme = "https" if web.get("web_config") is not None and web["web_config"].current.tls is not None else "http"
    log.info("gpulse %s serving %s://%s/metrics (backend %s%s)", __version__, scheme, _host_port(str(host), int(port)),
             cfg.nvml_backend, f", scenario {cfg.scenario}" if nvml.world is not None else "")
    while not signalled:
        time.sleep(0.5)
    log.info("shutting down")
    server.shutdown()
    agent.stop()
    return 0


def _web_options(cfg: Config) -> dict[str, Any]:
    """The web server's TLS and authentication from --web.config.file; _BadInputError (one line)."""
    from .webconfig import WebConfigError, WebConfigSource

    if not cfg.web_config_file:
        return {}
    try:
        source = WebConfigSource(cfg.web_config_file)
    except WebConfigError as exc:
        raise _BadInputError(str(exc)) from None
    if source.current.users:
        try:
            import bcrypt  # noqa: F401 - checked here so that a missing package is one line at start
        except ImportError:
            raise _BadInputError("web.config.file: basic_auth_users needs the bcrypt package "
                                 "(pip install bcrypt)") from None
        if cfg.web_kubernetes_auth:
            raise _BadInputError("--web.kubernetes-auth and basic_auth_users in --web.config.file both read the "
                                 "Authorization header: use one of them")
    return {"web_config": source}


def _kube_authorizer(cfg: Config) -> Any:
    from .kube.apiserver import KubeClient, KubeConfig, KubeError
    from .kube.authz import KubeAuthorizer

    if not cfg.kube_apiserver and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise _BadInputError("--web.kubernetes-auth needs the Kubernetes API: run in a cluster or set "
                             "--kube.apiserver")
    try:
        return KubeAuthorizer(KubeClient(KubeConfig.load(cfg)))
    except KubeError as exc:
        raise _BadInputError(f"--web.kubernetes-auth: {exc}") from None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _open_reader(cfg: Config) -> tuple[Any, _Nvml]:
    """(reader, nvml) after nvmlInit and discovery; _NvmlUnavailableError when NVML is not usable."""
    from .nvml.reader import NvmlReader

    nvml = _Nvml(cfg)
    try:
        reader = NvmlReader(nvml.loader())
        reader.start()
    except Exception as exc:  # noqa: BLE001 - any failure here is the answer
        nvml.stop()
        hint = "" if nvml.world else " (is the NVIDIA driver installed? --nvml.backend=fake simulates a node)"
        raise _NvmlUnavailableError(f"NVML not available: {one_line(exc)}{hint}") from None
    return reader, nvml


def node_identity(cfg: Config) -> Any:
    """This node's identity view: one NVML read, the Node object when the API is reachable."""
    from .identity.resolver import IdentityResolver

    reader, nvml = _open_reader(cfg)
    cfg = nvml.cfg
    try:
        reading = reader.read(time.monotonic())
        node = None
        if cfg.kube_enabled and cfg.node_name:
            from .kube.apiserver import KubeClient, KubeConfig, KubeError
            try:
                node = KubeClient(KubeConfig.load(cfg)).get_node(cfg.node_name)
            except (KubeError, OSError) as exc:
                log.warning("node object unavailable: %s", exc)
        return IdentityResolver(cfg.path_sysfs, cfg.node_name).resolve(reading, node)
    finally:
        reader.stop()
        nvml.stop()


# --- gpulse check ------------------------------------------------------------------------------
# What NVML answered, per call, as `gpulse check` words it.
_OUTCOME_WORDS = {"ok": "ok", "unsupported": "unsupported", "no_data": "no data", "broken": "error", "gone": "gone"}


def check_rows() -> list[tuple[str, str, str, bool]]:
    """(call key, what it is, families, asked on MIG GPUs) for every NVML call the agent
    makes per tick: the metric rows' reads, then the calls that are not rows."""
    from .nvml import metrics as m
    from .nvml import reader as r

    out: list[tuple[str, str, str, bool]] = []
    for read in m.reads():
        if isinstance(read, m.Events):
            continue
        families = [row.family for row in m.ALL_METRICS if any(
            read == x or (isinstance(x, m.LabeledFields) and any(read == f for _, f in x.fields)) for x in row.reads)]
        mig = all(m.BY_FAMILY[f].scope == "mig" for f in families)
        key = read.key + ("@mig" if mig and not isinstance(read, m.Gpm) else "")
        on_mig = mig or any(m.BY_FAMILY[f].on_mig for f in families)
        out.append((key, read.describe() + (" (MIG)" if mig else ""), ", ".join(families), on_mig))
    out += [(r.PROCESSES, "compute processes", "pod attribution", False),
            (r.PROCESSES + "@mig", "compute processes (MIG)", "pod attribution", True),
            (r.PROCESS_UTILIZATION, "per-process utilization", "time-slicing / MPS shares", False),
            (r.XID_EVENTS, "XID critical error events", "gpulse_gpu_xid_errors_total", True)]
    return out


def check_main(cfg: Config) -> int:
    reader, nvml = _open_reader(cfg)
    cfg = nvml.cfg
    try:
        reader.read(time.monotonic())
        time.sleep(0.2)  # a second read exercises the calls that need a previous sample
        reading = reader.read(time.monotonic())
        rows = [("NVML", "ok", f"driver {reader.driver_version}, CUDA {reader.cuda_version}, "
                               f"NVML {reader.nvml_version}, {len(reader.devices)} GPU(s)")]
        for dev, d in zip(reader.devices, reading.devices, strict=True):
            mig = f"MIG on, {len(dev.migs)} instance(s), GPM {'yes' if dev.gpm else 'no'}" if dev.mig_enabled else \
                ("MIG off" if d.facts.mig_capable else "MIG not supported")
            rows.append((f"GPU {dev.index}", "ok" if d.up else "LOST", f"{dev.name} {dev.uuid} {dev.pci_bus_id} {mig}"))
        print(_table(rows, ("CHECK", "STATUS", "DETAIL")))
        print()
        names = [f"GPU {d.index}" for d in reader.devices]
        matrix = []
        for key, what, families, on_mig in check_rows():
            cells = [_OUTCOME_WORDS.get(reader.outcomes.get((dev.index, key), ""),
                                        "not called" if on_mig or not dev.mig_enabled else "n/a (MIG on)")
                     for dev in reader.devices]
            matrix.append((what, *cells, families))
        print(_table(matrix, ("NVML CALL", *names, "METRICS")))
        print()
        sock = cfg.kubelet_pod_resources_socket
        try:
            sock_ok = stat.S_ISSOCK(os.stat(sock).st_mode)
        except OSError:
            sock_ok = False
        proc_ok = os.access(os.path.join(cfg.path_procfs, "self", "cgroup"), os.R_OK) or \
            os.path.isdir(cfg.path_procfs) and os.access(cfg.path_procfs, os.R_OK)
        dmi = os.path.join(cfg.path_sysfs, "class", "dmi", "id")
        env_rows = [("kubelet socket", "ok" if sock_ok else "missing", sock),
                    ("proc root", "ok" if proc_ok else "unreadable", cfg.path_procfs),
                    ("sys root (DMI)", "ok" if os.path.isdir(dmi) else "missing", dmi)]
        print(_table(env_rows, ("ENVIRONMENT", "STATUS", "PATH")))
        return 0 if reader.devices else 1
    finally:
        reader.stop()
        nvml.stop()


def scenarios_main(args: argparse.Namespace) -> int:
    from .sim import scenario
    if not args.files:
        for name in scenario.builtin_names():
            s = scenario.load(name)
            print(f"{name:16} {len(s.gpus)} GPU(s), {len(s.pods)} pod(s): {s.description}")
        return 0
    status = 0
    for path in args.files:
        try:
            s = scenario.load(path)
            print(f"{path}: ok ({len(s.gpus)} GPU(s), {len(s.pods)} pod(s), {len(s.faults)} fault(s))")
        except scenario.ScenarioError as exc:
            print(f"gpulse: {exc}", file=sys.stderr)
            status = 2
    return status


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [tuple(map(str, header))] + [tuple(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def entry() -> None:
    """The `gpulse` command: main() with the reader of stdout gone (`gpulse check | head`)
    ending quietly as cat does, status 141, and Ctrl-C as status 130; no traceback."""
    code: Union[int, str, None]
    try:
        try:
            code = main()
        except SystemExit as exc:  # argparse's --help and usage errors print, then exit
            code = exc.code
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        code = 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    sys.exit(code)


if __name__ == "__main__":
    entry()
