"""The report's sections, in page order: one module and one :class:`SectionSpec` each.

A section only lays out what the run's files hold (``analysis/``, ``regions/``,
``means/``, ``metrics.json``, ``predictions.tsv``); the numbers are computed by
``brainlrp analyze`` and ``brainlrp train``. Each spec names the files its section
needs, and :func:`~brainlrp.report.sections.spec.build` replaces a section whose
files are missing by a note saying which command writes them.

Modules: :mod:`.context` (what every section shares), :mod:`.spec` (the spec and
the missing-file mechanism), then one module per section in page order.
"""

from __future__ import annotations

from brainlrp.report.sections import (
    benchmark,
    beta,
    cards_list,
    faithfulness,
    fingerprints,
    ground_truth,
    group,
    hippocampus,
    individual,
    methods,
    regions,
    sanity,
    summary,
    training,
)
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec, build

#: The page, in order (the summary is built last: it reports the others' timings).
SECTIONS: tuple[SectionSpec, ...] = (
    summary.SPEC, benchmark.SPEC, training.SPEC, individual.SPEC, group.SPEC, regions.SPEC,
    fingerprints.SPEC, beta.SPEC, hippocampus.SPEC, ground_truth.SPEC, faithfulness.SPEC,
    sanity.SPEC, cards_list.SPEC, methods.SPEC)


def section_number(section_id: str) -> int:
    """The number of a section on the page (``§n``), from 1."""
    return 1 + [s.id for s in SECTIONS].index(section_id)


__all__ = ["SECTIONS", "Context", "SectionSpec", "build", "section_number"]
