"""Hippocampal relevance against hippocampal volume, r and p per method."""

from __future__ import annotations

from brainlrp import catalog
from brainlrp.report import figures as figs
from brainlrp.report import style
from brainlrp.report.html import Section, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import fmt_p, method_label


def paper_r(method: str) -> float | None:
    """The paper's r at the method's beta (``None`` for methods the paper did not test)."""
    return figs.PAPER_HIPPOCAMPUS_R.get(catalog.describe(method).paper_beta)


def build(ctx: Context, sec: Section) -> None:
    """Scatter plots per method and the r / p table beside the paper's r."""
    stats, subj = ctx.table("hippocampus"), ctx.table("hippocampus_subjects")
    fig = figs.hippocampus_figure(subj, stats, ctx.data.methods)
    sec.add(ctx.fig(fig, "hippocampus scatter plots",
                    "Each point is a true positive: hippocampal relevance (sum over the merged "
                    "Hippocampus area) against hippocampal volume, with the least-squares "
                    "line; r and two-sided permutation p per method.", "fig-hippocampus"))
    frame = stats.assign(**{"paper r": [paper_r(m) for m in stats["method"]],
                            "method": [method_label(m) for m in stats["method"]]})
    sec.add(table(frame, {"method": "method", "n_subjects": "n", "r": "r", "p_value": "p",
                          "n_permutations": "permutations", "paper r": "paper r"},
                  formats={"p_value": lambda v: fmt_p(v).replace("p = ", "").replace("p ", ""),
                           "r": style.fmt_r, "paper r": style.fmt_r},
                  table_id="hippocampus-table"))


SPEC = SectionSpec(
    "hippocampus", "Hippocampus: relevance and volume",
    "If relevance reflects atrophy, patients with smaller hippocampi should have more "
    "hippocampal relevance: Pearson r over the true positives with a permutation test (the "
    "paper: r = −0.56 at β = 0, weakening with β).",
    build, requires=("analysis/hippocampus.tsv", "analysis/hippocampus_subjects.tsv"),
    why="no hippocampus analysis: it needs a hippocampus_volume column in the cohort's "
        "participants.tsv and a Hippocampus area in the atlas",
    data=("analysis/hippocampus.tsv", "analysis/hippocampus_subjects.tsv"))
