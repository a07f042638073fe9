"""A real Prometheus scraping gpulse through TLS and basic auth, and through mutual TLS,
configured with --web.config.file in exporter-toolkit's format; wrong credentials, a
missing client certificate and a plain-HTTP scrape each leave their target down with the
reason Prometheus reports. Its own small stack (two agents, one Prometheus), so it needs
nothing of the shared e2e stack."""

from __future__ import annotations

import sys
import time

import pytest
import yaml

from tests.certs import bcrypt_hash, make_ca, make_cert
from tests.e2e.conftest import ROOT, START_TIMEOUT, _free_port, _require
from tests.e2e.procs import ManagedProcess, env_without_proxies, find_binary, wait_for
from tests.e2e.promql import Prometheus

pytestmark = pytest.mark.e2e

SCENARIO = "t4-legacy"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    prometheus_bin = _require(find_binary("prometheus"), "prometheus")
    tmp = tmp_path_factory.mktemp("web-auth")
    ca = make_ca(tmp)
    server = make_cert(tmp, ca, "gpulse")
    client = make_cert(tmp, ca, "prometheus", sans=("DNS:prometheus",), usage="clientAuth")
    (tmp / "basic.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(server.cert), "key_file": str(server.key)},
        "basic_auth_users": {"prometheus": bcrypt_hash(PASSWORD, cost=10)}}))
    (tmp / "mtls.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(server.cert), "key_file": str(server.key),
                              "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": str(ca.cert),
                              "client_allowed_sans": ["prometheus"], "min_version": "TLS13"}}))
    (tmp / "password").write_text(PASSWORD)
    (tmp / "wrong").write_text("guess")
    env = env_without_proxies()
    ports = {"basic": _free_port(), "mtls": _free_port()}
    prom_port = _free_port()
    tls = {"ca_file": str(ca.cert)}
    job = lambda name, port, **extra: {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                                       **extra}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            job("basic-auth", ports["basic"], scheme="https", tls_config=tls,
                basic_auth={"username": "prometheus", "password_file": str(tmp / "password")}),
            job("wrong-password", ports["basic"], scheme="https", tls_config=tls,
                basic_auth={"username": "prometheus", "password_file": str(tmp / "wrong")}),
            job("plain-http", ports["basic"]),
            job("mtls", ports["mtls"], scheme="https",
                tls_config={**tls, "cert_file": str(client.cert), "key_file": str(client.key)}),
            job("mtls-no-client-cert", ports["mtls"], scheme="https", tls_config=tls),
        ]}, sort_keys=False))
    processes = []
    try:
        for name, port in ports.items():
            processes.append(ManagedProcess(f"gpulse {name}", [
                sys.executable, "-m", "gpulse.cli", "serve", "--nvml.backend=fake", f"--scenario={SCENARIO}",
                f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={tmp / (name + '.yml')}",
                "--log.level=info"], tmp / f"gpulse-{name}.log", cwd=ROOT, env=env))
        prom = ManagedProcess("prometheus", [
            prometheus_bin, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=info"], tmp / "prometheus.log", cwd=tmp,
            env=env)
        processes.append(prom)
        prom.wait_ready(f"http://127.0.0.1:{prom_port}/-/ready", START_TIMEOUT)
        yield Prometheus(f"http://127.0.0.1:{prom_port}"), processes
    finally:
        for p in reversed(processes):
            p.stop()


def _targets(prometheus: Prometheus) -> dict:
    """Targets by job, once scraped at least once."""
    return {t["labels"]["job"]: t for t in prometheus.targets() if not t.get("lastScrape", "0001").startswith("0001")}


def test_prometheus_scrapes_through_tls_and_basic_auth(secured):
    prometheus, processes = secured
    diagnostics = lambda: "\n".join(p.describe() for p in processes)

    def settled():
        targets = _targets(prometheus)
        ready = {"basic-auth", "mtls"} <= {j for j, t in targets.items() if t["health"] == "up"}
        refused = {"wrong-password", "plain-http", "mtls-no-client-cert"} <= {
            j for j, t in targets.items() if t["health"] == "down"}
        return targets if ready and refused else None

    targets = wait_for(settled, START_TIMEOUT + 30, "TLS targets up, the refused ones down", diagnostics)
    assert "401" in targets["wrong-password"]["lastError"], targets["wrong-password"]["lastError"]
    assert targets["plain-http"]["lastError"], targets["plain-http"]
    assert targets["mtls-no-client-cert"]["lastError"], targets["mtls-no-client-cert"]
    time.sleep(2)
    for job in ("basic-auth", "mtls"):
        gpus = prometheus.query(f'gpulse_gpu_up{{job="{job}"}}')
        assert len(gpus) == 2 and all(g["value"] == 1 for g in gpus), (job, gpus)
    refused = prometheus.query('sum by (reason) (gpulse_requests_refused_total{job="basic-auth"})')
    assert {r["metric"]["reason"] for r in refused} >= {"unauthorized"}, refused
