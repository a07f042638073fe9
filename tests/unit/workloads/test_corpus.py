"""The real-exposition corpus: every text in tests/fixtures/exposition/*/manifest.yaml read
as the agent reads it (parse -> detect -> extract) against the values worked out from the
server's documented meaning. A key absent from `expect` is a signal the text cannot give:
the state must not carry it."""

import glob
import os

import pytest
from gpulse.safeyaml import load_file
from gpulse.workloads import adapters, exposition

from tests.conftest import ROOT

CORPUS = os.path.join(ROOT, "tests", "fixtures", "exposition")
SIGNALS = ("queue_depth", "running_requests", "kv_cache_usage")


def rows():
    out = []
    for manifest in sorted(glob.glob(os.path.join(CORPUS, "*", "manifest.yaml"))):
        for entry in load_file(manifest) or ():
            out.append(pytest.param(os.path.dirname(manifest), entry,
                                    id=os.path.relpath(os.path.join(os.path.dirname(manifest), entry["file"]), CORPUS)))
    return out


ROWS = rows()


def test_the_corpus_is_there():
    assert len(ROWS) >= 10


@pytest.mark.parametrize("directory, entry", ROWS)
def test_corpus_text_reads_as_documented(directory, entry):
    with open(os.path.join(directory, entry["file"]), "rb") as fh:
        samples, types = exposition.parse(fh.read(), adapters.ALL_METRICS)
    adapter = adapters.detect({s[0] for s in samples} | set(types))  # as the scrape detects
    assert adapter is not None, "no server detected"
    assert adapter.server == entry["server"]
    got = {s.model: s for s in adapters.extract(adapter, samples, "ns", "pod").states}
    want = {str(e.get("model", "")): e for e in entry["expect"]}
    if not want:  # a text with no sample: the endpoint's one state carries no value
        assert [(s.queue_depth, s.running_requests, s.kv_cache_usage) for s in got.values()] == [(None,) * 3]
        return
    assert set(got) == set(want)
    for model, expect in want.items():
        state = got[model]
        for signal in SIGNALS:
            value = getattr(state, signal)
            if signal in expect:
                assert value == pytest.approx(float(expect[signal]), rel=1e-6, abs=1e-6), (model, signal)
            else:
                assert value is None, (model, signal, value)


def test_every_manifest_row_names_a_known_server_and_a_file():
    for param in ROWS:
        directory, entry = param.values
        assert entry["server"] in adapters.BY_SERVER, entry["server"]
        assert os.path.isfile(os.path.join(directory, entry["file"]))
