"""Individual explanations: a TP, FP, TN and FN example, the main method beside the
comparison."""

from __future__ import annotations

import pandas as pd

from brainlrp import catalog
from brainlrp.report import figures as figs
from brainlrp.report import style
from brainlrp.report.html import Safe, Section, fmt, heading, note
from brainlrp.report.inputs import RunData
from brainlrp.report.niivue import example_viewer
from brainlrp.report.sections.context import (
    Context,
    min_area_text,
    paper_methods,
    scan_ranking,
)
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import method_label


def example_scans(data: RunData) -> dict[str, pd.Series | None]:
    """One test scan per outcome: the most confident TP/TN and the most confident errors."""
    scans = data.test_scans()
    out = {}
    for outcome, ascending in (("TP", False), ("FP", False), ("TN", True), ("FN", True)):
        part = scans[scans["outcome"] == outcome].sort_values(["p_ad", "scan_id"],
                                                             ascending=[ascending, True])
        out[outcome] = part.iloc[0] if len(part) else None
    return out


def intro(ctx: Context) -> str:
    """The intro names the methods shown."""
    return ("One test subject per outcome - the most confident true positive, false "
            "positive, true negative and false negative - explained by "
            f"{method_label(ctx.main)}"
            + (f" beside {method_label(ctx.compare)}" if ctx.compare else "")
            + f". Slices meet at the peak of the {method_label(ctx.main)} map; the three "
            "areas of highest relevance density in this subject (same method) are outlined.")


def build(ctx: Context, sec: Section) -> None:
    """One explanation figure per outcome present in the test set."""
    data = ctx.data
    if ctx.compare is None:
        betas, compare = paper_methods()
        pair = [*betas[:1], *([compare] if compare else [])]
        what = catalog.describe(compare).description if compare else "another method"
        sec.add(note(f"only one method was analysed - run `brainlrp explain --methods "
                     f"{','.join(pair)}` and `brainlrp analyze` to compare LRP with {what}"))
    examples = example_scans(data)
    chosen = {k: v for k, v in examples.items() if v is not None}
    if not chosen:
        sec.add(note("no test scans to show"))
        return
    ids = [str(v["scan_id"]) for v in chosen.values()]
    backgrounds, reason = ctx.scans(ids)
    if reason:
        sec.add(note(f"background: {reason}", "info"))
    atlas = ctx.atlas()
    ranking = scan_ranking(data, ctx.main)
    methods = [ctx.main] + ([ctx.compare] if ctx.compare else [])
    heat = {(o, m): data.heatmap(m, str(row["scan_id"])) for o, row in chosen.items()
            for m in methods}
    # LRP conserves relevance from p(AD) down: one colour scale per LRP method across the
    # examples shows a control's weak map as weak. Gradient-based maps are not on a
    # common footing between scans, so each keeps its own scale.
    vmax = {m: max((figs.robust_max(h) for (_, mm), h in heat.items()
                    if mm == m and h is not None), default=1.0)
            for m in methods if catalog.describe(m).is_lrp}
    for (outcome, row), bg in zip(chosen.items(), backgrounds, strict=True):
        sid = str(row["scan_id"])
        maps = [figs.BrainMap(heat[outcome, m], method_label(m), ctx.method_unit(m),
                              data.mode(m), vmax=vmax.get(m))
                for m in methods if heat[outcome, m] is not None]
        if not maps:
            sec.add(note(f"{outcome}: no heatmap file for {sid}"))
            continue
        cut = figs.peak_coords(maps[0].data, ctx.affine)
        contours = []
        if atlas is not None and sid in ranking:
            for area in ranking[sid]["area"].head(3):
                k = atlas.area_index(area)
                if k is not None:
                    contours.append((atlas.area_codes == k + 1, area))
        verdict = {"TP": "AD, detected", "FP": "control, called AD", "TN": "control, detected",
                   "FN": "AD, missed"}[outcome]
        title = (f"{outcome} · {row['participant_id']} ({verdict}) · p(AD) = "
                 f"{float(row['p_ad']):.3f}")
        fig = figs.explanation_figure(bg, ctx.affine, maps, cut, contours, title)
        caption = fmt("{} example: {}, scan {}, p(AD) = {}. Slices at MNI ({}, {}, {}) mm. "
                      "LRP: one colour scale for all four examples (the largest 99.5th "
                      "percentile among them); other methods: each map's own 99.5th "
                      "percentile. Values below 20% of the scale are transparent; maps are "
                      "shown inside the template brain mask. Outlined: the three {} of "
                      "highest density.",
                      outcome, row["participant_id"], sid,
                      f"{float(row['p_ad']):.3f}", *(f"{c:.0f}" for c in cut),
                      min_area_text(data, ctx.main))
        sec.add(heading(f"{outcome} - {style.GROUP_NAMES[outcome]}"),
                ctx.fig(fig, f"{outcome} example heatmaps", caption, f"fig-example-{outcome}"),
                Safe(example_viewer(ctx, f"viewer-{outcome}", sid, bg, vmax, cut,
                                    "template" if reason else "scan")))
    missing = [k for k, v in examples.items() if v is None]
    if missing:
        sec.add(note(f"no {', '.join(missing)} in the test set, so no example for "
                     f"{'it' if len(missing) == 1 else 'them'}", "info"))


SPEC = SectionSpec("individual", "Individual explanations", intro, build)
