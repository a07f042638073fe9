"""Annotation-driven discovery: valid opt-ins become targets, broken ones are logged once."""

import logging
from types import MappingProxyType

import pytest
from gpulse.kube.apiserver import PodInfo
from gpulse.workloads.discovery import Discovery, InvalidAnnotation, ScrapeTarget, target_for


def pod(annotations, name="p", uid="u1", ip="10.0.0.5", phase="Running"):
    return PodInfo(uid=uid, namespace="ns", name=name, node="n", phase=phase, ip=ip,
                   annotations=MappingProxyType(annotations))


OK = {"gpulse.dev/scrape": "true", "gpulse.dev/port": "8000"}


def test_minimal_opt_in_uses_default_path_and_detection():
    assert target_for(pod(OK)) == ScrapeTarget("ns", "p", "u1", "10.0.0.5", 8000, "/metrics", "")


def test_all_annotations():
    t = target_for(pod({**OK, "gpulse.dev/path": "/v2/metrics", "gpulse.dev/server": "Triton"}))
    assert (t.path, t.server, t.url) == ("/v2/metrics", "triton", "http://10.0.0.5:8000/v2/metrics")


def test_ipv6_url():
    assert target_for(pod(OK, ip="fd00::5")).url == "http://[fd00::5]:8000/metrics"


@pytest.mark.parametrize("annotations", [{}, {"gpulse.dev/scrape": "false", "gpulse.dev/port": "x"}])
def test_not_opted_in(annotations):
    assert target_for(pod(annotations)) is None


@pytest.mark.parametrize("phase,ip", [("Pending", ""), ("Running", ""), ("Succeeded", "10.0.0.5")])
def test_not_scrapable_yet_or_any_more(phase, ip):
    assert target_for(pod(OK, phase=phase, ip=ip)) is None


@pytest.mark.parametrize("annotations,needle", [
    ({"gpulse.dev/scrape": "true"}, "gpulse.dev/port is missing"),
    ({**OK, "gpulse.dev/port": "http"}, "gpulse.dev/port='http'"),
    ({**OK, "gpulse.dev/port": "70000"}, "gpulse.dev/port='70000'"),
    ({**OK, "gpulse.dev/path": "metrics"}, "gpulse.dev/path='metrics'"),
    ({**OK, "gpulse.dev/server": "nginx"}, "gpulse.dev/server='nginx': unknown server"),
    ({**OK, "gpulse.dev/scrape": "yes please"}, "gpulse.dev/scrape='yes please'"),
])
def test_invalid_annotations_name_the_annotation(annotations, needle):
    with pytest.raises(InvalidAnnotation, match=needle.replace("(", r"\(")):
        target_for(pod(annotations))


def test_invalid_pod_is_logged_once_and_skipped(caplog):
    d = Discovery()
    pods = [pod({"gpulse.dev/scrape": "true"}, name="broken", uid="b"), pod(OK, name="good", uid="g")]
    with caplog.at_level(logging.WARNING, logger="gpulse.workloads.discovery"):
        assert [t.pod for t in d.targets(pods)] == ["good"]
        assert [t.pod for t in d.targets(pods)] == ["good"]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["workloads: skipping pod ns/broken: gpulse.dev/port is missing (needed with gpulse.dev/scrape=\"true\")"]


def test_fixed_pod_is_picked_up_and_a_new_problem_is_logged_again(caplog):
    d = Discovery()
    with caplog.at_level(logging.WARNING, logger="gpulse.workloads.discovery"):
        d.targets([pod({"gpulse.dev/scrape": "true"}, uid="b")])
        assert len(d.targets([pod(OK, uid="b")])) == 1
        d.targets([pod({**OK, "gpulse.dev/port": "0"}, uid="b")])
    assert len(caplog.records) == 2
