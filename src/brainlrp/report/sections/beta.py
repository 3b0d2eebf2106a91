"""Sensitivity to beta: overlap of the top-10 areas between every pair of betas."""

from __future__ import annotations

from brainlrp import catalog
from brainlrp.report import figures as figs
from brainlrp.report.html import Section, details, note, table
from brainlrp.report.sections.context import Context, paper_methods
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import area_label

_EXPLAIN_BETAS = (f"the comparison needs two or more of the paper's LRP betas - run "
                  f"`brainlrp explain --methods {','.join(paper_methods()[0])}` and "
                  "`brainlrp analyze`")


def build(ctx: Context, sec: Section) -> None:
    """Overlap matrices and the shared areas per pair of the betas shown."""
    overlap = ctx.table("beta_overlap")
    betas = [m for m, _ in catalog.paper_betas(ctx.data.methods)]
    if overlap.empty or len(betas) < 2:
        sec.add(note(f"this run has {len(betas)} LRP β ({', '.join(betas) or 'none'}); "
                     + _EXPLAIN_BETAS))
        return
    fig = figs.beta_overlap_figure(overlap)
    sec.add(ctx.fig(fig, "beta overlap matrices",
                    f"Shared areas among the top {int(overlap['k'].iloc[0])} "
                    f"({overlap['group'].iloc[0]} group means) for every pair of betas.",
                    "fig-beta-overlap"))
    frame = overlap.assign(pair=[f"β={a:g} vs β={b:g}" for a, b in
                                 zip(overlap["beta_a"], overlap["beta_b"], strict=True)],
                           shared=[", ".join(area_label(x, 30) for x in str(s).split(";") if x
                                             and x != "nan")
                                   for s in overlap["shared_areas"]])
    sec.add(details("Shared areas per pair",
                    table(frame, {"pair": "pair", "measure": "measure", "n_shared": "shared",
                                  "shared": "areas"})))


SPEC = SectionSpec(
    "beta", "Sensitivity to β",
    "How much do the most relevant areas depend on the LRP rule's β? Overlap of the top-10 "
    "areas between every pair of betas, for sum, density and gain (the paper's beta "
    "sensitivity analysis).",
    build, requires=("analysis/beta_overlap.tsv",), why=_EXPLAIN_BETAS,
    data=("analysis/beta_overlap.tsv",))
