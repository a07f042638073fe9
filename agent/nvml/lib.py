"""Loads the NVML library: the driver's (through pynvml) or the scenario simulator."""

from __future__ import annotations


def load_real():
    """The pynvml module itself: the reader calls its functions by name."""
    import pynvml

    return pynvml


def load_fake(scenario, clock=None):
    from .fake import FakeNvml

    return FakeNvml(scenario, clock=clock)
