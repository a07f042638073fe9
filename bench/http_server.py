"""Which HTTP server design the agent uses, measured: the standard library's
thread-per-connection ThreadingHTTPServer (what gpulse had, with its backlog and TCP_NODELAY
settings) against gpulse.server's bounded event loop, serving the same cached bytes.

    .venv/bin/python bench/http_server.py [--quick]

Each server runs in a child process (this file, mode `serve`) serving a 10k-series gzip
body re-rendered every second, with MALLOC_ARENA_MAX unset, as a developer machine has it.
Measured in one run, so compare the ratios:

- 16 concurrent keep-alive scrapers (the per-client cap): p50 / p99 latency;
- 500 slow clients each holding a connection with half a request head: the server's RSS,
  threads and open fds while they hold, and whether a scrape still gets through;
- 20 clients sending 17 headers of 60 KB each, for 5 s: RSS after;
- CPU seconds of the server over the whole run.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))


def serve(kind: str, port: int) -> int:
    import gzip
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from gpulse import kernels
    from gpulse.sampler import Rendered
    from series import snapshots

    fams = snapshots(10_000)[0]
    text = kernels.ExpositionEncoder().render(fams)
    current = Rendered(text, gzip.compress(text, 1), text, gzip.compress(text, 1), None)

    class Sampler:
        def liveness(self):
            return True, ""

        def readiness(self):
            return True, ""

    sampler = Sampler()
    sampler.current = current
    if kind == "loop":
        from gpulse.server import make_server

        server = make_server(f"127.0.0.1:{port}", sampler)
        server.start()
    else:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            timeout = 30

            def do_GET(self):
                body = sampler.current.text_gzip
                self.send_response(200)
                self.send_header("Content-Type", kernels.TEXT_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Encoding", "gzip")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        httpd = Server(("127.0.0.1", port), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    while True:
        time.sleep(3600)


def status_of(pid: int) -> dict:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {"rss_mib": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "cpu_s": (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")}


def measure(kind: str, quick: bool) -> dict:
    import subprocess

    from agent_bench import SCRAPERS, free_port, load, percentile

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.Popen([sys.executable, __file__, "serve", kind, str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        out = {"start": status_of(proc.pid)}
        lat, failures, wall = load(port, SCRAPERS, 10 if quick else 50)
        out["p50_ms"], out["p99_ms"] = percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3
        out["scrapes"], out["failures"] = len(lat), failures
        slow = []
        for _ in range(500):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
                slow.append(s)
            except OSError:
                break
        time.sleep(1.0)
        out["holding_500"] = status_of(proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            t0 = time.perf_counter()
            conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
            out["scrape_while_held"] = f"{conn.getresponse().status} in {(time.perf_counter() - t0) * 1e3:.1f} ms"
        except (OSError, http.client.HTTPException) as exc:
            out["scrape_while_held"] = type(exc).__name__
        finally:
            conn.close()
        for s in slow:
            s.close()
        head = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 60_000) for i in range(17)) + \
            b"\r\n"
        stop = time.monotonic() + (2 if quick else 5)

        def flood():
            while time.monotonic() < stop:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                        c.sendall(head)
                        c.recv(64)
                except OSError:
                    pass
        threads = [threading.Thread(target=flood) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1.0)
        out["after_header_flood"] = status_of(proc.pid)
        return out
    finally:
        proc.kill()
        proc.wait(10)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        return serve(sys.argv[2], int(sys.argv[3]))
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    results = {kind: measure(kind, args.quick) for kind in ("stdlib", "loop")}
    print("| | stdlib ThreadingHTTPServer | gpulse event loop |")
    print("|---|---|---|")
    s, e = results["stdlib"], results["loop"]
    rows = [
        ("16 keep-alive scrapers, p50 / p99", f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} ms",
         f"{e['p50_ms']:.2f} / {e['p99_ms']:.2f} ms"),
        ("RSS at start", f"{s['start']['rss_mib']:.1f} MiB", f"{e['start']['rss_mib']:.1f} MiB"),
        ("500 slow clients held: RSS / threads / fds",
         f"{s['holding_500']['rss_mib']:.1f} MiB / {s['holding_500']['threads']} / {s['holding_500']['fds']}",
         f"{e['holding_500']['rss_mib']:.1f} MiB / {e['holding_500']['threads']} / {e['holding_500']['fds']}"),
        ("a scrape while they hold", s["scrape_while_held"], e["scrape_while_held"]),
        ("RSS after 20 clients x 17 headers of 60 KB", f"{s['after_header_flood']['rss_mib']:.1f} MiB",
         f"{e['after_header_flood']['rss_mib']:.1f} MiB"),
        ("server CPU over the run", f"{s['after_header_flood']['cpu_s']:.1f} s",
         f"{e['after_header_flood']['cpu_s']:.1f} s"),
    ]
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
