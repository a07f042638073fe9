import argparse

import pytest
from gpulse import config as c


def _args(*argv):
    p = argparse.ArgumentParser()
    c.add_flags(p)
    return p.parse_args(list(argv))


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("1s", 1.0), ("1m", 60.0), ("1m30s", 90.0), ("2h", 7200.0), ("1.5s", 1.5)])
def test_durations_the_prometheus_way(text, seconds):
    assert c.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "10 s", "1sec", "-1s", "s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        c.parse_duration(text)


def test_defaults():
    cfg = c.load(_args(), environ={})
    assert cfg.web_listen_address == ":9445"
    assert cfg.collect_interval == 1.0
    assert cfg.nvml_backend == "real"
    assert cfg.kubelet_pod_resources_socket == "/var/lib/kubelet/pod-resources/kubelet.sock"


def test_precedence_flag_over_env_over_file(tmp_path):
    f = tmp_path / "gpulse.yaml"
    f.write_text("collect:\n  interval: 5s\n  window: 30s\nweb.listen-address: ':7000'\n")
    env = {"GPULSE_CONFIG_FILE": str(f), "GPULSE_COLLECT_INTERVAL": "2s", "NODE_NAME": "node-a"}
    cfg = c.load(_args("--collect.interval=3s"), environ=env)
    assert cfg.collect_interval == 3.0  # flag
    assert cfg.collect_window == 30.0  # file
    assert cfg.web_listen_address == ":7000"
    assert cfg.node_name == "node-a"  # downward API alias
    assert c.load(_args(), environ=env).collect_interval == 2.0  # env over file


def test_config_is_frozen():
    cfg = c.load(_args(), environ={})
    with pytest.raises(Exception):
        cfg.collect_interval = 2


@pytest.mark.parametrize("argv,env,needle", [
    (["--collect.interval=fast"], {}, "--collect.interval: invalid duration 'fast'"),
    (["--nvml.backend=gpu"], {}, "--nvml.backend: invalid value 'gpu' (one of: real, fake)"),
    ([], {"GPULSE_WEB_LISTEN_ADDRESS": "nowhere"}, "GPULSE_WEB_LISTEN_ADDRESS: invalid listen address"),
    ([], {"GPULSE_COMPAT_DCGM": "maybe"}, "GPULSE_COMPAT_DCGM: invalid boolean"),
    (["--workloads.concurrency=0"], {}, "--workloads.concurrency: integer '0' must be positive"),
])
def test_bad_values_name_the_setting(argv, env, needle):
    with pytest.raises(c.ConfigError) as err:
        c.load(_args(*argv), environ=env)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("collect:\n  intervall: 1s\n")
    with pytest.raises(c.ConfigError, match=r"unknown setting 'collect.intervall'"):
        c.load(_args(f"--config.file={f}"), environ={})
    f.write_text("collect: [1, 2\n")
    with pytest.raises(c.ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        c.load(_args(f"--config.file={f}"), environ={})
    with pytest.raises(c.ConfigError, match="cannot read"):
        c.load(_args(f"--config.file={tmp_path}/missing.yaml"), environ={})


@pytest.mark.parametrize("argv,needle", [
    (["--collect.interval=10s", "--collect.window=5s"], "--collect.window (5s) must be at least --collect.interval (10s)"),
    (["--collect.interval=100ms", "--collect.window=10m"], "holds more than 1024 ticks"),
])
def test_settings_checked_together(argv, needle):
    with pytest.raises(c.ConfigError) as err:
        c.load(_args(*argv), environ={})
    assert needle in str(err.value)


def test_booleans_are_switches_and_still_take_values():
    from tests.conftest import load_flags
    assert load_flags(["--kube.enabled"]).kube_enabled is True
    assert load_flags(["--no-kube.enabled"]).kube_enabled is False
    assert load_flags(["--kube.enabled=false"]).kube_enabled is False
    assert load_flags(["--no-workloads.enabled"], environ={"GPULSE_WORKLOADS_ENABLED": "true"}).workloads_enabled is False


def test_collector_switches_from_flags_env_and_file(tmp_path):
    from tests.conftest import load_flags
    assert "dcgm_compat" in load_flags(["--compat.dcgm"]).collectors  # dcgm-exporter users' spelling
    assert "dcgm_compat" not in load_flags(["--compat.dcgm", "--no-compat.dcgm"]).collectors
    assert "dcgm_compat" in load_flags([], environ={"GPULSE_COMPAT_DCGM": "1"}).collectors
    f = tmp_path / "gpulse.yaml"
    f.write_text("collector:\n  mig: false\n  dcgm_compat: true\n")
    cfg = load_flags([f"--config.file={f}"])
    assert "mig" not in cfg.collectors and "dcgm_compat" in cfg.collectors and "gpu" in cfg.collectors
    with pytest.raises(c.ConfigError, match="--collector.gpu: invalid boolean 'maybe'"):
        load_flags(["--collector.gpu=maybe"])


def test_overrides_are_validated_like_any_input():
    base = c.Config()
    cfg = c.with_overrides(base, {"path.procfs": "/host/proc", "node.name": "n1"}, "scenario reference")
    assert (cfg.path_procfs, cfg.node_name) == ("/host/proc", "n1") and base.path_procfs == "/proc"
    with pytest.raises(c.ConfigError, match="scenario x: unknown setting 'path.proc'"):
        c.with_overrides(base, {"path.proc": "/p"}, "scenario x")
    with pytest.raises(c.ConfigError, match="scenario x: collect.interval: invalid duration"):
        c.with_overrides(base, {"collect.interval": "often"}, "scenario x")


def test_every_config_field_has_one_setting_and_a_typed_default():
    import dataclasses
    fields = {f.name: f for f in dataclasses.fields(c.Config)}
    assert {s.attr for s in c.SETTINGS} == set(fields)
    for s in c.SETTINGS:
        if not s.collector:
            assert fields[s.attr].type != "Any", s.flag
