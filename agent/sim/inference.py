"""Simulated inference servers: real HTTP on loopback, each server's own exposition.

`start_inference_servers(scenario, clock)` serves every scenario pod that has a workload
(and does not push) at its own path on one ThreadingHTTPServer on 127.0.0.1, so the
agent's discovery, HTTP scrape, parser and adapters run unchanged. Values come from the
pod's WorkloadSpec traces at `clock()` scenario seconds, shaped as the real server would
give them: counts as non-negative integers, the KV cache as a 0-1 ratio, and only the
signals that server has (TGI and Triton have no KV-cache gauge, Triton no running count).
Formats follow the metric names, labels and types of the real servers at the pod's
`version` (gpulse.sim.expositions; tests/fixtures/exposition/ holds their published texts),
and each body comes with its truth: what the text means, which a test compares gpulse to.

Pods with `push: true` are reported over the agent's push socket instead (when
`push_socket` is given), each by a process of its own (gpulse.sim.pusher) that the
simulated /proc under `proc_root` puts in the pod's first container cgroup, so the agent's
peer attestation sees a process of that pod, as on a node. A thread here computes the
values from the traces at `clock()` and hands them to the pusher processes.

Pods with `startup:` (gpulse.sim.lifecycle) get a port of their own, bound from the start
but listened on only while their server answers: a scrape before the model is loaded, or
during a crash's back-off, is refused as a real server's port refuses it (vLLM binds its
port early and serves only once the engine is built). Their request counters start at 0
with each run and grow from the first request; /health and /v2/health/ready answer 200
once the model is ready (503 before). `handle.sync(t)` opens and closes those ports; the
world calls it as scenario time passes.

Test hooks: handle.set_fault((namespace, pod), "hang" | "error" | "garbage" | None).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

from . import expositions
from .lifecycle import Timeline

if TYPE_CHECKING:
    from .scenario import PodSpec, Scenario, WorkloadSpec
    from .traces import Trace


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops connects when the agent scrapes in parallel

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up without reading a 503 resets the connection; a server says
        # nothing of it (socketserver would print a traceback).
        log.debug("sim inference: request from %s failed", client_address, exc_info=True)

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEALTH_PATHS = ("/health", "/v2/health/ready")  # vLLM, TGI, SGLang, trtllm-serve; Triton
GARBAGE_BYTES = 10 * 1024 * 1024
FAULTS = ("hang", "error", "garbage")


def serve(workload: WorkloadSpec, t: float, served: Optional[int] = None) -> tuple[str, expositions.Truth]:
    """(body, truth) the simulated server of `workload` serves at scenario time t."""
    values = {}
    for signal in expositions.SIGNALS:
        trace: Optional[Trace] = getattr(workload, signal)
        if trace is None:
            continue
        v = trace.at(t)
        values[signal] = min(1.0, max(0.0, v)) if signal == "kv_cache_usage" else float(max(0, round(v)))
    return expositions.render(workload.server, workload.version, workload.model, values, t, served,
                              workload.tensor_parallel, workload.data_parallel)


def expected_model(workload: WorkloadSpec) -> str:
    """The model the simulated server names (TGI serves one model and names none)."""
    (model,) = serve(workload, 0.0)[1]
    return model


def expected_values(workload: WorkloadSpec, t: float) -> dict[str, float]:
    """What the simulated server reports at scenario time t: {signal: value}, known only."""
    (values,) = serve(workload, t)[1].values()
    return values


def render_unloaded(server: str) -> str:
    """What a server that answers before its model is loaded serves meanwhile: Triton its
    GPU and CPU families (the per-model ones come with the model), others nothing yet."""
    lines: list[str] = []
    if server in ("triton", "trtllm"):
        expositions.family(lines, "nv_gpu_utilization", "gauge", "GPU utilization rate [0.0 - 1.0)",
                           [("", (("gpu_uuid", "GPU-00000000-0000-0000-0000-000000000000"),), 0.0)])
        expositions.family(lines, "nv_cpu_utilization", "gauge", "CPU utilization rate [0.0 - 1.0]",
                           [("", (), 0.05)])
    return "\n".join(lines) + "\n" if lines else ""


class _Listener:
    """One starting pod's server port: bound for the pod's life, listening only while its
    server answers (connections to a bound port nobody listens on are refused)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], timeline: Timeline) -> None:
        self.handler = handler
        self.timeline = timeline
        self._sock = self._bind(0)
        self.port: int = self._sock.getsockname()[1]
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def sync(self, t: float) -> None:
        answering = self.timeline.answering(t)
        if answering and self._server is None:
            server = _Server(("127.0.0.1", self.port), self.handler, bind_and_activate=False)
            server.socket.close()
            server.socket = self._sock
            server.server_activate()
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"sim-pod-{self.port}", daemon=True)
            self._thread.start()
        elif not answering and self._server is not None:
            self._close()
            self._sock = self._bind(self.port)

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def stop(self) -> None:
        self._close()
        self._sock.close()


