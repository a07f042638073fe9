"""gpulse serve | check | identify | labels | scenarios.

Every error a user can cause (bad flag value, bad config or scenario file, no NVML) ends
in one line on stderr naming what and where, and a non-zero exit: 2 for bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from . import __version__
from . import config as config_mod
from .errors import one_line

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpulse", description="GPU node agent for Prometheus.")
    p.add_argument("--version", action="version", version=f"gpulse {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="sample GPUs and serve /metrics")
    config_mod.add_flags(serve)
    check = sub.add_parser("check", help="diagnose NVML, GPUs, kubelet socket and proc root; non-zero when the agent cannot work here")
    config_mod.add_flags(check)
    from .identity import cli as identity_cli
    identify = sub.add_parser("identify", help="print this node's canonical GPU identity, or explain a raw one offline")
    config_mod.add_flags(identify)
    identity_cli.add_identify_arguments(identify)
    labels = sub.add_parser("labels", help="print the gpulse.dev/ node labels")
    config_mod.add_flags(labels)
    identity_cli.add_labels_arguments(labels)
    scen = sub.add_parser("scenarios", help="list the built-in scenarios, or validate scenario files")
    scen.add_argument("files", nargs="*", help="scenario files to validate")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 2
    if args.command == "scenarios":
        return scenarios_main(args)
    try:
        cfg = config_mod.load(args)
    except config_mod.ConfigError as exc:
        print(f"gpulse: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            return serve_main(cfg)
        if args.command == "check":
            return check_main(cfg)
        from .identity import cli as identity_cli
        if args.command == "identify":
            return identity_cli.identify_main(args, cfg, lambda: node_identity(cfg))
        if args.command == "labels":
            return identity_cli.labels_main(args, cfg, lambda: node_identity(cfg))
    except _BadInput as exc:
        print(f"gpulse: {exc}", file=sys.stderr)
        return 2
    except _NvmlUnavailable as exc:
        print(f"gpulse {args.command}: {exc}", file=sys.stderr)
        return 1
    return 2


class _BadInput(Exception):
    """The user's input (a scenario) is wrong: exit 2."""


class _NvmlUnavailable(Exception):
    """NVML cannot be used on this machine: exit 1 with one line saying why."""


