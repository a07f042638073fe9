"""Dropped scraped samples: counted per endpoint, exported, logged once per pod per window."""

import logging

from gpulse.catalog import BY_NAME
from gpulse.collectors.workloads import collect
from gpulse.snapshot import Snapshot, WorkloadState
from gpulse.workloads.discovery import ScrapeTarget
from gpulse.workloads.drops import DropLedger
from gpulse.workloads.scrape import EndpointResult


def result(pod="p", dropped=(("negative", 2),), server="vllm"):
    target = ScrapeTarget("ns", pod, "u", "127.0.0.1", 8000, "/metrics")
    return EndpointResult(target, True, server, (), 0.01, warnings=("queue_depth -5 out of range (negative): dropped",),
                          dropped=dropped)


def test_counts_add_up_per_endpoint_and_reason_and_go_with_the_pod():
    ledger = DropLedger(clock=lambda: 0.0)
    ledger.record(result())
    ledger.record(result(dropped=(("negative", 1), ("too_large", 3))))
    ledger.record(result(pod="q", dropped=()))
    assert ledger.counts("ns", "p", "vllm") == (("negative", 3), ("too_large", 3))
    assert ledger.counts("ns", "q", "vllm") == ()
    ledger.retain([("ns", "q")])
    assert ledger.counts("ns", "p", "vllm") == ()


def test_one_warning_per_pod_per_window_naming_the_pod(caplog):
    now = [0.0]
    ledger = DropLedger(clock=lambda: now[0], log_every=300)
    with caplog.at_level(logging.WARNING, logger="gpulse.workloads.drops"):
        for _ in range(50):
            ledger.record(result())
        ledger.record(result(pod="other"))
        now[0] = 301.0
        ledger.record(result())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "ns/p (vllm): 2 scraped sample(s) out of range" in lines[0] and "queue_depth -5" in lines[0]
    assert "ns/other" in lines[1]
    assert "(98 more since the last report)" in lines[2]


def test_the_collector_exports_the_counter_in_the_catalog():
    spec = BY_NAME["gpulse_workload_samples_dropped_total"]
    assert spec.type == "counter" and spec.labels == ("namespace", "pod", "server", "reason")
    states = (WorkloadState("ns", "p", "vllm", "m", queue_depth=None, samples_dropped=(("negative", 4),)),
              WorkloadState("ns", "p", "vllm", "n", queue_depth=1.0))
    fams = {f.name: f for f in collect(Snapshot(timestamp=0.0, node_name="n", workloads=states))}
    fam = fams["gpulse_workload_samples_dropped_total"]
    assert fam.samples == [(("ns", "p", "vllm", "negative"), 4.0)]
