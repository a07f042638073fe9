"""Kubernetes authorization of scrapers: TokenReview + SubjectAccessReview, cached, bounded."""

import pytest
from gpulse.kube.apiserver import KubeClient, KubeConfig
from gpulse.kube.authz import KubeAuthorizer
from gpulse.sim.apiserver import FakeApiServer

PROM = "system:serviceaccount:monitoring:prometheus"


@pytest.fixture
def api():
    a = FakeApiServer({"kind": "Node", "metadata": {"name": "n"}}, [])
    a.add_token("prom", PROM, ("system:serviceaccounts", "system:serviceaccounts:monitoring"))
    a.add_token("viewer", "jane", ("viewers",))
    a.grant(PROM, "/metrics")
    a.grant("viewers", "/identity")  # a group's grant counts too
    yield a
    a.stop()


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_review_and_cache(api):
    clock = Clock()
    authz = KubeAuthorizer(KubeClient(KubeConfig(api.url)), allow_ttl=60, deny_ttl=10, clock=clock)
    assert authz.review("prom", "/metrics") == (200, "")
    assert authz.review("prom", "/identity") == (403, f"{PROM} may not get /identity")
    assert authz.review("viewer", "/identity") == (200, "")
    assert authz.review("forged", "/metrics")[0] == 401
    calls = api.reviews
    for _ in range(10):
        assert authz.review("prom", "/metrics") == (200, "")
        assert authz.review("forged", "/metrics")[0] == 401
    assert api.reviews == calls  # all cached
    clock.t = 11  # refusals expire sooner than grants
    assert authz.cached("forged", "/metrics") is None and authz.cached("prom", "/metrics") == (200, "")
    clock.t = 61
    assert authz.cached("prom", "/metrics") is None


def test_cache_is_bounded(api):
    authz = KubeAuthorizer(KubeClient(KubeConfig(api.url)), max_entries=4)
    for i in range(20):
        authz.review(f"made-up-{i}", "/metrics")
    assert len(authz._cache) == 4


def test_an_unreachable_api_server_is_503_and_not_cached():
    authz = KubeAuthorizer(KubeClient(KubeConfig("http://127.0.0.1:9"), timeout=1.0))
    assert authz.review("prom", "/metrics") == (503, "authorization unavailable")
    assert authz.cached("prom", "/metrics") is None


def test_oversized_tokens_are_refused_without_a_review(api):
    authz = KubeAuthorizer(KubeClient(KubeConfig(api.url)))
    assert authz.review("x" * 100_000, "/metrics")[0] == 401
    assert api.reviews == 0
