"""Holds the fake NVML to the installed pynvml: names, signatures, codes, result attributes."""

import ast
import inspect
import os

import pynvml
import pytest
from gpulse.nvml import reader as reader_mod
from gpulse.sim import scenario
from gpulse.sim.nvml import FakeNvml

from tests.conftest import ROOT

FAKE_FUNCTIONS = sorted(n for n, v in vars(FakeNvml).items() if n.startswith("nvml") and callable(v))


def _reader_calls() -> set:
    """Every NVML function name agent/nvml/reader.py calls, by string or attribute."""
    tree = ast.parse(open(reader_mod.__file__).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("nvml") \
                and node.value.isidentifier() and not node.value.startswith("nvmlClocks"):
            names.add(node.value)
        on_lib = isinstance(node, ast.Attribute) and (
            (isinstance(node.value, ast.Name) and node.value.id == "lib")
            or (isinstance(node.value, ast.Attribute) and node.value.attr == "lib"))
        if on_lib and node.attr.startswith("nvml") and not node.attr.startswith(("nvmlClocks", "nvmlEventType")):
            names.add(node.attr)
    return names


@pytest.mark.parametrize("name", FAKE_FUNCTIONS)
def test_fake_function_exists_in_pynvml_with_compatible_signature(name):
    real = getattr(pynvml, name, None)
    assert callable(real), f"{name} is not a pynvml function"
    fake_params = list(inspect.signature(getattr(FakeNvml, name)).parameters.values())[1:]
    real_params = list(inspect.signature(real).parameters.values())
    required = lambda ps: [p for p in ps if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
    assert len(required(fake_params)) == len(required(real_params)), f"{name}: required arguments differ"
    assert len(fake_params) >= len(real_params), f"{name}: the fake accepts fewer arguments than pynvml"


def test_reader_calls_only_functions_both_have():
    called = _reader_calls()
    assert "nvmlDeviceGetFieldValues" in called and "nvmlGpmMigSampleGet" in called
    for name in sorted(called):
        assert callable(getattr(pynvml, name, None)), f"reader calls {name}, which pynvml lacks"
        assert name in FAKE_FUNCTIONS, f"reader calls {name}, which the fake does not simulate"


def test_constants_and_error_classes_are_pynvmls():
    fake = FakeNvml(scenario.load("t4-legacy"))
    for name in dir(pynvml):
        if name.startswith(("NVML_", "nvmlClocksEventReason", "nvmlEventType")):
            assert getattr(fake, name) == getattr(pynvml, name), name
    assert fake.NVMLError is pynvml.NVMLError
    err = fake.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    assert isinstance(err, pynvml.NVMLError_NotSupported) and err.value == 3
    assert isinstance(fake.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST), pynvml.NVMLError_GpuIsLost)


def test_unimplemented_function_answers_function_not_found():
    fake = FakeNvml(scenario.load("t4-legacy"))
    fake.nvmlInit()
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        fake.nvmlDeviceGetBAR1MemoryInfo(fake.nvmlDeviceGetHandleByIndex(0))


def _fields(struct) -> set:
    return {f[0] for f in struct._fields_}


def test_result_attribute_names_exist_in_pynvml_structures():
    s = scenario.load("reference")
    fake = FakeNvml(s, clock=lambda: 2.0)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(4)
    proc = fake.nvmlDeviceGetComputeRunningProcesses(h)[0]
    assert set(vars(proc)) <= _fields(pynvml.c_nvmlProcessInfo_v2_t)
    sample = fake.nvmlDeviceGetProcessUtilization(h, 0)[0]
    assert isinstance(sample, pynvml.c_nvmlProcessUtilizationSample_t)
    request = fake.c_nvmlGpmMetricsGet_t()
    assert set(vars(request)) == _fields(pynvml.c_nvmlGpmMetricsGet_t)
    assert set(vars(request.metrics[0])) <= _fields(pynvml.c_nvmlGpmMetric_t)
    assert len(request.metrics) == pynvml.NVML_GPM_METRIC_MAX
    event_set = fake.nvmlEventSetCreate()
    s_faults = scenario.load(os.path.join(ROOT, "tests", "fixtures", "scenarios", "faults.yaml"))
    fake2 = FakeNvml(s_faults, clock=lambda: 10.0)
    fake2.nvmlInit()
    event_set = fake2.nvmlEventSetCreate()
    fake2.nvmlDeviceRegisterEvents(fake2.nvmlDeviceGetHandleByIndex(1), pynvml.nvmlEventTypeXidCriticalError, event_set)
    data = fake2.nvmlEventSetWait_v2(event_set, 10)
    assert set(vars(data)) == _fields(pynvml.c_nvmlEventData_t)
    assert isinstance(fake.nvmlDeviceGetUtilizationRates(h), pynvml.c_nvmlUtilization_t)
    assert isinstance(fake.nvmlDeviceGetMemoryInfo(h), pynvml.c_nvmlMemory_t)
    assert isinstance(fake.nvmlDeviceGetPciInfo(h), pynvml.nvmlPciInfo_t)
