"""The HTTP server: listen addresses, content negotiation, and the bounds on what a client
can make it hold or do (connections, deadlines, head size, Accept parsing, the snapshot)."""

import base64
import gzip
import http.client
import logging
import socket
import ssl
import time

import pytest
from gpulse.httpconn import MAX_HEAD_BYTES, Limits
from gpulse.refusals import Refusals
from gpulse.sampler import Rendered
from gpulse.server import MAX_MEDIA_RANGES, _qualities, make_server
from gpulse.snapshot import Snapshot

from tests.conftest import wait_for

TEXT = b"# TYPE gpulse_x gauge\ngpulse_x 1\n"
OM = TEXT + b"# EOF\n"


class FakeSampler:
    def __init__(self):
        self.tick()

    def tick(self, n=0):
        self.current = Rendered(TEXT, gzip.compress(TEXT), OM, gzip.compress(OM),
                                Snapshot(timestamp=float(n), node_name=f"n{n}"))

    def liveness(self):
        return True, ""

    def readiness(self):
        return True, ""


@pytest.fixture
def serve():
    servers = []

    def start(sampler=None, **options):
        server = make_server("127.0.0.1:0", sampler or FakeSampler(), **options)
        server.start()
        servers.append(server)
        return server
    yield start
    for s in servers:
        s.shutdown()


