"""MIG families: one sample per MIG instance per catalog family with a known value
(MigState.values, keyed by family name). A value not known is omitted, never NaN."""

from __future__ import annotations

from .. import catalog

NAME = "mig"
_SPECS = catalog.for_collector(NAME)


def collect(snapshot, config):
    for spec in _SPECS:
        fam = catalog.family(spec.name)
        for m in snapshot.migs:
            fam.add((str(m.gpu), m.uuid, str(m.gpu_instance), str(m.compute_instance), m.profile, m.mig_uuid),
                    m.values.get(spec.name))
        yield fam
