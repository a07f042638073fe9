"""Identity through the whole agent: info series, conflicts, NFD feature file."""

import os
import re

from tests.conftest import ROOT
from tests.harness import Run

CONFLICT = os.path.join(ROOT, "tests", "fixtures", "scenarios", "conflict.yaml")


def test_conflicting_cloud_label_is_reported():
    with Run(CONFLICT, workloads_enabled=False) as run:
        text = run.tick(2).text.decode()
        conflicts = re.findall(r"^gpulse_identity_conflict\{([^}]*)\} 1$", text, re.M)
        assert any('label="karpenter.k8s.aws/instance-gpu-name"' in c and 'label_value="a10g"' in c for c in conflicts), conflicts
        assert re.search(r'^gpulse_gpu_info\{[^}]*model="H100"', text, re.M)
        view = run.sampler.current.snapshot.identity.as_json()
        assert view["conflicts"]
        labels = run.sampler.current.snapshot.identity.labels()
        assert labels["gpulse.dev/identity-conflicts"] != "0"


def test_reference_node_labels_are_consistent_and_written_for_nfd():
    with Run("reference", workloads_enabled=False) as run:
        text = run.tick().text.decode()
        assert "gpulse_identity_conflict{" not in text
        assert re.search(r"^gpulse_identity_unknown_gpus\{[^}]*\} 0$", text, re.M)
        path = run.agent.config.identity_nfd_file
        with open(path) as fh:
            body = fh.read()
        assert re.search(r"^# \+expiry-time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", body, re.M)
        assert "gpulse.dev/model=H100\n" in body and "gpulse.dev/mig.1g.10gb.count=28\n" in body
        for line in (ln for ln in body.splitlines() if not ln.startswith("#")):
            key, _, value = line.partition("=")
            assert key.startswith("gpulse.dev/") and len(value) <= 63
        assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".")], "temp file left behind"


MOCK_GB200 = os.path.join(ROOT, "tests", "fixtures", "scenarios", "mock-nvml-gb200.yaml")


def test_a_contradictory_device_is_published_by_its_majority_and_flagged():
    """NVIDIA's mock NVML GB200: the H100's PCI id under a GB200's name, memory and CC."""
    with Run(MOCK_GB200, workloads_enabled=False) as run:
        text = run.tick(2).text.decode()
        info = re.findall(r'^gpulse_gpu_info\{([^}]*)\} 1$', text, re.M)
        assert len(info) == 4 and all('model="GB200"' in i and 'sku="GB200-186GB"' in i for i in info), info
        assert not any('model="H100"' in i for i in info)
        conflicts = re.findall(r"^gpulse_identity_conflict\{([^}]*)\} 1$", text, re.M)
        assert len(conflicts) == 4, conflicts
        for gpu, c in enumerate(sorted(conflicts, key=lambda c: re.search(r'gpu="(\d+)"', c)[1])):
            assert f'gpu="{gpu}"' in c and 'label="nvml:pci_device_id"' in c and 'label_value="0x2330"' in c
            assert 'field="model"' in c and 'nvml_value="GB200-186GB"' in c
        labels = run.sampler.current.snapshot.identity.labels()
        assert labels["gpulse.dev/model"] == "GB200" and labels["gpulse.dev/identity-conflicts"] == "4"
