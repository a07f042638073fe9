"""Identity publishing: resolve on change, rewrite the NFD file every minute, keep the last good."""

from gpulse.identity.publisher import IdentityPublisher, NodeObject
from gpulse.identity.resolver import IdentityResolver
from gpulse.nvml.reading import DeviceFacts, DeviceReading, NvmlReading


def reading(profiles=()):
    return NvmlReading(0.0, devices=(DeviceReading(0, "GPU-0", "NVIDIA A100-SXM4-80GB", mig_enabled=bool(profiles),
                                                   facts=DeviceFacts(name="NVIDIA A100-SXM4-80GB", pci_device_id=0x20B2,
                                                                     memory_mib=81920, compute_capability="8.0",
                                                                     mig_capable=True, mig_enabled=bool(profiles),
                                                                     mig_profiles=tuple(profiles))),))


class CountingResolver(IdentityResolver):
    def __init__(self):
        super().__init__("/nonexistent")
        self.calls = 0
        self.fail = False

    def resolve(self, reading, node=None):
        self.calls += 1
        if self.fail:
            raise RuntimeError("tables broken")
        return super().resolve(reading, node)


def test_resolves_on_change_and_every_five_minutes(tmp_path):
    resolver = CountingResolver()
    pub = IdentityPublisher(resolver, None, str(tmp_path / "gpulse"))
    view = pub.update(reading(), 0.0)
    assert view.gpus["GPU-0"].model == "A100" and resolver.calls == 1
    pub.update(reading(), 1.0)
    assert resolver.calls == 1, "nothing changed"
    view = pub.update(reading(("1g.10gb",) * 7), 2.0)
    assert resolver.calls == 2 and view.gpus["GPU-0"].mig_enabled, "a MIG change resolves again"
    pub.update(reading(("1g.10gb",) * 7), 303.0)
    assert resolver.calls == 3


def test_node_object_changes_resolve_again():
    resolver = CountingResolver()
    node = NodeObject(lambda: {"metadata": {"name": "n1", "labels": {}}, "spec": {"providerID": "aws:///us-east-1a/i-1"}})
    pub = IdentityPublisher(resolver, node, "")
    pub.update(reading(), 0.0)
    assert node.refresher.run_once()
    view = pub.update(reading(), 1.0)
    assert resolver.calls == 2 and view.node.cloud == "aws"


def test_nfd_file_rewritten_every_minute_and_failures_keep_the_last_identity(tmp_path):
    path = tmp_path / "gpulse"
    resolver = CountingResolver()
    pub = IdentityPublisher(resolver, None, str(path))
    first = pub.update(reading(), 0.0)
    assert "gpulse.dev/model=A100" in path.read_text()
    path.unlink()
    pub.update(reading(), 30.0)
    assert not path.exists()
    pub.update(reading(), 61.0)
    assert path.exists()
    resolver.fail = True
    assert pub.update(reading(("2g.20gb",)), 62.0) is first


def test_unwritable_nfd_directory_is_a_warning(tmp_path, caplog):
    pub = IdentityPublisher(CountingResolver(), None, str(tmp_path / "missing" / "gpulse"))
    assert pub.update(reading(), 0.0) is not None
    assert "cannot write NFD feature file" in caplog.text
