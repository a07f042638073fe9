"""The attack suite's world: a real `gpulse serve` process on a simulated reference node,
plus well-behaved and hostile inference endpoints and pushers in this process, all on
loopback. Every attack is bounded in count and time and stops by itself.

The agent is the installed CLI (`python -m gpulse serve`), or GPULSE_ATTACK_AGENT (a command
line, e.g. an older checkout's gpulse) so that bench/attack_figures.py can measure the same
attacks on another build. Its scenario is the reference node (8 x H100, 64 vLLM pods
simulated in its process) plus pods whose endpoints live here:

  good-00..good-39   vLLM expositions whose queue depth is this process' clock in tenths
                     of a second, so the agent's value says how fresh its data is;
  slot-0..slot-7     endpoints whose behaviour a test sets: good, trickle (one header byte
                     every 0.3 s), huge (a valid 6 MB body with 100,000 models), big (a valid
                     8 MB body, with or without Content-Length);
  batch/victim, batch/attacker   pods that push (processes started here, put in the pods'
                     cgroups in the agent's simulated /proc).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "agent" / "sim" / "scenarios" / "reference.yaml"
GOOD_PODS = 40
SLOTS = 8
MIB = 1024 * 1024
RSS_LIMIT_MIB = 100  # the bound; the DaemonSet's limit is 128 Mi
VICTIM_UID = "5f0c6a8e-1b2d-4c3e-8f4a-000000000001"
ATTACKER_UID = "5f0c6a8e-1b2d-4c3e-8f4a-000000000002"
BYSTANDER_UID = "5f0c6a8e-1b2d-4c3e-8f4a-000000000003"
CONTAINER_ID = "c" * 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- endpoints served from this process ------------------------------------------------------
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def vllm_body(models: dict[str, float]) -> bytes:
    lines = ["# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
             "# TYPE vllm:num_requests_waiting gauge"]
    lines += [f'vllm:num_requests_waiting{{model_name="{m}"}} {v}' for m, v in models.items()]
    lines += ["# HELP vllm:num_requests_running Number of requests currently running on GPU.",
              "# TYPE vllm:num_requests_running gauge"]
    lines += [f'vllm:num_requests_running{{model_name="{m}"}} 1.0' for m in models]
    return ("\n".join(lines) + "\n").encode()


def huge_body(models: int = 100_000) -> bytes:
    """A valid exposition with `models` model labels (~6 MB at 100,000)."""
    return vllm_body({f"model-{i:06d}": 1.0 for i in range(models)})


class Endpoints:
    """good-NN and slot-N endpoints; queue depth = tenths of a second since start."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.modes = {f"slot-{i}": "good" for i in range(SLOTS)}
        self.stop = threading.Event()
        self._huge = huge_body()
        self._wide = huge_body(17_000)  # as many models as fit under the default 2 MiB body limit
        # valid, and mostly families no adapter reads (as a busy server's /metrics is)
        filler = b"".join(b'http_requests_total{handler="/api/v1/h%07d",code="200"} 1\n' % i
                          for i in range(8 * MIB // 56))
        self._big = vllm_body({"m": 1.0}) + b"# TYPE http_requests_total counter\n" + filler
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                name = self.path.strip("/").split("/")[0]
                mode = endpoints.modes.get(name, "good")
                try:
                    if mode == "trickle":
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        while not endpoints.stop.wait(0.3):
                            self.wfile.write(b"a")
                            self.wfile.flush()
                        return
                    if mode in ("huge", "wide", "big", "big-chunked"):
                        body = {"huge": endpoints._huge, "wide": endpoints._wide}.get(mode, endpoints._big)
                        self.send_response(200)
                        self.send_header("Content-Type", "text/plain; version=0.0.4")
                        if mode == "big-chunked":
                            self.send_header("Connection", "close")
                        else:
                            self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        for i in range(0, len(body), 256 * 1024):
                            self.wfile.write(body[i:i + 256 * 1024])
                        self.close_connection = mode == "big-chunked"
                        return
                    body = vllm_body({"m": endpoints.now()})
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the agent hung up (its deadline or body limit): as it should

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name="attack-endpoints")
        self._thread.start()

    def now(self) -> float:
        return float(int((time.monotonic() - self.t0) * 10))

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def scenario(port: int, directory: Path) -> Path:
    """The reference node plus the pods whose endpoints and pushers live in this process."""
    data = yaml.safe_load(REFERENCE.read_text())

    def pod(ns: str, name: str, path: str = "", uid: str = "") -> dict:
        p: dict = {"namespace": ns, "name": name, "containers": [{"name": "main"}]}
        if uid:
            p["uid"] = uid
        if path:
            p["annotations"] = {"gpulse.dev/scrape": "true", "gpulse.dev/port": str(port),
                                "gpulse.dev/path": path, "gpulse.dev/server": "vllm"}
        return p

    data["pods"] += [pod("good", f"good-{i:02d}", f"/good-{i:02d}/metrics") for i in range(GOOD_PODS)]
    data["pods"] += [pod("hostile", f"slot-{i}", f"/slot-{i}/metrics") for i in range(SLOTS)]
    data["pods"] += [pod("batch", "victim", uid=VICTIM_UID), pod("batch", "attacker", uid=ATTACKER_UID),
                     pod("batch", "bystander", uid=BYSTANDER_UID)]
    data["name"] = "attack"
    path = directory / "attack.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the agent process ------------------------------------------------------------------------
def agent_command() -> list[str]:
    override = os.environ.get("GPULSE_ATTACK_AGENT")
    return shlex.split(override) if override else [sys.executable, "-m", "gpulse"]


@dataclass
class Metrics:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def get(self, name: str, **labels: str) -> Optional[float]:
        for (n, lab), v in self.samples.items():
            if n == name and all(dict(lab).get(k) == val for k, val in labels.items()):
                return v
        return None

    def all(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {lab: v for (n, lab), v in self.samples.items() if n == name}


class Agent:
    """`gpulse serve` on the attack scenario, with its log in `directory`."""

    def __init__(self, directory: Path, *extra: str, env: Optional[dict] = None) -> None:
        self.directory = directory
        self.endpoints = Endpoints()
        self.scenario = scenario(self.endpoints.port, directory)
        self.port = free_port()
        self.log_path = directory / "agent.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*agent_command(), "serve", "--nvml.backend=fake", f"--scenario={self.scenario}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=info", *extra],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})})
        self.push_socket = ""
        self.procfs = ""
        self._pushers: list[subprocess.Popen] = []
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    # --- lifecycle ---
    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the agent exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            m = re.search(r"push service listening on unix:(\S+)", self.log())
            if m and not self.push_socket:
                self.push_socket = m.group(1)
                self.procfs = str(Path(self.push_socket).parent / "proc")
            try:
                good = self.metrics().all("gpulse_workload_scrape_up")
                fresh = sum(1 for lab, v in good.items() if dict(lab).get("namespace") == "good" and v == 1)
                if fresh == GOOD_PODS and self.push_socket:
                    return
            except (OSError, http.client.HTTPException, AssertionError):
                pass  # not listening yet, or no tick done
            time.sleep(0.5)
        raise AssertionError(f"the agent did not scrape the good pods within {timeout:g}s:\n{self.log()[-3000:]}")

    def close(self) -> None:
        for p in self._pushers:
            p.kill()
            p.wait(10)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        self.endpoints.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # --- what it says -----------------------------------------------------------------------
    def get(self, path: str = "/metrics", headers: Optional[dict] = None, timeout: float = 5.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def metrics(self, attempts: int = 1) -> Metrics:
        from gpulse.kernels import parse_exposition

        for i in range(attempts):
            try:
                status, body = self.get()
                if status == 200:
                    expo = parse_exposition(body)
                    return Metrics({(n, lab): v for n, lab, v, _ts in expo.samples})
            except (OSError, http.client.HTTPException):
                if i == attempts - 1:
                    raise
            time.sleep(0.5)
        raise AssertionError("no /metrics answer")

    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory of the agent process, from /proc."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in status.splitlines())
              if k in ("VmRSS", "VmHWM")}
        return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024

    def ticks(self) -> tuple[float, float]:
        m = self.metrics(attempts=10)
        return m.get("gpulse_ticks_total") or 0.0, m.get("gpulse_ticks_missed_total") or 0.0

    def staleness(self) -> dict[str, float]:
        """Seconds behind each good pod's own clock, as the agent reports its queue depth
        (inf when it reports none)."""
        now = self.endpoints.now()
        depth = self.metrics(attempts=10).all("gpulse_workload_queue_depth")
        reported = {dict(lab)["pod"]: v for lab, v in depth.items() if dict(lab).get("namespace") == "good"}
        return {f"good-{i:02d}": (now - reported[f"good-{i:02d}"]) / 10 if f"good-{i:02d}" in reported
                else float("inf") for i in range(GOOD_PODS)}

    # --- pushing processes in pods ----------------------------------------------------------
    def pusher(self, pod_uid: Optional[str], script: str, *args: str) -> subprocess.Popen:
        """A Python process running `script` (reads a 'go' line first), put in the pod
        `pod_uid`'s container cgroup in the agent's simulated /proc (None: in no pod)."""
        proc = subprocess.Popen([sys.executable, "-c", script, self.push_socket, *args], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._pushers.append(proc)
        if pod_uid is not None:
            d = Path(self.procfs) / str(proc.pid)
            d.mkdir(exist_ok=True)
            uid = pod_uid.replace("-", "_")
            (d / "cgroup").write_text(f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/"
                                      f"cri-containerd-{CONTAINER_ID}.scope\n")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        return proc


    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Health:
    """What a test asserts after its attack."""
    rss_mib: float
    peak_mib: float
    ticks: float
    missed: float
    expected_ticks: float
    stale_max: float
    cpu_seconds: float

    def summary(self) -> str:
        return (f"RSS {self.rss_mib:.1f} MiB (peak {self.peak_mib:.1f}), ticks {self.ticks:.0f} of "
                f"{self.expected_ticks:.0f} expected, {self.missed:.0f} missed, good workloads at most "
                f"{self.stale_max:.1f} s behind, agent CPU {self.cpu_seconds:.1f} s")


class Window:
    """Ticks and time across an attack."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.t0 = time.monotonic()
        self.ticks0, self.missed0 = agent.ticks()
        self.cpu0 = agent.cpu_seconds()

    def health(self) -> Health:
        ticks, missed = self.agent.ticks()
        rss, peak = self.agent.rss_mib()
        stale = self.agent.staleness()
        return Health(rss, peak, ticks - self.ticks0, missed - self.missed0, time.monotonic() - self.t0,
                      max(stale.values()), self.agent.cpu_seconds() - self.cpu0)


def assert_healthy(agent: Agent, window: Window, rss_limit: float = RSS_LIMIT_MIB, stale_limit: float = 6.0) -> Health:
    """RSS within the bound, the tick cadence kept (at most a few ticks missed, none lost), and
    every well-behaved workload's data fresh."""
    time.sleep(1.0)  # one more tick and scrape round after the attack stopped
    h = window.health()
    assert h.rss_mib <= rss_limit, f"RSS past {rss_limit} MiB: {h.summary()}"
    assert h.missed <= 3 and h.ticks >= 0.7 * h.expected_ticks - 2, f"tick cadence broken: {h.summary()}"
    assert h.stale_max <= stale_limit, f"well-behaved workloads stale: {h.summary()}\n{agent.log()[-2000:]}"
    return h


def run_for(seconds: float, fn, *, threads: int = 1) -> int:
    """fn() in `threads` threads, repeatedly, for `seconds`; -> calls made."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def loop(i: int) -> None:
        while time.monotonic() < stop:
            try:
                fn()
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.01)
            counts[i] += 1

    ts = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 30)
    return sum(counts)


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="gpulse-attack-", dir="/tmp"))


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2))