@dataclass
class InferenceHandle:
    host: str
    port: int
    endpoints: dict[tuple[str, str], tuple[str, int, str]]  # (namespace, pod) -> (host, port, path)
    _server: ThreadingHTTPServer
    _stopping: threading.Event
    _faults: dict[tuple[str, str], str] = field(default_factory=dict)  # (namespace, pod) -> mode
    _threads: list[threading.Thread] = field(default_factory=list)
    _listeners: list[_Listener] = field(default_factory=list)

    def sync(self, t: float) -> None:
        """Open and close the starting pods' ports for scenario time t."""
        for listener in self._listeners:
            listener.sync(t)

    def set_fault(self, key: tuple[str, str], mode: Optional[str]) -> None:
        if mode is not None and mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r} (one of {', '.join(FAULTS)})")
        if mode is None:
            self._faults.pop(key, None)
        else:
            self._faults[key] = mode

    def stop(self) -> None:
        self._stopping.set()  # releases hung handlers
        self._server.shutdown()
        self._server.server_close()
        for listener in self._listeners:
            listener.stop()
        for t in self._threads:
            t.join(timeout=5)


def start_inference_servers(scenario: Scenario, clock: Callable[[], float], push_socket: str = "",
                            push_interval: float = 0.5, proc_root: str = "") -> InferenceHandle:
    pods: dict[str, tuple[tuple[str, str], WorkloadSpec]] = {}  # path -> ((namespace, pod), WorkloadSpec)
    timelines: dict[str, Timeline] = {}  # path -> the timeline of a pod that starts while the scenario runs
    own_ports: dict[int, str] = {}  # a starting pod's own port -> its path
    pushers: list[PodSpec] = []
    for pod in scenario.pods:
        w = pod.workload
        if w is None:
            continue
        if w.push:
            pushers.append(pod)
            continue
        path = f"/pods/{quote(pod.namespace, safe='')}/{quote(pod.name, safe='')}/metrics"
        pods[path] = ((pod.namespace, pod.name), w)
        if pod.startup is not None:
            timelines[path] = Timeline(pod.startup)
    stopping = threading.Event()
    faults: dict[tuple[str, str], str] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            address = self.server.server_address
            own = own_ports.get(address[1]) if isinstance(address, tuple) else None
            if own is not None:  # a starting pod's own port: /metrics and its health endpoints
                if route in HEALTH_PATHS:
                    self._status(200 if timelines[own].ready(clock()) else 503)
                    return
                route = own if route == "/metrics" else ""
            entry = pods.get(route)
            if entry is None:
                self.send_error(404)
                return
            key, w = entry
            fault = faults.get(key)
            if fault == "hang":
                stopping.wait(60)
                return
            if fault == "error":
                self.send_error(500, "simulated failure")
                return
            if fault == "garbage":
                self._garbage()
                return
            t = clock()
            timeline = timelines.get(route)
            if timeline is None:
                body = serve(w, t)[0].encode()
            elif timeline.ready(t):
                body = serve(w, t, served=timeline.requests(t))[0].encode()
            else:
                body = render_unloaded(w.server).encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _status(self, code: int) -> None:
            body = b"{}" if code == 200 else b'{"error":"model not ready"}'
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _garbage(self) -> None:
            # no Content-Length: the reader must enforce its own limit while streaming
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = bytes(range(256)) * 256
            try:
                for _ in range(GARBAGE_BYTES // len(chunk)):
                    if stopping.is_set():
                        break
                    self.wfile.write(chunk)
            except OSError:
                pass  # the scraper hung up at its limit, as it should
            self.close_connection = True

        def log_message(self, fmt: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    assert isinstance(host, str)  # an AF_INET server: (host, port)
    endpoints = {key: (host, port, path) for path, (key, _w) in pods.items()}
    handle = InferenceHandle(host, port, endpoints, server, stopping, faults)
    for path, timeline in timelines.items():
        listener = _Listener(Handler, timeline)
        own_ports[listener.port] = path
        endpoints[pods[path][0]] = (host, listener.port, "/metrics")
        handle._listeners.append(listener)
    handle.sync(clock())
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="sim-inference", daemon=True)
    t.start()
    handle._threads.append(t)
    if pushers and push_socket:
        procs = [_start_pusher(scenario, pod, push_socket, proc_root) for pod in pushers]
        p = threading.Thread(target=_push_loop, args=(list(zip(pushers, procs, strict=True)), clock, push_interval,
                                                      stopping),
                             name="sim-pusher", daemon=True)
        p.start()
        handle._threads.append(p)
    return handle


def _start_pusher(scenario: Scenario, pod: PodSpec, socket_path: str, proc_root: str) -> subprocess.Popen[str]:
    """A pusher process for `pod`, put in the pod's first container in the simulated /proc
    (a PID that the scenario's own processes already use is not taken: start another)."""
    from .proctree import cgroup_file, pod_cgroup_path, write_process

    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-m", "gpulse.sim.pusher", socket_path], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True)
        if not proc_root:
            return proc
        if not os.path.exists(os.path.join(proc_root, str(proc.pid))):
            container = pod.containers[0].container_id if pod.containers else "0" * 64
            path = pod_cgroup_path(scenario.cgroup, pod.qos, pod.uid, container)
            write_process(proc_root, proc.pid, cgroup_file(scenario.cgroup.version, path), 10_000 + proc.pid,
                          "pusher")
            return proc
        _end(proc)
    raise RuntimeError("no free PID for a simulated pusher process")


def _end(proc: subprocess.Popen[str]) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(5)


def _push_loop(pushers: Sequence[tuple[PodSpec, subprocess.Popen[str]]], clock: Callable[[], float],
               interval: float, stopping: threading.Event) -> None:
    try:
        while not stopping.is_set():
            t = clock()
            for pod, proc in pushers:
                workload = pod.workload
                assert workload is not None  # pushers are pods whose workload pushes
                values: dict[str, Trace] = {
                    s: v for s, v in ((s, getattr(workload, s)) for s in ("queue_depth", "running_requests"))
                    if v is not None}
                if "queue_depth" not in values or proc.stdin is None:
                    continue
                line = {"namespace": pod.namespace, "pod": pod.name, "server": workload.server,
                        "model": workload.model, "queue_depth": float(max(0, round(values["queue_depth"].at(t)))),
                        "running_requests": float(max(0, round(values["running_requests"].at(t))))
                        if "running_requests" in values else None}
                try:
                    proc.stdin.write(json.dumps(line) + "\n")
                    proc.stdin.flush()
                except OSError as exc:
                    log.debug("sim pusher: %s/%s: %s", pod.namespace, pod.name, exc)
            stopping.wait(interval)
    finally:
        for _pod, proc in pushers:
            _end(proc)
