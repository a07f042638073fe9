"""One frozen, typed Config, built once from flags, GPULSE_* environment and an optional YAML file.

Precedence: flag > environment > YAML file > default. The defaults are the Config fields';
every setting is declared once in SETTINGS (flag name, parser, help), and the flag parser,
the environment names, the YAML keys and the README's configuration reference all derive
from that table. Each collector has its own switch (`--collector.<name>` /
`--no-collector.<name>`), generated from the catalog's collector list. Bad values raise
ConfigError with one line naming the setting and where it came from; the CLI exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from . import safeyaml
from .catalog import COLLECTORS
from .errors import OneLineError
from .httpfetch import check_url
from .pricing import PriceFileError, PriceTable, parse_kind


class ConfigError(OneLineError):
    """A setting that cannot be used; str() is one line naming it."""


_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
WINDOW_SAMPLES = 1024  # the ring buffer behind each window (gpulse.kernels.WindowSet)
MAX_VALUE_CHARS = 4096  # one setting's value, from any origin (a path, a URL, a list of names)
# Workload scrape bodies in flight at once: bodies are parsed as they arrive (a scrape holds a
# partial line and the samples of the families gpulse reads, at most
# gpulse.workloads.exposition.MAX_SERIES), so concurrency x max-body-bytes within this share
# of the DaemonSet's 128 MiB limit is a conservative bound (steady RSS ~60 MiB; docs/hardening.md).
WORKLOAD_BODY_BUDGET = 16 * 1024 * 1024
MAX_BODY_BYTES = WORKLOAD_BODY_BUDGET


def parse_duration(text: Any) -> float:
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


def parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"invalid boolean {text!r} (use true or false)")


class _Duration:
    """A duration setting's parser, bounded: a huge value would overflow a wait or hold a
    thread for days, a tiny one would spin."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def __call__(self, text: Any) -> float:
        v = parse_duration(text)
        if v <= 0:
            raise ValueError(f"duration {text!r} must be positive")
        if not self.low <= v <= self.high:
            raise ValueError(f"duration {text!r} is outside {format_duration(self.low)}..{format_duration(self.high)}")
        return v


