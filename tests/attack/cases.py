"""The attacks, each bounded in count and time, returning what was measured. The tests in
this folder assert on them; bench/attack_figures.py prints them for any build."""

from __future__ import annotations

import http.client
import os
import socket
import time

from tests.attack.harness import ATTACKER_UID, BYSTANDER_UID, SLOTS, VICTIM_UID, Agent, run_for

# --- HTTP ------------------------------------------------------------------------------------


def header_flood(agent: Agent, seconds: float = 10.0, clients: int = 20) -> dict:
    """20 concurrent requests, each with 17 headers of 60 KB (the issue's figures)."""
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-Flood-%d: %s\r\n" % (i, b"a" * 60_000)
                                                             for i in range(17)) + b"\r\n"
    statuses: dict[str, int] = {}

    def one() -> None:
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
            try:
                s.sendall(head)
                answer = s.recv(64)
            except OSError:
                answer = b"reset"
            key = answer[9:12].decode(errors="replace") if answer.startswith(b"HTTP/") else "closed"
            statuses[key] = statuses.get(key, 0) + 1
    requests = run_for(seconds, one, threads=clients)
    return {"requests": requests, "answers": statuses}


def slowloris(agent: Agent, seconds: float = 10.0, connections: int = 500) -> dict:
    """Connections that send a header byte a second and never finish, while a scraper
    scrapes; -> its successes, the agent's open fds at the peak."""
    socks: list[socket.socket] = []
    for _ in range(connections):
        try:
            s = socket.create_connection(("127.0.0.1", agent.port), timeout=2)
            s.sendall(b"GET /metrics HTTP/1.1\r\nX-A: ")
            socks.append(s)
        except OSError:
            break
    ok = failed = 0
    peak_fds = 0
    end = time.monotonic() + seconds
    next_byte = time.monotonic()
    while time.monotonic() < end:
        if time.monotonic() >= next_byte:
            for s in socks:
                try:
                    s.send(b"a")
                except OSError:
                    pass
            next_byte += 1.0
        try:
            status, _ = agent.get(timeout=3)
            ok += status == 200
            failed += status != 200
        except (OSError, http.client.HTTPException):
            failed += 1
        peak_fds = max(peak_fds, len(os.listdir(f"/proc/{agent.proc.pid}/fd")))
        time.sleep(0.3)
    for s in socks:
        s.close()
    return {"connections": len(socks), "scrapes_ok": ok, "scrapes_failed": failed, "agent_fds_peak": peak_fds}


def accept_bomb(agent: Agent, seconds: float = 10.0, clients: int = 20) -> dict:
    """20 clients sending 65 KB Accept headers as fast as they can."""
    accept = ",".join(f"application/x-{i};q=0.{i % 9 + 1}" for i in range(3300))[:65_000]
    done = run_for(seconds, lambda: agent.get(headers={"Accept": accept}, timeout=5), threads=clients)
    return {"requests": done}


def debug_snapshot(agent: Agent, requests: int = 20) -> dict:
    sizes, statuses = [], []
    for _ in range(requests):
        status, body = agent.get("/debug/snapshot", timeout=10)
        statuses.append(status)
        sizes.append(len(body))
    return {"statuses": sorted(set(statuses)), "bytes": max(sizes)}


def disconnects(agent: Agent, n: int = 50) -> dict:
    """Clients that hang up mid-request or mid-response (with a reset)."""
    for i in range(n):
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" if i % 2 else b"GET /met")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(1.0)
    return {"tracebacks": agent.log().count("Traceback")}


# --- workload endpoints ---------------------------------------------------------------------
def set_slots(agent: Agent, mode: str, n: int = SLOTS) -> None:
    for i in range(SLOTS):
        agent.endpoints.modes[f"slot-{i}"] = mode if i < n else "good"


def hostile_endpoints(agent: Agent, mode: str, n: int, seconds: float = 15.0) -> dict:
    """n endpoints in `mode` for `seconds`, then back to good; -> how the agent saw them."""
    set_slots(agent, mode, n)
    if mode == "big":
        for i in range(0, n, 2):  # half of them without Content-Length: cut while streaming
            agent.endpoints.modes[f"slot-{i}"] = "big-chunked"
    peak = 0.0
    stale_max = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(1.0)
        peak = max(peak, agent.rss_mib()[0])
        stale_max = max(stale_max, max(agent.staleness().values()))
    up = agent.metrics(attempts=10).all("gpulse_workload_scrape_up")
    hostile_up = sorted(v for lab, v in up.items() if dict(lab).get("namespace") == "hostile")
    set_slots(agent, "good")
    return {"rss_peak_mib_sampled": round(peak, 1), "good_stale_max_s": round(stale_max, 1),
            "hostile_scrape_up": hostile_up[:n]}


