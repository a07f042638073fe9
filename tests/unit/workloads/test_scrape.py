"""Bounded scraping: a hung, failing or garbage endpoint never holds up the others."""

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest
from gpulse.sim.inference import expected_values, start_inference_servers
from gpulse.sim.scenario import PodSpec, WorkloadSpec
from gpulse.sim.traces import parse_trace
from gpulse.workloads.discovery import ScrapeTarget
from gpulse.workloads.scrape import Scraper, scrape

from tests.conftest import wait_for

T = 30.0


def wl(server, model="m", q=5, r=3, kv=0.5):
    return WorkloadSpec(server, model, parse_trace(q), parse_trace(r), parse_trace(kv))


def scenario(**pods):
    return SimpleNamespace(pods=tuple(PodSpec("ns", name, f"uid-{name}", (), workload=w) for name, w in pods.items()))


def target(handle, name, server=""):
    host, port, path = handle.endpoints[("ns", name)]
    return ScrapeTarget("ns", name, f"uid-{name}", host, port, path, server)


@pytest.fixture
def sim():
    handle = start_inference_servers(
        scenario(good_vllm=wl("vllm", "llama", q=7, r=4, kv=0.25), good_tgi=wl("tgi", q=2, r=9),
                 hang=wl("vllm"), error=wl("vllm"), garbage=wl("vllm")),
        clock=lambda: T)
    handle.set_fault(("ns", "hang"), "hang")
    handle.set_fault(("ns", "error"), "error")
    handle.set_fault(("ns", "garbage"), "garbage")
    yield handle
    handle.stop()


def test_faulty_endpoints_fail_alone(sim):
    scrapes = {}
    lock = threading.Lock()

    def count(result):
        with lock:
            scrapes[result.target.pod] = scrapes.get(result.target.pod, 0) + 1

    # two workers and three bad endpoints: the good ones must still get through every round
    scraper = Scraper(interval=0.2, timeout=0.5, max_body=8 * 1024 * 1024, concurrency=2, on_result=count)
    scraper.set_targets([target(sim, n) for n in ("good_vllm", "good_tgi", "hang", "error", "garbage")])
    scraper.start()
    try:
        assert wait_for(lambda: all(scrapes.get(n, 0) >= 3 for n in ("good_vllm", "good_tgi", "hang", "error", "garbage")))
    finally:
        scraper.stop()
    by_pod = {r.target.pod: r for r in scraper.results()}
    assert by_pod["good_vllm"].up and by_pod["good_tgi"].up
    (v,) = by_pod["good_vllm"].states
    assert (v.server, v.model, v.queue_depth, v.running_requests, v.kv_cache_usage) == ("vllm", "llama", 7, 4, 0.25)
    (t,) = by_pod["good_tgi"].states
    assert (t.server, t.queue_depth, t.running_requests, t.kv_cache_usage) == ("tgi", 2, 9, None)
    assert "timed out" in by_pod["hang"].error
    assert by_pod["error"].error.startswith("HTTP 500")
    # 10 MiB of bytes that are not text: refused at the first line as it streams in, before the 8 MiB limit
    assert by_pod["garbage"].error.startswith("not Prometheus text: line 1")
    for name in ("hang", "error", "garbage"):
        (down,) = by_pod[name].states
        assert not down.scrape_up and down.queue_depth is None and down.scrape_duration_seconds is not None
    # what the sampler reads: one state per endpoint, the bad ones down, no values invented
    published = {s.pod: s for s in scraper.states()}
    assert set(published) == {"good_vllm", "good_tgi", "hang", "error", "garbage"}
    assert sorted(n for n, s in published.items() if s.scrape_up) == ["good_tgi", "good_vllm"]


def test_garbage_below_the_size_limit_is_a_parse_error(sim):
    r = scrape(target(sim, "garbage"), timeout=5, max_body=64 * 1024 * 1024)
    assert not r.up and r.error.startswith("not Prometheus text: line 1")


def test_body_limit_applies_to_valid_bodies_too(sim):
    r = scrape(target(sim, "good_vllm"), timeout=5, max_body=100)
    assert not r.up and "exceeds the 100-byte limit" in r.error


def test_connection_refused_is_down_with_reason():
    r = scrape(ScrapeTarget("ns", "p", "u", "127.0.0.1", 9, "/metrics"), timeout=1, max_body=1000)
    assert not r.up and "refused" in r.error.lower()
    assert r.states[0].server == "unknown"


def test_annotated_server_overrides_detection_and_keeps_its_name_when_down(sim):
    r = scrape(target(sim, "good_tgi", server="vllm"), timeout=5, max_body=1 << 20)
    assert r.up and r.server == "vllm" and r.states[0].queue_depth is None  # no vLLM names in a TGI body
    down = scrape(target(sim, "error", server="vllm"), timeout=5, max_body=1 << 20)
    assert down.states[0].server == "vllm"


def test_wrong_path_is_http_404(sim):
    host, port, _path = sim.endpoints[("ns", "good_vllm")]
    r = scrape(ScrapeTarget("ns", "x", "u", host, port, "/nope"), timeout=5, max_body=1 << 20)
    assert r.error.startswith("HTTP 404")


def test_body_without_inference_metrics_says_what_to_check():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.handle_request, daemon=True).start()
    try:
        r = scrape(ScrapeTarget("ns", "x", "u", "127.0.0.1", srv.server_address[1], "/metrics"), timeout=5, max_body=1 << 20)
    finally:
        srv.server_close()
    assert not r.up and "set gpulse.dev/server or check gpulse.dev/port and path" in r.error


def test_removed_target_disappears_from_results(sim):
    scraper = Scraper(interval=0.1, timeout=0.5, max_body=1 << 20, concurrency=2)
    scraper.set_targets([target(sim, "good_vllm"), target(sim, "good_tgi")])
    scraper.start()
    try:
        assert wait_for(lambda: len(scraper.states()) == 2)
        scraper.set_targets([target(sim, "good_tgi")])
        assert [s.pod for s in scraper.states()] == ["good_tgi"]
    finally:
        scraper.stop()


@pytest.mark.parametrize("server", ["vllm", "tgi", "triton", "trtllm", "sglang", "dynamo", "ray-serve"])
def test_every_simulated_server_reads_back_as_simulated(server):
    w = wl(server, model="m1", q=6, r=2, kv=0.4)
    srv = start_inference_servers(scenario(p=w), clock=lambda: T)
    try:
        r = scrape(target(srv, "p"), timeout=5, max_body=1 << 20)
    finally:
        srv.stop()
    assert r.up, r.error
    (s,) = r.states
    assert s.server == server
    got = {k: getattr(s, k) for k in ("queue_depth", "running_requests", "kv_cache_usage") if getattr(s, k) is not None}
    assert got == expected_values(w, T)
