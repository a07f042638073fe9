"""Placeholder until its issue lands: yields no families."""

NAME = "dcgm_compat"


def collect(snapshot, config):
    return ()
