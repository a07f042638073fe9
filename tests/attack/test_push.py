"""Hostile pushers: impersonation, a series flood, an RPC flood, undecodable requests."""

import pytest

from tests.attack import cases
from tests.attack.harness import Window, assert_healthy
from tests.conftest import wait_for

pytestmark = pytest.mark.attack


def test_a_pod_cannot_push_for_another(agent):
    """Before: any pod that could reach the socket published queue depth for any pod on the
    node, scraped vLLM pods included, and so drove another team's autoscaler."""
    w = Window(agent)
    r = cases.impersonation(agent)
    for key in ("attacker_for_victim", "attacker_for_vllm_pod", "no_pod_for_victim"):
        assert r[key][0].startswith("PERMISSION_DENIED"), r
    assert r["victim_for_itself"][0].startswith("OK"), r
    # its own value only, once the next tick has rendered it
    assert wait_for(lambda: agent.metrics(attempts=10).get("gpulse_workload_queue_depth", namespace="batch",
                                                           pod="victim") == 4, timeout=10)
    assert agent.metrics().get("gpulse_workload_queue_depth", pod="vllm-llama-8b-00", model="x") is None
    assert_healthy(agent, w)


def test_quota_is_per_pod(agent):
    """Before: one global cap of 4,096 entries, so a flood refused new legitimate pods."""
    w = Window(agent)
    r = cases.push_quota(agent, models=100)
    assert (r["attacker_accepted"], r["attacker_refused"]) == (32, 68), r
    assert r["newcomer"][0].startswith("OK"), r
    assert_healthy(agent, w)


def test_rpc_flood(agent):
    """Before: 5,000 push RPCs in flight reached 135 MiB, and a legitimate push then took over 2 s."""
    w = Window(agent)
    r = cases.push_flood(agent, processes=5, per_process=1000)
    assert r["bystander"][0].startswith("OK"), r
    assert_healthy(agent, w)


def test_malformed_pushes_log_no_traceback(agent):
    w = Window(agent)
    r = cases.malformed_pushes(agent, n=10)
    assert r == {"codes": ["INVALID_ARGUMENT"], "tracebacks": 0}, r
    assert_healthy(agent, w)
