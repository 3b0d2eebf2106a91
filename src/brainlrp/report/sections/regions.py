"""Relevance per brain area: sum, density and gain of the top areas, violins AD vs HC
with patients A and B, the top gain areas of every method and total relevance per group."""

from __future__ import annotations

import pandas as pd

from brainlrp import catalog
from brainlrp.analysis.scans import per_participant
from brainlrp.report import figures as figs
from brainlrp.report import glossary, style
from brainlrp.report.html import Section, heading, note, table
from brainlrp.report.sections.context import (
    MIN_AREA_FRACTION,
    Context,
    diagnosis,
    large_areas,
)
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import area_label, method_html, method_label

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
    gain = {m: [area_label(a, 30) for a in ranked_areas(top_areas, m)[1]["gain"][:TOP_GAIN_SHOWN]]
            for m in data.methods}
    gain = {m: areas for m, areas in gain.items() if areas}
    if gain:
        # One row per method (label and id), one column per rank: the page stays as wide
        # as ten ranks however many methods the run has.
        ranks = range(1, max(len(a) for a in gain.values()) + 1)
        frame = pd.DataFrame([{"method": method_html(m), **dict(zip(map(str, ranks), areas,
                                                                     strict=False))}
                              for m, areas in gain.items()])
        sec.add(heading(f"Top-{TOP_GAIN_SHOWN} areas by gain, per method"),
                table(frame, {"method": "method", **{str(r): f"{r}." for r in ranks}},
                      caption=f"Areas with the highest gain ({rank_group} / HC) for each "
                              "method, by rank.", table_id="gain-by-method"))
    totals = ctx.table("relevance_totals")
    if len(totals):
        sec.add(heading("Total relevance per group"), *totals_table(ctx, totals))

def totals_table(ctx: Context, totals: pd.DataFrame) -> list:
    """The mean total relevance per group and method, with the HC/AD ratio ("n/a" with
    its reason where it does not apply), and notes on the ratios above 1."""
    data = ctx.data
    pivot = totals.pivot_table(index="method", columns="group", values="mean_total_relevance",
                               aggfunc="first")
    pivot = pivot.reindex([m for m in data.methods if m in pivot.index])
    pivot = pivot[[g for g in style.GROUPS if g in pivot.columns]]
    ratio = {}
    for m in pivot.index:
        reason = glossary.not_applicable("hc_ad", m)
        ratio[m] = (glossary.na_cell(reason) if reason
                    else style.fmt_number(data.summary.method(m).hc_ad_ratio))
    frame = pivot.reset_index(names="method")
    frame["hc_ad"] = [ratio[m] for m in frame["method"]]
    frame["label"] = [method_html(m) for m in frame["method"]]
    columns = {"label": "method", **{g: g for g in pivot.columns},
               "hc_ad": glossary.header("hc_ad")}
    out = [table(frame, columns, numeric=[*pivot.columns, "hc_ad"],
                 caption="Mean total (whole-map) relevance per subject of each group; the "
                         "paper found very little relevance in controls (HC/AD well below 1). "
                         f"{glossary.NOT_APPLICABLE}: the ratio does not apply (hover for "
                         "why).", table_id="relevance-totals")]
    out += [note(text, "info") for text in above_one_notes(data)]
    return out


SPEC = SectionSpec(
    "regions", "Relevance per brain area",
    "Relevance summed over each of the atlas's areas (left and right merged), per voxel "
    "(density) and relative to the controls (gain = group mean / HC mean), for the 25 areas "
    "ranked highest in the true positives, as in the paper.",
    build, requires=("analysis/top_areas.tsv",),
    optional=(("analysis/relevance_totals.tsv", "the total relevance per group"),),
    data=("analysis/top_areas.tsv", "regions/{method}/groups.tsv", "regions/{main}/subjects.tsv",
          "analysis/relevance_totals.tsv"))




def subject_totals(data, method: str) -> pd.Series:
    """Each participant's total relevance inside the atlas areas (scans averaged), from
    ``regions/<method>/subjects.tsv``."""
    sub = data.subjects(method)
    per_scan = sub.groupby("scan_id")["relevance_sum"].sum().to_frame("total")
    return per_participant(per_scan, sub.drop_duplicates("scan_id"))["total"]


def above_one_notes(data) -> list[str]:
    """What lies behind each HC/AD relevance above 1, from the run's own tables.

    ``relevance_totals.tsv`` holds group means only; one control with a far larger map
    than the others can lift the mean of all controls. The note therefore gives, from
    ``regions/<method>/subjects.tsv``, the median control against the median patient and
    the share of the controls' total that the largest control carries. Where one control
    carries most of it and the method explains against a reference, it also says why
    such a map arises: relevance starts at p(AD | scan) - p(AD | reference) placed on
    the AD logit (:func:`brainlrp.explain.lrp.attribution.explain`), so every voxel's
    share is multiplied by that difference over the AD logit's own change; when the AD
    logit hardly changes (p(AD) moved through the other logit), the factor is large and
    the whole map is inflated, of both signs. (Checked on the demo: the control behind
    lrp-ref@mean's HC/AD of 3.5 has an AD logit 0.004 from the mean control's, a factor
    of -15 where the other scans have 0.1 to 0.6; without it HC/AD is 0.58.)

    Parameters
    ----------
    data : RunData

    Returns
    -------
    list of str
        One note for all methods with HC/AD above 1 (where the ratio applies), or none.
    """
    dx = diagnosis(data)
    parts, inflated = [], []
    for m in data.methods:
        ratio = data.summary.method(m).hc_ad_ratio
        if glossary.not_applicable("hc_ad", m) or ratio is None or not ratio > 1:
            continue
        per = subject_totals(data, m)
        hc, ad = per[dx.reindex(per.index) == "HC"], per[dx.reindex(per.index) == "AD"]
        if hc.empty or ad.empty or not ad.median() > 0 or not hc.sum() > 0:
            continue
        top, share = str(hc.idxmax()), float(hc.max() / hc.sum())
        without = hc.drop(top).mean() / ad.mean() if len(hc) > 1 else float("nan")
        text = (f"{method_label(m)}: {ratio:.2f}; median control {hc.median():.3g} against "
                f"median patient {ad.median():.3g} (HC/AD of the medians "
                f"{hc.median() / ad.median():.2f}); the largest control, {top}, carries "
                f"{100 * share:.0f} % of the controls' total")
        if share > 0.5 and len(hc) > 1:
            text += f" (without it HC/AD is {without:.2f})"
            if catalog.describe(m).needs_reference:
                inflated.append(top)
        parts.append(text)
    if not parts:
        return []
    note = (f"{glossary.name('hc_ad')} above 1, and what lies behind it (each participant's "
            "total positive relevance inside the atlas areas, regions/<method>/subjects.tsv): "
            + "; ".join(parts) + ".")
    if inflated:
        note += (" One control carrying most of its group's relevance under a reference "
                 f"method ({', '.join(dict.fromkeys(inflated))}) is most likely an inflated "
                 "map, not evidence for AD: relevance starts at p(AD | scan) − p(AD | "
                 "reference) on the AD logit and each voxel's share is multiplied by that "
                 "difference over the AD logit's own change; when the AD logit hardly "
                 "changes (p(AD) moved through the other class's logit), the factor is large "
                 "and the whole map grows, positive and negative parts alike, while it still "
                 "sums to the small difference in p(AD).")
    return [note]
