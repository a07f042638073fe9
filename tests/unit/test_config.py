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
    (["--cost.idle-threshold=1.5"], {}, "--cost.idle-threshold: ratio '1.5' must be between 0 and 1"),
    (["--cost.idle-threshold=lots"], {}, "--cost.idle-threshold: invalid ratio 'lots'"),
    (["--cost.basis=hours"], {}, "--cost.basis: invalid value 'hours' (one of: allocation, energy)"),
    ([], {"GPULSE_COST_PRICING_KIND": "Spot!"}, "GPULSE_COST_PRICING_KIND: invalid pricing kind"),
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


def test_cost_settings(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("prices: [{model: L4, cloud: onprem, per_gpu_hour: 0.4}]\n")
    cfg = c.load(_args("--cost.idle-threshold=10%", "--cost.pricing-kind=spot", "--cost.basis=energy",
                       f"--cost.price-file={prices}"), environ={})
    assert (cfg.cost_idle_threshold, cfg.cost_pricing_kind, cfg.cost_basis, cfg.cost_price_file) == \
        (0.1, "spot", "energy", str(prices))
    prices.write_text("prices: [{model: L4, cloud: onprem}]\n")
    with pytest.raises(c.ConfigError, match=r"^--cost.price-file: .*prices.yaml: prices\[0\]: per_gpu_hour: missing"):
        c.load(_args(f"--cost.price-file={prices}"), environ={})
    d = c.load(_args(), environ={})
    assert (d.cost_idle_threshold, d.cost_pricing_kind, d.cost_basis, d.cost_price_file) == \
        (0.05, "auto", "allocation", "")
    assert {"energy", "cost"} <= d.collectors


@pytest.mark.parametrize("argv,needle", [
    (["--collect.interval=1000000d"], "--collect.interval: duration '1000000d' is outside 100ms..10m"),
    (["--collect.interval=1ms"], "is outside 100ms..10m"),
    (["--workloads.scrape-timeout=1h"], "--workloads.scrape-timeout: duration '1h' is outside 10ms..1m"),
    (["--workloads.push-ttl=1000d"], "is outside 1s..60m"),
    (["--kubelet.refresh-interval=99999h"], "is outside 100ms..60m"),
    (["--workloads.max-body-bytes=99999999999"], "--workloads.max-body-bytes: integer '99999999999' is outside"),
    (["--workloads.concurrency=1000"], "is outside 1..64"),
    (["--limits.max-series=10000000"], "is outside 1..200000"),
    (["--web.max-connections=100000"], "is outside 1..4096"),
    (["--web.header-timeout=1h"], "is outside 100ms..1m"),
    (["--workloads.concurrency=64", "--workloads.max-body-bytes=4194304"], "bodies held at once"),
    (["--sources.dcgm-exporter-url=file:///etc/passwd"], "'file:///etc/passwd' is not an http(s) URL"),
    (["--sources.dcgm-exporter-url=gopher://x/"], "is not an http(s) URL"),
    (["--kube.apiserver=unix:///var/run/x"], "is not an http(s) URL"),
    (["--workloads.push-auth=maybe"], "invalid value 'maybe' (one of: pod, none)"),
    (["--node.name=" + "x" * 5000], "value of 5000 characters"),
])
def test_every_duration_and_size_is_bounded(argv, needle):
    with pytest.raises(c.ConfigError) as err:
        c.load(_args(*argv), environ={})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_every_duration_and_count_setting_has_bounds():
    for s in c.SETTINGS:
        if s.collector or s.is_bool:
            continue
        assert not (c.Config.__dataclass_fields__[s.attr].type in ("int", "float") and
                    not isinstance(s.parse, (c._Duration, c._Int)) and s.parse is not c._ratio), s.flag


def test_empty_source_url_is_off():
    assert c.load(_args("--sources.dcgm-exporter-url="), environ={}).sources_dcgm_exporter_url == ""


@pytest.mark.parametrize("content,needle", [
    (b"".join(b"x%d: &x%d {%s}\n" % (i, i, b", ".join(b"%c: %s" % (k, b"1" if i == 0 else b"*x%d" % (i - 1))
                                                          for k in b"abcdefghi")) for i in range(9)),
     "aliases are expanded (an alias bomb?)"),
    (b"log.level: \xff\xfe info\n", "gpulse.yaml:1: not UTF-8 text (byte 11)"),
    (b"collect.interval: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper than 64 levels"),
])
def test_hostile_config_files_are_one_line(tmp_path, content, needle):
    f = tmp_path / "gpulse.yaml"
    f.write_bytes(content)
    with pytest.raises(c.ConfigError) as err:
        c.load(_args(f"--config.file={f}"), environ={})
    assert needle in str(err.value) and "\n" not in str(err.value)
