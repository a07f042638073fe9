"""A100 MIG has no GPM: a co-located dcgm-exporter's GR_ENGINE_ACTIVE fills the gap,
through the real source, sampler, attribution and collectors."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.harness import Run


def _dcgm_body(scenario) -> bytes:
    lines = ["# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.",
             "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge"]
    for g in scenario.gpus:
        for m in g.mig_instances:
            value = 0.1 + 0.05 * m.index
            lines.append(f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{gpu="{g.index}",UUID="{g.uuid}",device="nvidia{g.index}",'
                         f'modelName="{g.name}",GPU_I_PROFILE="{m.profile}",GPU_I_ID="{m.gpu_instance}",'
                         f'Hostname="node"}} {value}')
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def dcgm_exporter():
    state = {"body": b""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(state["body"])))
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_mig_activity_from_dcgm_exporter_reaches_instances_and_pods(dcgm_exporter):
    state, url = dcgm_exporter
    from gpulse.sim import scenario
    state["body"] = _dcgm_body(scenario.load("a100-mig-mixed"))
    with Run("a100-mig-mixed", workloads_enabled=False, sources_dcgm_exporter_url=url) as run:
        import time
        deadline = time.monotonic() + 10
        while not run.sampler.inputs.mig_activity.current() and time.monotonic() < deadline:
            time.sleep(0.05)
        snap = run.tick(2).snapshot
        migs = {(m.gpu, m.gpu_instance): m.values.get("gpulse_mig_utilization_ratio") for m in snap.migs}
        assert len(migs) == 27 and all(v is not None for v in migs.values())
        assert migs[(0, 1)] == pytest.approx(0.1) and migs[(0, 3)] == pytest.approx(0.2)
        mig_pods = [p for p in snap.pods if p.sharing == "mig"]
        assert len(mig_pods) == 27 and all(p.utilization is not None for p in mig_pods)
        assert snap.sources["dcgm"].up