# --- push -----------------------------------------------------------------------------------
FLOOD = """
import sys, grpc
from concurrent import futures
from gpulse.workloads import push_pb2
sys.stdin.readline()
n = int(sys.argv[2])
with grpc.insecure_channel("unix:" + sys.argv[1]) as ch:
    call = ch.unary_unary("/gpulse.push.v1.QueueDepth/Report",
                          request_serializer=push_pb2.ReportRequest.SerializeToString,
                          response_deserializer=push_pb2.ReportReply.FromString)
    req = push_pb2.ReportRequest(namespace="batch", pod="attacker", model="m", queue_depth=1)
    fs = [call.future(req, timeout=20) for _ in range(n)]
    codes = {}
    for f in fs:
        try:
            f.result(); c = "OK"
        except grpc.RpcError as e:
            c = e.code().name
        codes[c] = codes.get(c, 0) + 1
print(" ".join(f"{k}={v}" for k, v in sorted(codes.items())), flush=True)
"""

PUSH = """
import sys, grpc, time
from gpulse.workloads import push_pb2
sys.stdin.readline()
ns, pod, model, value = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
with grpc.insecure_channel("unix:" + sys.argv[1]) as ch:
    call = ch.unary_unary("/gpulse.push.v1.QueueDepth/Report",
                          request_serializer=push_pb2.ReportRequest.SerializeToString,
                          response_deserializer=push_pb2.ReportReply.FromString)
    for m in model.split(","):
        t = time.monotonic()
        try:
            call(push_pb2.ReportRequest(namespace=ns, pod=pod, model=m, queue_depth=value), timeout=10)
            print("OK", round(time.monotonic() - t, 3), flush=True)
        except grpc.RpcError as e:
            print(e.code().name, round(time.monotonic() - t, 3), e.details()[:200], flush=True)
"""


def push(agent: Agent, uid: str | None, ns: str, pod: str, models: str = "m", value: float = 7) -> list[str]:
    proc = agent.pusher(uid, PUSH, ns, pod, models, str(value))
    out, _ = proc.communicate(timeout=120)
    return out.splitlines()


def push_flood(agent: Agent, processes: int = 5, per_process: int = 1000) -> dict:
    """5,000 RPCs in flight from the attacker pod; meanwhile a bystander pushes once."""
    floods = [agent.pusher(ATTACKER_UID, FLOOD, str(per_process)) for _ in range(processes)]
    time.sleep(1.0)
    peak = 0.0
    legit = push(agent, BYSTANDER_UID, "batch", "bystander", "legit", 3)
    peak = max(peak, agent.rss_mib()[0])
    results = []
    for f in floods:
        out, _ = f.communicate(timeout=180)
        results.append(out.strip().splitlines()[-1] if out.strip() else "")
        peak = max(peak, agent.rss_mib()[0])
    return {"flood_outcomes": results, "bystander": legit, "rss_peak_mib_sampled": round(peak, 1)}


def impersonation(agent: Agent) -> dict:
    return {"attacker_for_victim": push(agent, ATTACKER_UID, "batch", "victim", "m", 999),
            "attacker_for_vllm_pod": push(agent, ATTACKER_UID, "llm", "vllm-llama-8b-00", "x", 999),
            "no_pod_for_victim": push(agent, None, "batch", "victim", "m", 999),
            "victim_for_itself": push(agent, VICTIM_UID, "batch", "victim", "m", 4)}


def push_quota(agent: Agent, models: int = 200) -> dict:
    lines = push(agent, ATTACKER_UID, "batch", "attacker", ",".join(f"flood-{i}" for i in range(models)), 1)
    accepted = sum(1 for line in lines if line.startswith("OK"))
    newcomer = push(agent, BYSTANDER_UID, "batch", "bystander", "new-model", 2)
    return {"attacker_accepted": accepted, "attacker_refused": len(lines) - accepted, "newcomer": newcomer}


def malformed_pushes(agent: Agent, n: int = 20) -> dict:
    script = """
import sys, grpc
sys.stdin.readline()
with grpc.insecure_channel("unix:" + sys.argv[1]) as ch:
    call = ch.unary_unary("/gpulse.push.v1.QueueDepth/Report", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    for junk in [b"\\xff" * 9, b"\\x0a\\xff", b"\\x2a" * 40] * int(sys.argv[2]):
        try:
            call(junk, timeout=5)
        except grpc.RpcError as e:
            print(e.code().name, flush=True)
"""
    proc = agent.pusher(BYSTANDER_UID, script, str(n))
    out, _ = proc.communicate(timeout=120)
    codes = sorted(set(out.split()))
    time.sleep(0.5)
    return {"codes": codes, "tracebacks": agent.log().count("Traceback")}