def _start_world(cfg):
    from .sim.scenario import ScenarioError
    from .app import start_world
    try:
        return start_world(cfg)
    except ScenarioError as exc:
        raise _BadInput(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a fake that cannot start is one line too
        raise _BadInput(f"scenario {cfg.scenario}: cannot start the simulated node: {one_line(exc)}") from None


def serve_main(cfg) -> int:
    from .app import build
    from .server import make_server, serve_in_thread

    world = None
    if cfg.nvml_backend == "fake":
        world, cfg = _start_world(cfg)
    try:
        agent = build(cfg, world=world)
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
        if world is not None:
            world.stop()
        print(f"gpulse: cannot start: {one_line(exc)}", file=sys.stderr)
        return 1
    try:
        server = make_server(cfg.web_listen_address, agent.sampler)
    except OSError as exc:
        agent.stop()
        print(f"gpulse: --web.listen-address {cfg.web_listen_address}: {exc.strerror or one_line(exc)}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    agent.start()
    serve_in_thread(server)
    host, port = server.server_address[:2]
    log.info("gpulse %s serving http://%s:%d/metrics (backend %s%s)", __version__, host, port, cfg.nvml_backend,
             f", scenario {cfg.scenario}" if world else "")
    done.wait()
    log.info("shutting down")
    server.shutdown()
    agent.stop()
    return 0


def _open_reader(cfg):
    """(reader, world, cfg) after nvmlInit and discovery; _NvmlUnavailable when NVML is not usable."""
    from .nvml import lib as nvml_lib
    from .nvml.reader import NvmlReader

    world = None
    if cfg.nvml_backend == "fake":
        world, cfg = _start_world(cfg)
        lib = world.nvml
    else:
        lib = nvml_lib.load_real()
    reader = NvmlReader(lib)
    try:
        reader.start()
    except Exception as exc:  # noqa: BLE001 - any failure here is the answer
        if world:
            world.stop()
        hint = "" if world else " (is the NVIDIA driver installed? --nvml.backend=fake simulates a node)"
        raise _NvmlUnavailable(f"NVML not available: {one_line(exc)}{hint}") from None
    return reader, world, cfg


def node_identity(cfg):
    """This node's identity view: one NVML read, the Node object when the API is reachable."""
    from .identity.resolver import IdentityResolver
    reader, world, cfg = _open_reader(cfg)
    try:
        reading = reader.read(time.monotonic())
        node = None
        if cfg.kube_enabled and cfg.node_name:
            from .kube.apiserver import KubeClient, KubeConfig, KubeError
            try:
                node = KubeClient(KubeConfig.load(cfg)).get_node(cfg.node_name)
            except (KubeError, OSError) as exc:
                log.warning("node object unavailable: %s", exc)
        return IdentityResolver(cfg).resolve(reading, node)
    finally:
        reader.stop()
        if world:
            world.stop()


CHECKS = (
    ("utilization", "nvmlDeviceGetUtilizationRates"),
    ("memory", "nvmlDeviceGetMemoryInfo"),
    ("power", "nvmlDeviceGetPowerUsage"),
    ("power limit", "nvmlDeviceGetEnforcedPowerLimit"),
    ("temperature", "nvmlDeviceGetTemperature"),
    ("clocks", "nvmlDeviceGetClockInfo"),
    ("fan", "nvmlDeviceGetFanSpeed"),
    ("encoder", "nvmlDeviceGetEncoderUtilization"),
    ("decoder", "nvmlDeviceGetDecoderUtilization"),
    ("clock events", "nvmlDeviceGetCurrentClocksEventReasons"),
    ("remapped rows", "nvmlDeviceGetRemappedRows"),
    ("processes", "nvmlDeviceGetComputeRunningProcesses"),
    ("process util", "nvmlDeviceGetProcessUtilization"),
    ("field values", "nvmlDeviceGetFieldValues"),
    ("xid events", "nvmlDeviceRegisterEvents"),
)


def check_main(cfg) -> int:
    from .nvml.reader import FIELDS
    reader, world, cfg = _open_reader(cfg)
    try:
        reader.read(time.monotonic())
        time.sleep(0.2)  # a second read exercises the calls that need a previous sample
        reading = reader.read(time.monotonic())
        rows = [("NVML", "ok", f"driver {reader.driver_version}, CUDA {reader.cuda_version}, NVML {reader.nvml_version}, "
                               f"{len(reader.devices)} GPU(s)")]
        for dev, d in zip(reader.devices, reading.devices):
            mig = f"MIG on, {len(dev.migs)} instance(s), GPM {'yes' if dev.gpm else 'no'}" if dev.mig_enabled else \
                ("MIG off" if d.raw.get("mig_capable") else "MIG not supported")
            rows.append((f"GPU {dev.index}", "ok" if d.up else "LOST", f"{dev.name} {dev.uuid} {dev.pci_bus_id} {mig}"))
        print(_table(rows, ("CHECK", "STATUS", "DETAIL")))
        print()
        names = [f"GPU {d.index}" for d in reader.devices]
        matrix = []
        for label, function in CHECKS:
            matrix.append((label, *("no" if function in dev.unsupported else "yes" for dev in reader.devices)))
        for const, family, _, labels in FIELDS:
            label = "field " + const[len("NVML_FI_DEV_"):].lower()
            matrix.append((label, *("yes" if any(fid[1] == family and fid[3] == labels for fid in dev.field_ids) else "no"
                                    for dev in reader.devices)))
        print(_table(matrix, ("FUNCTION/FIELD", *names)))
        print()
        sock = cfg.kubelet_pod_resources_socket
        import stat
        try:
            sock_ok = stat.S_ISSOCK(os.stat(sock).st_mode)
        except OSError:
            sock_ok = False
        proc_ok = os.access(os.path.join(cfg.path_procfs, "self", "cgroup"), os.R_OK) or \
            os.path.isdir(cfg.path_procfs) and os.access(cfg.path_procfs, os.R_OK)
        env_rows = [("kubelet socket", "ok" if sock_ok else "missing", sock),
                    ("proc root", "ok" if proc_ok else "unreadable", cfg.path_procfs),
                    ("sys root (DMI)", "ok" if os.path.isdir(os.path.join(cfg.path_sysfs, "class", "dmi", "id")) else "missing",
                     os.path.join(cfg.path_sysfs, "class", "dmi", "id"))]
        print(_table(env_rows, ("ENVIRONMENT", "STATUS", "PATH")))
        return 0 if reader.devices else 1
    finally:
        reader.stop()
        if world:
            world.stop()


def scenarios_main(args) -> int:
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


def _table(rows, header) -> str:
    rows = [tuple(map(str, header))] + [tuple(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)



if __name__ == "__main__":
    sys.exit(main())
