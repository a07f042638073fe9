"""gpulse: a GPU node agent that serves Prometheus metrics."""

__version__ = "0.1.0"
