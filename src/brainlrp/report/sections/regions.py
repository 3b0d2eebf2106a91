"""Relevance per brain area: sum, density and gain of the top areas, violins AD vs HC
with patients A and B, the top gain areas of every method and total relevance per group."""

from __future__ import annotations

import pandas as pd

from brainlrp.report import figures as figs
from brainlrp.report import style
from brainlrp.report.html import Section, heading, note, table
from brainlrp.report.inputs import per_participant
from brainlrp.report.sections.context import (
    MIN_AREA_FRACTION,
    Context,
    diagnosis,
    large_areas,
)
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import area_label, method_label

#: Rows of the per-method table of top gain areas.
TOP_GAIN_SHOWN = 10
MEASURES = ("sum", "density", "gain")


def ranked_areas(top_areas: pd.DataFrame, method: str) -> tuple[str | None, dict[str, list]]:
    """A method's ranking group and its top areas per measure, highest first."""
    rows = top_areas[top_areas["method"] == method].sort_values("rank")
    if rows.empty:
        return None, {m: [] for m in MEASURES}
    return (str(rows["group"].iloc[0]),
            {m: rows.loc[rows["measure"] == m, "area"].tolist() for m in MEASURES})


def small_area_caveat(ctx: Context, ranked: list[str]) -> str:
    """A caption's warning naming the areas of ``analyze``'s density ranking that are
    smaller than the cards' minimum (empty when there are none)."""
    small = [a for a in ranked if a not in set(large_areas(ctx.data, ctx.main))]
    if not small:
        return ""
    names = ", ".join(area_label(a) for a in small[:4]) + (", …" if len(small) > 4 else "")
    return (f" Caution: the density ranking includes {len(small)} small area"
            f"{'s' if len(small) != 1 else ''} ({names}; under "
            f"{100 * MIN_AREA_FRACTION:g} % of the atlas's voxels), whose few voxels make "
            "density noisy; the cards and examples rank only larger areas.")


def build(ctx: Context, sec: Section) -> None:
    """Bars and violins of the main method; tables over every method."""
    from brainlrp.report.sections import section_number

    data, main = ctx.data, ctx.main
    unit = ctx.method_unit(main)
    top_areas = ctx.table("top_areas")
    rank_group, top = ranked_areas(top_areas, main)
    if rank_group is None:
        sec.add(note("no AD subjects were analysed, so there is nothing to rank"))
        return
    groups = {g: data.group_areas(main, g) for g in style.GROUPS}
    fig = figs.region_bars(groups, unit, top, rank_group)
    n = max(len(v) for v in top.values())
    sec.add(ctx.fig(fig, "relevance sum, density and gain of the top areas",
                    f"{method_label(main)}: group means of the {n} top areas for each measure, "
                    f"ranked by the {rank_group} group. Gain above 1 (dotted) means more "
                    "relevance than in the controls." + small_area_caveat(ctx, top["density"]),
                    "fig-region-bars"))
    dens = data.area_density(main)
    sub = data.subjects(main).drop_duplicates("scan_id")[["scan_id", "participant_id"]]
    per = per_participant(dens, sub)
    summary = data.summary.method(main)
    patients = {letter: (str(pid), per.loc[str(pid)])
                for letter, pid in (("A", summary.patient_a), ("B", summary.patient_b))
                if pid is not None and str(pid) in per.index}
    fig = figs.density_violins(per, diagnosis(data), top["density"], unit, patients)
    caption = (f"{method_label(main)}: relevance density of each subject in the "
               f"{len(top['density'])} areas of highest mean density ({rank_group}); AD above, "
               "HC below each line.")
    if patients:
        caption += (" Patients A and B are the two confident patients (p(AD) > 0.9) whose "
                    f"fingerprints differ most (§{section_number('fingerprints')}).")
    sec.add(ctx.fig(fig, "density violins AD vs HC", caption, "fig-density-violins"))
    if len(patients) < 2:
        sec.add(note("patients A and B need at least two true positives with p(AD) > 0.9",
                     "info"))
    gain = {method_label(m): [area_label(a, 30) for a in
                              ranked_areas(top_areas, m)[1]["gain"][:TOP_GAIN_SHOWN]]
            for m in data.methods}
    gain = {m: areas for m, areas in gain.items() if areas}
    if gain:
        frame = pd.DataFrame({m: pd.Series(areas) for m, areas in gain.items()})
        frame.insert(0, "rank", range(1, len(frame) + 1))
        sec.add(heading(f"Top-{TOP_GAIN_SHOWN} areas by gain, per method"),
                table(frame, caption=f"Areas with the highest gain ({rank_group} / HC) for each "
                                     "method.", table_id="gain-by-method"))
    totals = ctx.table("relevance_totals")
    if len(totals):
        pivot = totals.pivot_table(index="method", columns="group",
                                   values="mean_total_relevance", aggfunc="first")
        pivot = pivot.reindex([m for m in data.methods if m in pivot.index])
        pivot = pivot[[g for g in style.GROUPS if g in pivot.columns]]
        pivot["HC / AD"] = [data.summary.method(m).hc_ad_ratio for m in pivot.index]
        pivot.index = [method_label(m) for m in pivot.index]
        sec.add(heading("Total relevance per group"),
                table(pivot.reset_index(names="method"),
                      caption="Mean total (whole-brain) relevance per subject; the paper "
                              "found very little relevance in controls.",
                      table_id="relevance-totals"))


SPEC = SectionSpec(
    "regions", "Relevance per brain area",
    "Relevance summed over each of the atlas's areas (left and right merged), per voxel "
    "(density) and relative to the controls (gain = group mean / HC mean), for the 25 areas "
    "ranked highest in the true positives, as in the paper.",
    build, requires=("analysis/top_areas.tsv",),
    optional=(("analysis/relevance_totals.tsv", "the total relevance per group"),),
    data=("analysis/top_areas.tsv", "regions/{method}/groups.tsv", "regions/{main}/subjects.tsv",
          "analysis/relevance_totals.tsv"))