class _Int:
    """A count or size setting's parser, bounded."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, text: Any) -> int:
        try:
            v = int(str(text).strip())
        except ValueError:
            raise ValueError(f"invalid integer {text!r}") from None
        if v <= 0:
            raise ValueError(f"integer {text!r} must be positive")
        if not self.low <= v <= self.high:
            raise ValueError(f"integer {text!r} is outside {self.low}..{self.high}")
        return v


def _url(text: Any) -> str:
    """An http(s) URL, or empty (off)."""
    t = str(text).strip()
    return check_url(t) if t else t


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


def _csv(text: Any) -> tuple[str, ...]:
    if isinstance(text, (list, tuple)):
        return tuple(str(x).strip() for x in text if str(x).strip())
    return tuple(x.strip() for x in str(text).split(",") if x.strip())


def _str(text: Any) -> str:
    return str(text).strip()


def _price_file(text: Any) -> str:
    """A price file that loads (checked at start, so a bad one is a one-line error and exit 2)."""
    path = str(text).strip()
    if path:
        try:
            PriceTable.load(path)
        except PriceFileError as exc:
            raise ValueError(str(exc)) from None
    return path


def _ratio(text: Any) -> float:
    """A fraction strictly between 0 and 1: 0.05 or 5%."""
    t = str(text).strip()
    try:
        v = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise ValueError(f"invalid ratio {t!r} (use e.g. 0.05 or 5%)") from None
    if not 0.0 < v < 1.0:
        raise ValueError(f"ratio {t!r} must be between 0 and 1 (0% and 100%), exclusive")
    return v


@dataclass(frozen=True)
class Config:
    """Validated, immutable agent settings; SETTINGS says what each one means."""
    config_file: str = ""
    web_listen_address: str = ":9445"
    web_config_file: str = ""
    web_max_connections: int = 64
    web_header_timeout: float = 5.0
    web_debug_snapshot: bool = False
    web_kubernetes_auth: bool = False
    collect_interval: float = 1.0
    collect_window: float = 10.0
    nvml_backend: str = "real"
    scenario: str = "reference"
    path_procfs: str = "/proc"
    path_sysfs: str = "/sys"
    node_name: str = ""
    kubelet_pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    kubelet_refresh_interval: float = 5.0
    kubelet_resource_names: tuple[str, ...] = ()
    kube_apiserver: str = ""
    kube_enabled: bool = True
    kube_resource_slices: bool = True
    workloads_enabled: bool = True
    workloads_scrape_interval: float = 1.0
    workloads_scrape_timeout: float = 0.5
    workloads_max_body_bytes: int = 2 * 1024 * 1024
    workloads_concurrency: int = 8
    workloads_push_socket: str = "/var/run/gpulse/push.sock"
    workloads_push_ttl: float = 30.0
    workloads_push_auth: str = "pod"
    sources_dcgm_exporter_url: str = ""
    identity_nfd_file: str = "/etc/kubernetes/node-feature-discovery/features.d/gpulse"
    limits_max_series: int = 20_000
    log_level: str = "info"
    cost_price_file: str = ""
    cost_pricing_kind: str = "auto"
    cost_basis: str = "allocation"
    cost_idle_threshold: float = 0.05
    collectors: frozenset[str] = frozenset(name for name, (on, _) in COLLECTORS.items() if on)

    def collector_enabled(self, name: str) -> bool:
        return name in self.collectors


@dataclass(frozen=True)
class Setting:
    flag: str  # dotted flag name without leading dashes, e.g. "web.listen-address"
    parse: Callable[[Any], Any]
    help: str
    metavar: str = ""
    env_alias: str = ""  # an extra conventional env var (e.g. NODE_NAME from the downward API)
    aliases: tuple[str, ...] = ()  # other flag names for the same setting
    collector: str = ""  # a collector switch: adds or removes this name in Config.collectors

    @property
    def attr(self) -> str:
        """The Config field the setting fills."""
        return "collectors" if self.collector else _attr(self.flag)

    @property
    def env(self) -> str:
        return "GPULSE_" + _attr(self.flag).upper()

    @property
    def envs(self) -> tuple[str, ...]:
        return (self.env,) + tuple("GPULSE_" + _attr(a).upper() for a in self.aliases) + \
            ((self.env_alias,) if self.env_alias else ())

    @property
    def is_bool(self) -> bool:
        return self.parse is parse_bool

    @property
    def default(self) -> Any:
        if self.collector:
            return COLLECTORS[self.collector][0]
        return _DEFAULTS[self.attr]


def _attr(flag: str) -> str:
    return flag.replace(".", "_").replace("-", "_")


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)}

SETTINGS: tuple[Setting, ...] = (
    Setting("config.file", _str, "Optional YAML file of settings (keys are flag names).", "PATH"),
    Setting("web.listen-address", _listen_address,
            "Address to serve /metrics, /livez, /readyz, /identity and /debug/snapshot on (dcgm-exporter keeps 9400).",
            "ADDR"),
    Setting("web.config.file", _str,
            "TLS, basic auth and rate limit for the web endpoints, in Prometheus exporter-toolkit's web "
            "configuration format (re-read when it or its certificates change).", "PATH"),
    Setting("web.max-connections", _Int(1, 4096),
            "Open HTTP connections at most; past it, stalled ones give way to new ones.", "N"),
    Setting("web.header-timeout", _Duration(0.1, 60),
            "One deadline for the TLS handshake, request line and headers of each HTTP request.", "DURATION"),
    Setting("web.debug-snapshot", parse_bool,
            "Serve /debug/snapshot (the last tick's snapshot as JSON, rendered at most once per tick)."),
    Setting("web.kubernetes-auth", parse_bool,
            "Scrapers of /metrics, /identity and /debug/snapshot must present a Kubernetes bearer token whose "
            "user may GET the path (TokenReview and SubjectAccessReview, cached)."),
    Setting("collect.interval", _Duration(0.1, 600),
            "Sampler tick: how often NVML is read and the metrics re-rendered.", "DURATION"),
    Setting("collect.window", _Duration(0.1, 3600), "Rolling window for utilization means and maxima.", "DURATION"),
    Setting("nvml.backend", _choice("real", "fake"),
            "NVML implementation: the driver's library (real) or the scenario simulator (fake).", "NAME"),
    Setting("scenario", _str, "Simulated node for --nvml.backend=fake: a built-in name or a YAML path.", "NAME|PATH"),
    Setting("path.procfs", _str, "Host proc root used to map GPU processes to pods.", "PATH"),
    Setting("path.sysfs", _str, "Host sys root, read for DMI cloud identity.", "PATH"),
    Setting("node.name", _str, "Kubernetes node name (the downward API's NODE_NAME).", "NAME", env_alias="NODE_NAME"),
    Setting("kubelet.pod-resources-socket", _str, "kubelet PodResources v1 gRPC socket.", "PATH"),
    Setting("kubelet.refresh-interval", _Duration(0.1, 3600),
            "How often pod allocations are refreshed (off the tick).", "DURATION"),
    Setting("kubelet.resource-names", _csv,
            "Extra GPU resource names to attribute, besides nvidia.com/gpu, nvidia.com/gpu.shared and "
            "nvidia.com/mig-*.", "LIST"),
    Setting("kube.apiserver", _url, "Kubernetes API URL; empty means in-cluster service-account config.", "URL"),
    Setting("kube.enabled", parse_bool, "Use the Kubernetes API for node labels and workload discovery."),
    Setting("kube.resource-slices", parse_bool,
            "Watch this node's DRA ResourceSlices to attribute GPUs handed out by claims (needs get/list/watch "
            "on resource.k8s.io resourceslices)."),
    Setting("workloads.enabled", parse_bool, "Collect queue depth from annotated inference-server pods on this node."),
    Setting("workloads.scrape-interval", _Duration(0.1, 600),
            "How often workload endpoints are scraped (off the tick).", "DURATION"),
    Setting("workloads.scrape-timeout", _Duration(0.01, 60), "Per-endpoint scrape timeout.", "DURATION"),
    Setting("workloads.max-body-bytes", _Int(1024, MAX_BODY_BYTES),
            "Largest workload /metrics body read before the scrape is failed (with --workloads.concurrency at "
            "most 16 MiB of bodies at once).", "BYTES"),
    Setting("workloads.concurrency", _Int(1, 64), "Workload endpoints scraped at once.", "N"),
    Setting("workloads.push-socket", _str,
            "Node-local Unix socket for pushed queue depth; empty disables push.", "PATH"),
    Setting("workloads.push-ttl", _Duration(1, 3600),
            "Pushed entries expire when not refreshed within this time.", "DURATION"),
    Setting("workloads.push-auth", _choice("pod", "none"),
            "Who may push: `pod` lets a process push only for the pod its cgroup belongs to (peer credentials "
            "of the socket; the DaemonSet needs hostPID), `none` trusts the namespace and pod a push names.",
            "MODE"),
    Setting("sources.dcgm-exporter-url", _url,
            "A co-located dcgm-exporter's /metrics URL for per-MIG activity on A100/A30; empty disables.", "URL"),
    Setting("identity.nfd-file", _str, "NFD local feature file for gpulse.dev/ labels; empty disables.", "PATH"),
    Setting("limits.max-series", _Int(1, 200_000),
            "Cardinality ceiling per family; series beyond it are dropped and counted.", "N"),
    Setting("log.level", _choice("debug", "info", "warning", "error"), "Log level.", "LEVEL"),
    Setting("cost.price-file", _price_file,
            "YAML price table per GPU-hour (sku or model x cloud x kind); its rows add to or replace the built-in "
            "public list prices. Empty: the built-in table only.", "PATH"),
    Setting("cost.pricing-kind", parse_kind,
            "Pricing kind of this node's GPUs (on-demand, spot, reserved, ...); auto reads the node's capacity-type "
            "labels and falls back to on-demand.", "KIND"),
    Setting("cost.basis", _choice("allocation", "energy"),
            "What a pod's GPU cost follows: its allocated fraction of the GPU (the norm) or its share of the GPU's "
            "energy.", "BASIS"),
    Setting("cost.idle-threshold", _ratio,
            "A pod's GPU counts as idle while its utilization per allocated GPU stays under this.", "RATIO"),
) + tuple(
    Setting(f"collector.{name}", parse_bool, f"Collector {name}: {text}",
            aliases=("compat.dcgm",) if name == "dcgm_compat" else (), collector=name)
    for name, (_, text) in COLLECTORS.items()
)

BY_FLAG = {name: s for s in SETTINGS for name in (s.flag, *s.aliases)}
_PLAIN = {s.attr for s in SETTINGS if not s.collector}
assert _PLAIN | {"collectors"} == set(_DEFAULTS), "every Config field has exactly one setting"


def add_flags(parser: argparse.ArgumentParser, only: Optional[Iterable[str]] = None) -> None:
    """--flag VALUE for each setting (or those in `only`); booleans are switches too:
    --flag, --no-flag and --flag=true|false."""
    wanted = set(only) if only is not None else None
    group = parser.add_argument_group("settings (also GPULSE_* environment and --config.file keys)")
    for s in SETTINGS:
        if wanted is not None and s.flag not in wanted:
            continue
        dest = _dest(s)
        names = ["--" + s.flag, *("--" + a for a in s.aliases)]
        help_ = f"{s.help} (env {s.env}; default {describe_default(s)})"
        if s.is_bool:
            group.add_argument(*names, dest=dest, default=None, nargs="?", const="true", metavar="BOOL", help=help_)
            group.add_argument(*("--no-" + n[2:] for n in names), dest=dest, action="store_const", const="false",
                               help=argparse.SUPPRESS)
        else:
            group.add_argument(*names, dest=dest, default=None, metavar=s.metavar or None, help=help_)


def _dest(s: Setting) -> str:
    return "setting_" + _attr(s.flag)


def describe_default(s: Setting) -> str:
    d = s.default
    if isinstance(s.parse, _Duration):
        return format_duration(d)
    if isinstance(d, tuple):
        return ",".join(d) or "none"
    if isinstance(d, bool):
        return str(d).lower()
    if d == "":
        return "empty"
    return str(d)


def _load_yaml(path: str) -> dict[str, Any]:
    try:
        data = safeyaml.load_file(path)
    except OSError as exc:
        raise ConfigError(f"config.file: cannot read {path}: {exc.strerror or exc}") from None
    except safeyaml.YamlError as exc:
        raise ConfigError(f"config.file: {exc.at(path)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config.file: {path}: expected a mapping of setting names")
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[Any, Any]) -> None:
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and key not in BY_FLAG:
                walk(key, v)
            else:
                flat[key] = v
    walk("", data)
    for key in flat:
        if key not in BY_FLAG:
            raise ConfigError(f"config.file: {path}: unknown setting {_shorten(key)!r}")
    return {BY_FLAG[k].flag: v for k, v in flat.items()}


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def load(args: Optional[argparse.Namespace] = None, environ: Optional[Mapping[str, str]] = None) -> Config:
    """Build the Config from parsed flags (None when not given), env and YAML."""
    environ = os.environ if environ is None else environ
    given = {s.flag: getattr(args, _dest(s), None) for s in SETTINGS} if args else {}

    def raw_env(s: Setting) -> tuple[Optional[str], str]:
        for name in s.envs:
            if name in environ:
                return environ[name], name
        return None, ""

    cfg_path = given.get("config.file") or raw_env(BY_FLAG["config.file"])[0] or ""
    from_file = _load_yaml(cfg_path) if cfg_path else {}
    raw: dict[str, tuple[Any, str]] = {}
    for s in SETTINGS:
        value, origin = given.get(s.flag), f"--{s.flag}"
        if value is None:
            value, origin = raw_env(s)
        if value is None and s.flag in from_file:
            value, origin = from_file[s.flag], f"{cfg_path}: {s.flag}"
        if value is not None:
            raw[s.flag] = (value, origin)
    return _build(Config(), raw)


def with_overrides(cfg: Config, overrides: Mapping[str, Any], origin: str) -> Config:
    """`cfg` with settings replaced by flag name, validated like any other input (the
    simulated world hands its socket and file paths over this way)."""
    raw: dict[str, tuple[Any, str]] = {}
    for flag, value in overrides.items():
        if flag not in BY_FLAG:
            raise ConfigError(f"{origin}: unknown setting {flag!r}")
        raw[BY_FLAG[flag].flag] = (value, f"{origin}: {flag}")
    return _build(cfg, raw)


def _build(base: Config, raw: Mapping[str, tuple[Any, str]]) -> Config:
    values: dict[str, Any] = {}
    collectors = set(base.collectors)
    for flag, (value, origin) in raw.items():
        s = BY_FLAG[flag]
        if len(str(value)) > MAX_VALUE_CHARS:
            raise ConfigError(f"{origin}: value of {len(str(value))} characters (at most {MAX_VALUE_CHARS})")
        try:
            parsed = s.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{origin}: {' '.join(str(exc).split())}") from None
        if s.collector:
            (collectors.add if parsed else collectors.discard)(s.collector)
        else:
            values[s.attr] = parsed
    values["collectors"] = frozenset(collectors)
    cfg = dataclasses.replace(base, **values)
    _check_together(cfg)
    return cfg


def _check_together(cfg: Config) -> None:
    held = cfg.workloads_concurrency * cfg.workloads_max_body_bytes
    if held > WORKLOAD_BODY_BUDGET:
        raise ConfigError(f"--workloads.concurrency ({cfg.workloads_concurrency}) x --workloads.max-body-bytes "
                          f"({cfg.workloads_max_body_bytes}) is {held} bytes of bodies held at once, more than the "
                          f"{WORKLOAD_BODY_BUDGET}-byte budget: lower one of them")
    interval, window = cfg.collect_interval, cfg.collect_window
    if window < interval:
        raise ConfigError(f"--collect.window ({format_duration(window)}) must be at least --collect.interval "
                          f"({format_duration(interval)})")
    if window / interval > WINDOW_SAMPLES:
        raise ConfigError(f"--collect.window ({format_duration(window)}) holds more than {WINDOW_SAMPLES} ticks of "
                          f"--collect.interval ({format_duration(interval)}): lengthen the interval or shorten "
                          "the window")
