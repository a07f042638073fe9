"""The metric rows hold the reader, the catalog, `gpulse check` and the fake together."""

import pynvml
import pytest
from gpulse import catalog
from gpulse.cli import check_rows
from gpulse.nvml import metrics as m
from gpulse.nvml.reader import NvmlReader
from gpulse.sim import scenario
from gpulse.sim.knobs import KNOBS
from gpulse.sim.nvml import FakeNvml


def _reader(name, lib_class=FakeNvml):
    clock = [1.0]
    lib = lib_class(scenario.load(name), clock=lambda: clock[0])
    reader = NvmlReader(lib, clock=lambda: clock[0])
    reader.start()
    return reader, clock


def test_every_row_is_a_catalog_family_with_the_rows_facts():
    for row in m.ALL_METRICS:
        spec = catalog.BY_NAME[row.family]
        assert (spec.type, spec.unit, spec.help, spec.labels, spec.source) == \
            (row.type, row.unit, row.help, row.labels, row.source), row.family
        assert spec.collector == row.scope  # "gpu" rows render in the gpu collector, "mig" rows in mig
        if row.window == "max":
            assert row.of in m.BY_FAMILY and not row.reads
        else:
            assert row.reads, row.family


def test_every_read_names_pynvml_constants_and_a_simulator_knob():
    for read in m.reads():
        if isinstance(read, m.Call):
            assert callable(getattr(pynvml, read.function)), read
            assert all(hasattr(pynvml, a) for a in read.args), read
        elif isinstance(read, m.Field):
            assert hasattr(pynvml, read.const), read
        elif isinstance(read, m.Gpm):
            assert hasattr(pynvml, read.metric), read
        elif isinstance(read, m.Flags):
            assert all(hasattr(pynvml, const) for _, const in read.bits), read
        if not isinstance(read, m.Events):
            assert read.sim in KNOBS, f"{read}: no scenario knob can switch it off"


@pytest.mark.parametrize("name", scenario.builtin_names())
def test_the_readers_outputs_are_the_rows_families(name):
    """Every value the reader produces is a row family with the row's label shape: a typo in
    a row cannot lose a series silently."""
    reader, clock = _reader(name)
    try:
        for t in (2.0, 3.0, 4.0):
            clock[0] = t
            reading = reader.read(t)
        for d in reading.devices:
            for family in d.values:
                row = m.BY_FAMILY[family]
                assert row.scope == "gpu" and not row.label, family
            for family, samples in d.labeled.items():
                row = m.BY_FAMILY[family]
                assert row.label and all(len(k) == 1 for k in samples), family
        for mg in reading.migs:
            assert set(mg.values) <= {r.family for r in m.MIG_METRICS}
    finally:
        reader.stop()


def test_reference_h100_answers_every_supported_row():
    """On the simulated H100 (GPM, NVLink, no fan) every GPU row but the fan's has a value."""
    reader, clock = _reader("reference")
    try:
        for t in (2.0, 3.0):
            clock[0] = t
            reading = reader.read(t)
        dev = next(d for d in reading.devices if not d.mig_enabled)
        got = set(dev.values) | set(dev.labeled)
        expected = {r.family for r in m.DEVICE_METRICS if r.reads and not isinstance(r.reads[0], m.Events)}
        expected -= {"gpulse_gpu_fan_speed_ratio"}
        assert expected <= got, expected - got
    finally:
        reader.stop()


def test_check_lists_every_read_once():
    described = [what for _, what, _, _ in check_rows()]
    assert len(described) == len(set(described))
    for read in m.reads():
        if not isinstance(read, m.Events):
            assert any(read.describe() in w for w in described), read


def test_scaled_keeps_decimal_values_exact():
    assert m.scaled(70.0, 0.01) == 0.7
    assert m.scaled(36800.0, 1e-3) == 36.8
    assert m.scaled(2.0, 1024.0) == 2048.0
    assert m.scaled(1500.0, 1e6) == 1.5e9


# --- NVLink: summed over links, never link 0 alone -------------------------------------------
class ScopeIgnoringNvml(FakeNvml):
    """A driver that answers every NVLink scope with link 0's counter (the all-links scope
    included): the reader must notice and sum the links itself."""

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        asked = [(f[0], 0) if isinstance(f, tuple) and f[0] in NVLINK else f for f in field_ids]
        return super().nvmlDeviceGetFieldValues(handle, asked)


class NoAllLinksScopeNvml(FakeNvml):
    """An older driver that refuses the all-links scope."""

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        values = super().nvmlDeviceGetFieldValues(handle, field_ids)
        for v, f in zip(values, field_ids, strict=True):
            if isinstance(f, tuple) and f[1] == m.ALL_LINKS_SCOPE:
                v.nvmlReturn = pynvml.NVML_ERROR_INVALID_ARGUMENT
        return values


