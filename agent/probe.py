"""`gpulse probe URL`: what the agent would read from one inference endpoint, once.

The first thing to run when setting up autoscaling: point it at a server's /metrics and it
shows the server gpulse detects (or why none), per model the queue depth, running requests
and KV-cache usage that would become gpulse_workload_* series, and the warnings the agent
would log. The endpoint is fetched and mapped by the agent's own scraper
(gpulse.workloads.scrape.scrape with a ScrapeTarget built from the URL), so what this
prints is what the agent reads; only the timeout differs (the agent's default is
--workloads.scrape-timeout 0.5s; a slower answer is warned about).

Exit status: 0 read, 1 the fetch or the mapping failed (one line naming the URL and why),
2 bad input (a URL that is not http://host[:port][/path], an unknown --server, a bad timeout).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from .config import Config
from .workloads import adapters
from .workloads.discovery import DEFAULT_PATH, ScrapeTarget
from .workloads.scrape import EndpointResult, scrape

DEFAULT_TIMEOUT = 5.0
TIMEOUT_BOUNDS = (0.01, 60.0)  # the agent's --workloads.scrape-timeout accepts the same range
_DEFAULTS = Config()
AGENT_TIMEOUT = _DEFAULTS.workloads_scrape_timeout
MAX_BODY = _DEFAULTS.workloads_max_body_bytes
SIGNALS = ("queue_depth", "running_requests", "kv_cache_usage")
_HEADINGS = {"queue_depth": "QUEUE", "running_requests": "RUNNING", "kv_cache_usage": "KV CACHE"}
NO_MODEL = "(no model label)"


class ProbeInputError(ValueError):
    """Bad input: one line, exit 2."""


@dataclass(frozen=True)
class ProbeReport:
    url: str  # what was fetched (a bare http://host:port gets the agent's default /metrics)
    server: str  # the adapter used; "" when none was detected
    server_given: bool  # named with --server rather than detected
    result: EndpointResult
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The stable --json object."""
        r = self.result
        models = [{"model": s.model, **{sig: getattr(s, sig) for sig in SIGNALS}} for s in r.states] if r.up else []
        return {"url": self.url, "server": self.server or None, "up": r.up, "error": r.error or None,
                "duration_seconds": round(r.duration, 6), "models": models, "warnings": list(self.warnings)}


def target_for_url(url: str, server: str = "") -> tuple[ScrapeTarget, str]:
    """(ScrapeTarget, the URL as fetched) for http://host[:port][/path][?query]; ProbeInputError."""
    if server and server not in adapters.BY_SERVER:
        raise ProbeInputError(f"--server {server!r}: unknown server (one of {', '.join(sorted(adapters.BY_SERVER))})")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ProbeInputError(f"{url!r}: a URL has no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ProbeInputError(f"{url}: not a URL: {exc}") from None
    if parts.scheme.lower() != "http":
        hint = " (the agent scrapes inference servers over plain HTTP)" if parts.scheme.lower() == "https" else ""
        raise ProbeInputError(f"{url}: expected http://host:port/path{hint}")
    if not parts.hostname:
        raise ProbeInputError(f"{url}: no host (expected http://host:port/path)")
    if parts.username is not None or parts.password is not None:
        raise ProbeInputError(f"{url}: credentials in the URL are not supported (the agent scrapes without them)")
    if parts.fragment:
        raise ProbeInputError(f"{url}: a fragment (#...) is not part of what is fetched")
    if port == 0:
        raise ProbeInputError(f"{url}: port 0 is not a port")
    try:
        host = parts.hostname.encode("idna").decode("ascii")  # as the connect resolves it; ASCII for Host:
    except UnicodeError:
        raise ProbeInputError(f"{url}: {parts.hostname!r} is not a host name") from None
    port = port or 80
    path = parts.path or DEFAULT_PATH
    if parts.query:
        path += "?" + parts.query
    target = ScrapeTarget("", "", "", host, port, path, server)
    return target, target.url


def probe(url: str, server: str = "", timeout: float = DEFAULT_TIMEOUT, max_body: int = MAX_BODY) -> ProbeReport:
    """Fetch `url` once through the agent's scraper; ProbeInputError for bad input."""
    if not (TIMEOUT_BOUNDS[0] <= timeout <= TIMEOUT_BOUNDS[1]) or math.isnan(timeout):
        raise ProbeInputError(f"--timeout {timeout:g}: expected {TIMEOUT_BOUNDS[0]:g} to {TIMEOUT_BOUNDS[1]:g} seconds")
    target, fetched = target_for_url(url, server)
    result = scrape(target, timeout, max_body)
    warnings = list(result.warnings)
    if result.up:
        if result.duration > AGENT_TIMEOUT:
            warnings.append(f"the answer took {result.duration:.2f}s, longer than the agent's default "
                            f"--workloads.scrape-timeout of {AGENT_TIMEOUT:g}s: the agent would mark it down")
        for s in result.states:
            if s.queue_depth is None:
                who = f"model {s.model!r}" if s.model else "this endpoint"
                warnings.append(f"{who}: no queue depth (waiting requests) in this text: "
                                f"gpu_queue_depth will be missing for it; check the server's version and flags")
    return ProbeReport(fetched, result.server if result.up else server, bool(server), result, tuple(warnings))


def _value(signal: str, value: Optional[float]) -> str:
    if value is None:
        return "-"
    if signal == "kv_cache_usage":
        return format(value, ".3g")
    return str(int(value)) if float(value).is_integer() else format(value, "g")


def render_text(report: ProbeReport) -> str:
    """The human output: one line for the server, a table of models, the warnings."""
    r = report.result
    how = "given with --server" if report.server_given else "detected from its metric names"
    n = len(r.states)
    lines = [f"{report.url}: {report.server} ({how}), {n} model{'s' if n != 1 else ''}, "
             f"answered in {r.duration * 1000:.0f} ms"]
    rows = [("MODEL", *(_HEADINGS[s] for s in SIGNALS))]
    rows += [(adapters.printable(s.model) or NO_MODEL, *(_value(sig, getattr(s, sig)) for sig in SIGNALS))
             for s in r.states]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    lines += [f"warning: {adapters.printable(w)}" for w in report.warnings]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="the server's metrics endpoint, http://host:port/path "
                                                   f"(path {DEFAULT_PATH} when omitted)")
    parser.add_argument("--server", default="", metavar="NAME",
                        help="read it as this server instead of detecting it (as the gpulse.dev/server "
                             f"annotation does): {', '.join(sorted(adapters.BY_SERVER))}")
    parser.add_argument("--timeout", default=str(DEFAULT_TIMEOUT), metavar="S",
                        help=f"seconds for the whole fetch (default {DEFAULT_TIMEOUT:g}; the agent's own "
                             f"default is {AGENT_TIMEOUT:g})")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: url, server, up, error, duration_seconds, "
                             "models [{model, queue_depth, running_requests, kv_cache_usage}], warnings")


def main(args: argparse.Namespace) -> int:
    try:
        try:
            timeout = float(args.timeout.removesuffix("s"))
        except ValueError:
            raise ProbeInputError(f"--timeout {args.timeout!r}: expected seconds, e.g. 5 or 0.5") from None
        report = probe(args.url, args.server, timeout)
    except ProbeInputError as exc:
        print(f"gpulse probe: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    elif report.result.up:
        print(render_text(report))
    else:
        print(f"gpulse probe: {report.url}: {adapters.printable(report.result.error)}", file=sys.stderr)
    return 0 if report.result.up else 1
