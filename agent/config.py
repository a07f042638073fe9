"""One frozen Config, built once from flags, GPULSE_* environment and an optional YAML file.

Precedence: flag > environment > YAML file > default. Every setting is declared once in
SETTINGS (flag name, type, default, help); the flag parser, the environment names, the
YAML keys and the README's configuration reference are all derived from that table.
Bad values raise ConfigError with one line naming the setting; the CLI exits 2.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Callable

import yaml


class ConfigError(Exception):
    """A setting that cannot be used; str() is one line naming it."""


_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """'500ms', '1s', '1m30s' -> seconds, the Prometheus way."""
    text = str(text).strip()
    if not _DURATION_RE.match(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 1s, 1m)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    if seconds and seconds < 1:
        return f"{int(round(seconds * 1000))}ms"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def _bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"invalid boolean {text!r} (use true or false)")


def _positive_duration(text: Any) -> float:
    v = parse_duration(text)
    if v <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return v


def _positive_int(text: Any) -> int:
    try:
        v = int(str(text).strip())
    except ValueError:
        raise ValueError(f"invalid integer {text!r}") from None
    if v <= 0:
        raise ValueError(f"integer {text!r} must be positive")
    return v


def _listen_address(text: Any) -> str:
    t = str(text).strip()
    host, sep, port = t.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {t!r} (use host:port or :port)")
    return t


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(text: Any) -> str:
        t = str(text).strip()
        if t not in allowed:
            raise ValueError(f"invalid value {t!r} (one of: {', '.join(allowed)})")
        return t
    return parse


def _csv(text: Any) -> tuple:
    if isinstance(text, (list, tuple)):
        return tuple(str(x).strip() for x in text if str(x).strip())
    return tuple(x.strip() for x in str(text).split(",") if x.strip())


def _str(text: Any) -> str:
    return str(text).strip()


@dataclass(frozen=True)
class Setting:
    flag: str  # dotted flag name without leading dashes, e.g. "web.listen-address"
    parse: Callable[[Any], Any]
    default: Any
    help: str
    metavar: str = ""
    env_alias: str = ""  # an extra conventional env var (e.g. NODE_NAME from the downward API)

    @property
    def attr(self) -> str:
        return self.flag.replace(".", "_").replace("-", "_")

    @property
    def env(self) -> str:
        return "GPULSE_" + self.attr.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("config.file", _str, "", "Optional YAML file of settings (keys are flag names).", "PATH"),
    Setting("web.listen-address", _listen_address, ":9445", "Address to serve /metrics, /livez, /readyz, /identity and /debug/snapshot on (dcgm-exporter keeps 9400).", "ADDR"),
    Setting("collect.interval", _positive_duration, 1.0, "Sampler tick: how often NVML is read and the metrics re-rendered.", "DURATION"),
    Setting("collect.window", _positive_duration, 10.0, "Rolling window for utilization means and maxima.", "DURATION"),
    Setting("nvml.backend", _choice("real", "fake"), "real", "NVML implementation: the driver's library (real) or the scenario simulator (fake).", "NAME"),
    Setting("scenario", _str, "reference", "Simulated node for --nvml.backend=fake: a built-in name or a YAML path.", "NAME|PATH"),
    Setting("path.procfs", _str, "/proc", "Host proc root used to map GPU processes to pods.", "PATH"),
    Setting("path.sysfs", _str, "/sys", "Host sys root, read for DMI cloud identity.", "PATH"),
    Setting("node.name", _str, "", "Kubernetes node name (the downward API's NODE_NAME).", "NAME", env_alias="NODE_NAME"),
    Setting("kubelet.pod-resources-socket", _str, "/var/lib/kubelet/pod-resources/kubelet.sock", "kubelet PodResources v1 gRPC socket.", "PATH"),
    Setting("kubelet.refresh-interval", _positive_duration, 5.0, "How often pod allocations are refreshed (off the tick).", "DURATION"),
    Setting("kubelet.resource-names", _csv, (), "Extra GPU resource names to attribute, besides nvidia.com/gpu, nvidia.com/gpu.shared and nvidia.com/mig-*.", "LIST"),
    Setting("kube.apiserver", _str, "", "Kubernetes API URL; empty means in-cluster service-account config.", "URL"),
    Setting("kube.enabled", _bool, True, "Use the Kubernetes API for node labels and workload discovery.", "BOOL"),
    Setting("workloads.enabled", _bool, True, "Collect queue depth from annotated inference-server pods on this node.", "BOOL"),
    Setting("workloads.scrape-interval", _positive_duration, 1.0, "How often workload endpoints are scraped (off the tick).", "DURATION"),
    Setting("workloads.scrape-timeout", _positive_duration, 0.5, "Per-endpoint scrape timeout.", "DURATION"),
    Setting("workloads.max-body-bytes", _positive_int, 8 * 1024 * 1024, "Largest workload /metrics body read before the scrape is failed.", "BYTES"),
    Setting("workloads.concurrency", _positive_int, 8, "Workload endpoints scraped at once.", "N"),
    Setting("workloads.push-socket", _str, "/var/run/gpulse/push.sock", "Node-local Unix socket for pushed queue depth; empty disables push.", "PATH"),
    Setting("workloads.push-ttl", _positive_duration, 30.0, "Pushed entries expire when not refreshed within this time.", "DURATION"),
    Setting("sources.dcgm-exporter-url", _str, "", "A co-located dcgm-exporter's /metrics URL for per-MIG activity on A100/A30; empty disables.", "URL"),
    Setting("compat.dcgm", _bool, False, "Also render dcgm-exporter's metric names and labels.", "BOOL"),
    Setting("identity.nfd-file", _str, "/etc/kubernetes/node-feature-discovery/features.d/gpulse", "NFD local feature file for gpulse.dev/ labels; empty disables.", "PATH"),
    Setting("limits.max-series", _positive_int, 20_000, "Cardinality ceiling per family; series beyond it are dropped and counted.", "N"),
    Setting("log.level", _choice("debug", "info", "warning", "error"), "info", "Log level.", "LEVEL"),
)

BY_FLAG = {s.flag: s for s in SETTINGS}

Config = make_dataclass(
    "Config",
    [(s.attr, Any, field(default=s.default)) for s in SETTINGS],
    frozen=True,
)
Config.__doc__ = "Validated, immutable agent settings (see SETTINGS)."


def add_flags(parser: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        parser.add_argument("--" + s.flag, dest=s.attr, default=None, metavar=s.metavar or None,
                            help=f"{s.help} (env {s.env}; default {describe_default(s)})")


def describe_default(s: Setting) -> str:
    if s.parse in (_positive_duration,):
        return format_duration(s.default)
    if isinstance(s.default, tuple):
        return ",".join(s.default) or "none"
    if s.default == "":
        return "empty"
    return str(s.default).lower() if isinstance(s.default, bool) else str(s.default)


def _load_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"config.file: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"config.file: {where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config.file: {path}: expected a mapping of setting names")
    flat: dict = {}

    def walk(prefix: str, node: dict) -> None:
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and key not in BY_FLAG:
                walk(key, v)
            else:
                flat[key] = v
    walk("", data)
    for key in flat:
        if key not in BY_FLAG:
            raise ConfigError(f"config.file: {path}: unknown setting {key!r}")
    return flat


def load(args: argparse.Namespace | None = None, environ: dict | None = None) -> Any:
    """Build the Config from parsed flags (all None when not given), env and YAML."""
    environ = os.environ if environ is None else environ
    given = {s.attr: getattr(args, s.attr, None) for s in SETTINGS} if args else {}

    def raw_env(s: Setting):
        if s.env in environ:
            return environ[s.env], s.env
        if s.env_alias and s.env_alias in environ:
            return environ[s.env_alias], s.env_alias
        return None, ""

    cfg_path = given.get("config_file") or raw_env(BY_FLAG["config.file"])[0] or ""
    from_file = _load_yaml(cfg_path) if cfg_path else {}
    values = {}
    for s in SETTINGS:
        raw, origin = given.get(s.attr), f"--{s.flag}"
        if raw is None:
            raw, env_name = raw_env(s)
            origin = env_name
        if raw is None and s.flag in from_file:
            raw, origin = from_file[s.flag], f"{cfg_path}: {s.flag}"
        if raw is None:
            values[s.attr] = s.default
            continue
        try:
            values[s.attr] = s.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    _check_together(values)
    return Config(**values)


WINDOW_SAMPLES = 1024  # the ring buffer behind each window (gpulse.kernels.WindowSet)


def _check_together(values: dict) -> None:
    interval, window = values["collect_interval"], values["collect_window"]
    if window < interval:
        raise ConfigError(f"--collect.window ({format_duration(window)}) must be at least --collect.interval "
                          f"({format_duration(interval)})")
    if window / interval > WINDOW_SAMPLES:
        raise ConfigError(f"--collect.window ({format_duration(window)}) holds more than {WINDOW_SAMPLES} ticks of "
                          f"--collect.interval ({format_duration(interval)}): lengthen the interval or shorten the window")


def as_dict(cfg) -> dict:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}