class MockNvmlScopes(FakeNvml):
    """NVIDIA's mock NVML (k8s-test-infra mocknvml engine/nvlink_fields.go): the scope is the link
    index, and the all-links scope (like any link past the last) answers SUCCESS with 0."""

    def nvmlDeviceGetFieldValues(self, handle, field_ids):
        values = super().nvmlDeviceGetFieldValues(handle, field_ids)
        for v, f in zip(values, field_ids, strict=True):
            if isinstance(f, tuple) and f[0] in NVLINK and f[1] == m.ALL_LINKS_SCOPE:
                v.nvmlReturn, v.value.ullVal = pynvml.NVML_SUCCESS, 0
        return values


NVLINK = (pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX)


def _per_link_sum(lib, handle, fid):
    links = [lib.nvmlDeviceGetFieldValues(handle, [(fid, link)])[0] for link in range(18)]
    return sum(v.value.ullVal for v in links) * 1024.0, links[0].value.ullVal * 1024.0


@pytest.mark.parametrize("lib_class", [FakeNvml, ScopeIgnoringNvml, NoAllLinksScopeNvml, MockNvmlScopes])
def test_nvlink_bytes_are_the_sum_over_all_links(lib_class):
    reader, clock = _reader("reference", lib_class)
    try:
        clock[0] = 30.0
        reading = reader.read(30.0)
        dev = next(d for d in reading.devices if not d.mig_enabled)
        handle = reader.devices[dev.index].handle
        total, link0 = _per_link_sum(reader.lib, handle, pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX)
        if lib_class is ScopeIgnoringNvml:  # this driver's per-link answers are all link 0's
            assert reader.devices[dev.index].links == tuple(range(18))
            total = link0 * 18
        if lib_class in (NoAllLinksScopeNvml, MockNvmlScopes):  # no usable all-links scope: each active link
            assert reader.devices[dev.index].links == tuple(range(18))
        got = dev.values["gpulse_gpu_nvlink_tx_bytes_total"]
        assert got == pytest.approx(total, rel=1e-6)
        assert got > link0 * 1.5, "link 0 alone under-reports an 18-link GPU"
    finally:
        reader.stop()


def test_all_links_scope_is_used_where_the_driver_sums_it():
    reader, _ = _reader("reference")
    try:
        reader.read(1.0)
        assert all(d.links == (m.ALL_LINKS_SCOPE,) for d in reader.devices)
    finally:
        reader.stop()


def test_unsupported_is_remembered_per_call_and_argument():
    """NOT_SUPPORTED for the memory clock must not stop the SM clock from being read."""

    class NoMemoryClock(FakeNvml):
        def nvmlDeviceGetClockInfo(self, handle, clock_type):
            if clock_type == pynvml.NVML_CLOCK_MEM:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return super().nvmlDeviceGetClockInfo(handle, clock_type)

    reader, clock = _reader("t4-legacy", NoMemoryClock)
    try:
        for t in (2.0, 3.0):
            clock[0] = t
            reading = reader.read(t)
        assert all("gpulse_gpu_sm_clock_hertz" in d.values for d in reading.devices)
        assert all("gpulse_gpu_memory_clock_hertz" not in d.values for d in reading.devices)
        assert "nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)" in reader.devices[0].unsupported
        assert "nvmlDeviceGetClockInfo(NVML_CLOCK_SM)" not in reader.devices[0].unsupported
        assert reader.outcomes[(0, "nvmlDeviceGetClockInfo(NVML_CLOCK_SM)")] == "ok"
        assert reader.outcomes[(0, "nvmlDeviceGetClockInfo(NVML_CLOCK_MEM)")] == "unsupported"
    finally:
        reader.stop()


def test_max_sm_clock_row_reads_the_simulated_part():
    """The row added as one line: nvmlDeviceGetMaxClockInfo(NVML_CLOCK_SM) in hertz."""
    reader, clock = _reader("t4-legacy")
    try:
        reading = reader.read(2.0)
        spec = scenario.load("t4-legacy").gpus[0]
        assert [d.values["gpulse_gpu_sm_clock_max_hertz"] for d in reading.devices] == [spec.max_sm_clock_mhz * 1e6] * 2
        busy = [d for d in reading.devices if d.values["gpulse_gpu_sm_clock_hertz"] > 345e6]
        assert all(d.values["gpulse_gpu_sm_clock_hertz"] <= d.values["gpulse_gpu_sm_clock_max_hertz"] for d in busy)
    finally:
        reader.stop()
