"""The Scraper's loop: one kept connection per target across rounds, closed when the target
goes away, reopened when the server closes it; chunked and close-framed bodies read."""

from __future__ import annotations

import threading

from gpulse.workloads.discovery import ScrapeTarget
from gpulse.workloads.scrape import Scraper

from tests.conftest import wait_for

from .test_keepalive import RawServer, answer, read_request

BODY = (b"# TYPE vllm:num_requests_waiting gauge\n"
        b'vllm:num_requests_waiting{model_name="m"} 4\n'
        b'vllm:num_requests_running{model_name="m"} 2')  # no final newline: read as Prometheus reads it


def counting(results):
    lock = threading.Lock()

    def on_result(r):
        with lock:
            results.append(r)

    return on_result


def test_kept_connection_across_rounds_and_closed_when_the_target_goes(tmp_path):
    ended = threading.Event()

    def script(sock):
        while read_request(sock):
            sock.sendall(answer(f"200 OK\nContent-Length: {len(BODY)}", BODY))
        ended.set()  # the agent closed its side

    srv = RawServer(script)
    results = []
    scraper = Scraper(interval=0.05, timeout=1.0, max_body=1 << 20, concurrency=2, on_result=counting(results))
    target = ScrapeTarget("ns", "p", "u", "127.0.0.1", srv.port, "/metrics")
    scraper.set_targets([target])
    scraper.start()
    try:
        assert wait_for(lambda: len(results) >= 6)
        assert all(r.up for r in results) and srv.accepted == 1
        (state,) = scraper.states()
        assert (state.queue_depth, state.running_requests) == (4, 2)
        scraper.set_targets([])
        assert ended.wait(5)
        assert scraper.states() == ()
    finally:
        scraper.stop()
        srv.close()


def test_server_closing_each_time_and_other_framings_still_scraped():
    def close_each(sock):
        read_request(sock)
        sock.sendall(answer(f"200 OK\nConnection: close\nContent-Length: {len(BODY)}", BODY))

    def chunked(sock):
        while read_request(sock):
            half = len(BODY) // 2
            sock.sendall(answer("200 OK\nTransfer-Encoding: chunked")
                         + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, BODY[:half], len(BODY) - half, BODY[half:]))

    def to_close(sock):
        read_request(sock)
        sock.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + BODY)

    servers = {name: RawServer(fn) for name, fn in (("close", close_each), ("chunked", chunked), ("eof", to_close))}
    results = []
    scraper = Scraper(interval=0.05, timeout=1.0, max_body=1 << 20, concurrency=3, on_result=counting(results))
    scraper.set_targets([ScrapeTarget("ns", n, "u", "127.0.0.1", s.port, "/metrics") for n, s in servers.items()])
    scraper.start()
    try:
        assert wait_for(lambda: all(sum(r.target.pod == n for r in results) >= 4 for n in servers))
    finally:
        scraper.stop()
        for s in servers.values():
            s.close()
    assert all(r.up for r in results), [r.error for r in results if not r.up]
    assert {s.pod: s.queue_depth for s in scraper.states()} == {"close": 4, "chunked": 4, "eof": 4}
    assert servers["chunked"].accepted == 1
    assert servers["close"].accepted >= 4 and servers["eof"].accepted >= 4


def test_too_many_series_is_one_line_and_the_others_stay_up():
    wide = b"".join(b'vllm:num_requests_waiting{model_name="m%05d"} 1\n' % i for i in range(12_000))

    def script(sock):
        while read_request(sock):
            sock.sendall(answer(f"200 OK\nContent-Length: {len(wide)}", wide))

    def good(sock):
        while read_request(sock):
            sock.sendall(answer(f"200 OK\nContent-Length: {len(BODY)}", BODY))

    bad, ok = RawServer(script), RawServer(good)
    results = []
    scraper = Scraper(interval=0.1, timeout=2.0, max_body=4 << 20, concurrency=2, on_result=counting(results))
    scraper.set_targets([ScrapeTarget("ns", "wide", "u", "127.0.0.1", bad.port, "/metrics"),
                         ScrapeTarget("ns", "ok", "u", "127.0.0.1", ok.port, "/metrics")])
    scraper.start()
    try:
        assert wait_for(lambda: {r.target.pod for r in results} == {"wide", "ok"})
    finally:
        scraper.stop()
        bad.close()
        ok.close()
    by_pod = {r.target.pod: r for r in results}
    assert by_pod["ok"].up
    assert not by_pod["wide"].up
    assert by_pod["wide"].error == "more than 10000 series of the families gpulse reads (at line 10001)"


def test_a_path_of_any_characters_is_sent_percent_encoded():
    # gpulse.dev/path is the pod owner's text: "/métriques→" once ended the whole scrape
    # loop (the request line could not be encoded) and with it every other pod's scrapes
    lines = []

    def script(sock):
        while request := read_request(sock):
            lines.append(request.split(b"\r\n", 1)[0])
            sock.sendall(answer(f"200 OK\nContent-Length: {len(BODY)}", BODY))

    srv = RawServer(script)
    results = []
    scraper = Scraper(interval=0.1, timeout=2.0, max_body=1 << 20, concurrency=2, on_result=counting(results))
    scraper.set_targets([ScrapeTarget("ns", "odd", "u", "127.0.0.1", srv.port, "/m\u00e9triques\u2192\x01?a=b%20c"),
                         ScrapeTarget("ns", "ok", "u", "127.0.0.1", srv.port, "/metrics")])
    scraper.start()
    try:
        assert wait_for(lambda: {r.target.pod for r in results} == {"odd", "ok"})
    finally:
        scraper.stop()
        srv.close()
    assert all(r.up for r in results)
    assert b"GET /m%C3%A9triques%E2%86%92%01?a=b%20c HTTP/1.1" in lines


def test_a_target_whose_connection_cannot_be_set_up_fails_alone(monkeypatch):
    # whatever a connection's setup raises for one target (here an unusable host string) is
    # that target's failed scrape; the loop goes on scraping the others, round after round
    from gpulse.workloads import scrape as scrape_mod

    real = scrape_mod.connect

    def connect(target, buffer=None):
        if target.pod == "bad":
            raise ValueError("host 'x\\x00y' cannot be resolved")
        return real(target, buffer)

    monkeypatch.setattr(scrape_mod, "connect", connect)

    def script(sock):
        while read_request(sock):
            sock.sendall(answer(f"200 OK\nContent-Length: {len(BODY)}", BODY))

    srv = RawServer(script)
    results = []
    scraper = Scraper(interval=0.05, timeout=2.0, max_body=1 << 20, concurrency=2, on_result=counting(results))
    scraper.set_targets([ScrapeTarget("ns", "bad", "u", "127.0.0.1", srv.port, "/metrics"),
                         ScrapeTarget("ns", "ok", "u", "127.0.0.1", srv.port, "/metrics")])
    scraper.start()
    try:
        assert wait_for(lambda: sum(1 for r in list(results) if r.target.pod == "ok") >= 3)
    finally:
        scraper.stop()
        srv.close()
    bad = [r for r in results if r.target.pod == "bad"]
    assert bad and not any(r.up for r in bad)
    assert "cannot be resolved" in bad[0].error
    assert all(r.up for r in results if r.target.pod == "ok")