def get(server, path="/metrics", headers=None, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def raw(server, data, read=65536, timeout=5):
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(read)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_ipv6_listen_address():
    try:
        server = make_server("[::1]:0", sampler=None)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert server.socket.family == socket.AF_INET6
    server.server_close()


def test_content_negotiation(serve):
    server = serve()
    status, headers, body = get(server)
    assert (status, body, headers["Content-Type"]) == (200, TEXT, "text/plain; version=0.0.4; charset=utf-8")
    prom = {"Accept": "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;"
                      "q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", "Accept-Encoding": "gzip"}
    status, headers, body = get(server, headers=prom)
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == OM
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert get(server, headers={"Accept-Encoding": "gzip;q=0, *"})[1].get("Content-Encoding") is None


def test_probes_index_and_unknown_paths(serve):
    server = serve()
    assert get(server, "/livez")[::2] == (200, b"ok\n")
    assert get(server, "/readyz")[::2] == (200, b"ready\n")
    assert get(server, "/")[0] == 200
    assert get(server, "/nope")[0] == 404


def test_keep_alive_pipelining_head_and_methods(serve):
    server = serve()
    out = raw(server, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    parts = out.split(b"HTTP/1.1 ")
    assert [p[:3] for p in parts[1:]] == [b"200", b"200", b"405"]
    assert f"Content-Length: {len(TEXT)}".encode() in parts[2] and TEXT not in parts[2]  # HEAD: no body
    assert b"Allow: GET, HEAD" in parts[3] and b"Connection: close" in parts[3]


def test_requests_with_bodies_and_bad_heads_are_refused(serve):
    server = serve()
    assert raw(server, b"GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").startswith(b"HTTP/1.1 413")
    assert raw(server, b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").startswith(b"HTTP/1.1 413")
    assert raw(server, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(server, b"GET /metrics HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 505")
    assert raw(server, b"GET *x HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(server, b"GET http://x/livez HTTP/1.1\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_large_heads_are_refused_without_reading_them_all(serve):
    server = serve()
    flood = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 60_000) for i in range(17))
    out = raw(server, flood + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431") and b"Connection: close" in out
    many = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(100)) + b"\r\n"
    assert len(many) < MAX_HEAD_BYTES
    assert raw(server, many).startswith(b"HTTP/1.1 431")
    assert server.refusals.counts()[("http", "headers_too_large")] == 2


def test_accept_parsing_is_capped():
    header = ",".join(f"type/x{i};q=0.{i % 9}" for i in range(5000))
    assert len(_qualities(header)) == MAX_MEDIA_RANGES
    t = time.perf_counter()
    for _ in range(100):
        _qualities("a;" * 4000)
    assert time.perf_counter() - t < 5  # bounded work per header whatever its shape (generous bound)


def test_a_slow_head_is_cut_at_the_deadline(serve):
    server = serve(limits=Limits(header_timeout=0.5))
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        for _ in range(10):  # a byte every 0.2 s: each within a per-read timeout, never done
            try:
                s.sendall(b"X")
            except OSError:
                break
            time.sleep(0.2)
        s.settimeout(2)
        assert s.recv(100) == b""  # closed at the deadline, no answer
    assert server.refusals.counts()[("http", "header_timeout")] == 1


def test_connections_are_capped_and_stalled_ones_give_way(serve):
    server = serve(limits=Limits(max_connections=8, header_timeout=30))
    stalled = [socket.create_connection(("127.0.0.1", server.server_address[1])) for _ in range(30)]
    try:
        assert wait_for(lambda: server.connections <= 8)
        assert get(server)[0] == 200  # a new scrape still gets through, in place of a stalled connection
        assert server.refusals.counts()[("http", "evicted")] >= 22
    finally:
        for s in stalled:
            s.close()
    assert wait_for(lambda: server.connections == 0)


def test_per_client_share(serve):
    server = serve(limits=Limits(max_connections=8, header_timeout=30))
    assert server.limits.per_client == 2
    held = [socket.create_connection(("127.0.0.1", server.server_address[1])) for _ in range(5)]
    try:
        assert wait_for(lambda: server.connections == 2)
    finally:
        for s in held:
            s.close()


def test_client_disconnects_log_no_traceback(serve, caplog):
    caplog.set_level(logging.DEBUG)
    server = serve()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.server_address[1])) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    with socket.create_connection(("127.0.0.1", server.server_address[1])) as s:
        s.sendall(b"GET /met")  # half a request, then gone
    assert get(server)[0] == 200
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_debug_snapshot_is_off_by_default(serve):
    status, _, body = get(serve(), "/debug/snapshot")
    assert status == 404 and b"--web.debug-snapshot" in body


def test_debug_snapshot_is_rendered_once_per_tick(serve, monkeypatch):
    from gpulse import server as server_mod
    calls = []
    render = server_mod._snapshot_json
    monkeypatch.setattr(server_mod, "_snapshot_json", lambda r: calls.append(r) or render(r))
    sampler = FakeSampler()
    server = serve(sampler, debug_snapshot=True)
    bodies = {get(server, "/debug/snapshot")[2] for _ in range(10)}
    assert len(calls) == 1 and len(bodies) == 1 and b'"node_name": "n0"' in bodies.pop()
    sampler.tick(1)
    assert b'"node_name": "n1"' in get(server, "/debug/snapshot")[2]
    assert len(calls) == 2


def test_refusals_are_counted_and_logged_once_a_minute(caplog):
    clock = [0.0]
    r = Refusals(clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            r.refuse("http", "header_timeout", "slow")
        clock[0] = 61
        r.refuse("http", "header_timeout", "slow")
    assert r.counts()[("http", "header_timeout")] == 101
    lines = [rec.getMessage() for rec in caplog.records]
    assert len(lines) == 2 and "99 more refused" in lines[1]


# --- TLS and authentication (--web.config.file) -----------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from tests.certs import make_ca, make_cert

    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    return {"ca": ca, "server": make_cert(d, ca, "server"),
            "client": make_cert(d, ca, "prometheus", sans=("DNS:prometheus.monitoring.svc",), usage="clientAuth"),
            "other": make_cert(d, ca, "intruder", sans=("DNS:intruder",), usage="clientAuth"), "dir": d}


def web_config(tmp_path, text):
    from gpulse.webconfig import WebConfigSource

    path = tmp_path / "web.yml"
    path.write_text(text)
    return WebConfigSource(str(path))


def tls_get(server, ca, client=None, path="/metrics", headers=None, max_version=None):
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    if max_version is not None:
        ctx.maximum_version = max_version
    conn = http.client.HTTPSConnection("127.0.0.1", server.server_address[1], context=ctx, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_tls(serve, tmp_path, pki):
    cfg = web_config(tmp_path, f"tls_server_config:\n  cert_file: {pki['server'].cert}\n  key_file: {pki['server'].key}\n")
    server = serve(web_config=cfg)
    assert tls_get(server, pki["ca"]) == (200, TEXT)
    assert raw(server, b"GET /metrics HTTP/1.1\r\n\r\n") == b""  # plain HTTP on the TLS port: closed


def test_mutual_tls_and_allowed_sans(serve, tmp_path, pki):
    cfg = web_config(tmp_path, f"""
tls_server_config:
  cert_file: {pki['server'].cert}
  key_file: {pki['server'].key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki['ca'].cert}
  client_allowed_sans: [prometheus.monitoring.svc]
  min_version: TLS13
""")
    server = serve(web_config=cfg)
    assert tls_get(server, pki["ca"], client=pki["client"]) == (200, TEXT)
    with pytest.raises(ssl.SSLError):  # below min_version
        tls_get(server, pki["ca"], client=pki["client"], max_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        tls_get(server, pki["ca"])  # no client certificate
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException, OSError)):
        tls_get(server, pki["ca"], client=pki["other"])  # verified, but its SAN is not allowed
    assert server.refusals.counts()[("http", "forbidden")] == 1


def test_basic_auth(serve, tmp_path):
    from tests.certs import bcrypt_hash

    cfg = web_config(tmp_path, f"basic_auth_users:\n  prometheus: {bcrypt_hash('s3cret')}\n")
    server = serve(web_config=cfg)

    def auth(user, password):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    assert get(server, headers=auth("prometheus", "s3cret"))[::2] == (200, TEXT)
    status, headers, _ = get(server)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert get(server, headers=auth("prometheus", "wrong"))[0] == 401
    assert get(server, headers=auth("nobody", "s3cret"))[0] == 401
    assert get(server, headers={"Authorization": "Basic !!!"})[0] == 401
    assert get(server, "/identity")[0] == 401
    assert get(server, "/livez")[0] == 200 and get(server, "/readyz")[0] == 200  # the kubelet's probes
    assert server.refusals.counts()[("http", "unauthorized")] == 5


def test_rate_limit(serve, tmp_path):
    server = serve(web_config=web_config(tmp_path, "rate_limit:\n  interval: 10s\n  burst: 3\n"))
    assert [get(server, "/livez")[0] for _ in range(5)] == [200, 200, 200, 429, 429]


def test_security_headers(serve, tmp_path):
    cfg = web_config(tmp_path, "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    assert get(serve(web_config=cfg))[1]["X-Frame-Options"] == "deny"


def test_certificates_are_reloaded_when_they_change(serve, tmp_path, pki, monkeypatch):
    from gpulse import webconfig

    from tests.certs import make_ca, make_cert

    monkeypatch.setattr(webconfig, "RECHECK_SECONDS", 0.0)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pki["server"].cert.read_bytes())
    key.write_bytes(pki["server"].key.read_bytes())
    cfg = web_config(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    server = serve(web_config=cfg)
    assert tls_get(server, pki["ca"])[0] == 200
    ca2 = make_ca(tmp_path / "ca2", "ca2")
    rotated = make_cert(tmp_path / "ca2", ca2, "server2")
    cert.write_bytes(rotated.cert.read_bytes())
    key.write_bytes(rotated.key.read_bytes())
    assert wait_for(lambda: _served_by(server, ca2), timeout=10)
    key.write_text("not a key")  # a broken rotation keeps the last good settings
    time.sleep(0.1)
    assert cfg.get().tls is not None and cfg.reloads == 1


def _served_by(server, ca):
    try:
        return tls_get(server, ca)[0] == 200
    except (ssl.SSLError, OSError):
        return False


# --- Kubernetes authorization (--web.kubernetes-auth) -------------------------------------------
def test_kubernetes_authorization(serve):
    from gpulse.kube.apiserver import KubeClient, KubeConfig
    from gpulse.kube.authz import KubeAuthorizer
    from gpulse.sim.apiserver import FakeApiServer

    api = FakeApiServer({"kind": "Node", "metadata": {"name": "n"}}, [])
    try:
        api.add_token("prom-token", "system:serviceaccount:monitoring:prometheus", ("system:serviceaccounts",))
        api.add_token("other-token", "system:serviceaccount:default:default", ("system:serviceaccounts",))
        api.grant("system:serviceaccount:monitoring:prometheus", "/metrics")
        authz = KubeAuthorizer(KubeClient(KubeConfig(api.url)))
        server = serve(authorizer=authz)
        assert get(server)[0] == 401
        assert get(server, headers={"Authorization": "Bearer nonsense"})[0] == 401
        assert get(server, headers={"Authorization": "Bearer other-token"})[0] == 403
        for _ in range(5):
            assert get(server, headers={"Authorization": "Bearer prom-token"})[::2] == (200, TEXT)
        assert get(server, "/identity", headers={"Authorization": "Bearer prom-token"})[0] == 403  # not granted
        assert get(server, "/livez")[0] == 200
        reviews = api.reviews
        assert reviews <= 2 * 4  # answers are cached: five scrapes with one token cost one review
        get(server, headers={"Authorization": "Bearer prom-token"})
        assert api.reviews == reviews
    finally:
        api.stop()
