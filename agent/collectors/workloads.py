"""Placeholder until its issue lands: yields no families."""

NAME = "workloads"


def collect(snapshot, config):
    return ()
