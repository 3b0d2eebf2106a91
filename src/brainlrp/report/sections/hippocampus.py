"""Hippocampal relevance against hippocampal volume, r and p per method."""

from __future__ import annotations

from brainlrp import catalog
from brainlrp.report import figures as figs
from brainlrp.report import glossary, paper, style
from brainlrp.report.html import Section, fmt, note, paragraph, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import fmt_p, method_html

#: Why a method has no paper r (shown as the cell's tooltip).


def paper_r(method: str) -> float | None:
    """The paper's r at the method's beta (``None`` for methods the paper did not test)."""
    return paper.HIPPOCAMPUS_R.get(catalog.describe(method).paper_beta)


def build(ctx: Context, sec: Section) -> None:
    """Scatter plots per method, the r / p table beside the paper's r, the paper's β = 0
    compared with this run's, and the floors that correlate more strongly."""
    from brainlrp.report.sections.summary import paper_match

    stats, subj = ctx.table("hippocampus"), ctx.table("hippocampus_subjects")
    match = paper_match(ctx.data)
    if match is not None:
        method, beta, r, paper_value = match
        n = ctx.data.summary.method(method).hippocampus_n or 0
        result = (f"gives r = {style.fmt_r(r).replace('-', '−')} (n = {n})" if r is not None
                  else f"has too few true positives for r (n = {n})")
        sec.add(paragraph(fmt(
            "Like with like: the paper's r = {} is for its LRP at β = {}; the same method on "
            "this run, {}, {}. Other methods have no paper value.",
            style.fmt_r(paper_value).replace("-", "−"), f"{beta:g}", method_html(method),
            result)))
    fig = figs.hippocampus_figure(subj, stats, ctx.data.methods)
    sec.add(ctx.fig(fig, "hippocampus scatter plots",
                    "Each point is a true positive: hippocampal relevance (sum over the merged "
                    "Hippocampus area) against hippocampal volume, with the least-squares "
                    "line; r and two-sided permutation p per method.", "fig-hippocampus"))
    frame = stats.assign(**{
        "paper r": [style.fmt_r(paper_r(m)) if paper_r(m) is not None
                    else glossary.na_cell(paper.NOT_IN_PAPER) for m in stats["method"]],
        "label": [method_html(m) for m in stats["method"]]})
    sec.add(table(frame, {"label": "method", "n_subjects": "n",
                          "r": glossary.header("hippocampus_r"), "p_value": "p",
                          "n_permutations": "permutations", "paper r": "paper r"},
                  formats={"p_value": lambda v: fmt_p(v).replace("p = ", "").replace("p ", ""),
                           "r": style.fmt_r},
                  numeric=["n_subjects", "r", "p_value", "n_permutations", "paper r"],
                  table_id="hippocampus-table"))
    values = dict(zip(stats["method"], stats["r"], strict=True))
    for text in glossary.floor_notes({"hippocampus_r": values}, ctx.data.summary.top_k):
        sec.add(note(text, "info"))


SPEC = SectionSpec(
    "hippocampus", "Hippocampus: relevance and volume",
    "If relevance reflects atrophy, patients with smaller hippocampi should have more "
    "hippocampal relevance: Pearson r over the true positives with a permutation test (the "
    "paper: r = −0.56 at β = 0, weakening with β).",
    build, requires=("analysis/hippocampus.tsv", "analysis/hippocampus_subjects.tsv"),
    why="no hippocampus analysis: it needs a hippocampus_volume column in the cohort's "
        "participants.tsv and a Hippocampus area in the atlas",
    data=("analysis/hippocampus.tsv", "analysis/hippocampus_subjects.tsv"))
