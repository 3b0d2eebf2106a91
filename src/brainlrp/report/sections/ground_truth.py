"""Ground truth: how well each method recovers the simulated atrophy."""

from __future__ import annotations

from brainlrp.report import figures as figs
from brainlrp.report import glossary
from brainlrp.report.html import Section, fmt, note, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import area_label, fmt_number, method_html

#: Columns of ``analysis/ground_truth_summary.tsv`` shown as a measure's mean (the SD,
#: where there is one, in the cell beside it: ``mean ± SD``).
MEASURE_COLUMNS = {"mass": ("mass_accuracy_mean", "mass_accuracy_sd"),
                   "chance": ("chance_mass_accuracy", None),
                   "auc_abs": ("auc_abs_mean", None),
                   "auc_relevance": ("auc_mean", "auc_sd"),
                   "area_rho": ("spearman_regions_mean", None),
                   "topk_recall": ("topk_recall_mean", None),
                   "group_topk": ("group_topk_overlap", None)}


def _cell(mean, sd) -> str:
    if sd is None:
        return fmt_number(mean)
    return f"{fmt_number(mean)} ± {fmt_number(sd, 2)}"


def build(ctx: Context, sec: Section) -> None:
    """Recovery table and figure per method; the truly most atrophied areas."""
    gt, summ = ctx.table("ground_truth"), ctx.table("ground_truth_summary")
    k = int(summ["k"].iloc[0]) if "k" in summ and len(summ) else ctx.data.summary.top_k
    threshold = ctx.data.summary.threshold
    frame = summ.copy()
    columns = {"method": "method", "relevance": "relevance", "n_subjects": "n AD"}
    for key, (mean, sd) in MEASURE_COLUMNS.items():
        if mean not in frame:
            continue
        frame[key] = [_cell(a, None if sd is None else b) for a, b in
                      zip(frame[mean], frame[sd] if sd else frame[mean], strict=True)]
        columns[key] = glossary.header(key, k)
    frame["method"] = [method_html(m) for m in summ["method"]]
    sec.add(table(frame, columns, numeric=["n_subjects", *MEASURE_COLUMNS],
                  caption=fmt("Mean (± SD) over the AD test scans; every header links to its "
                              "definition. One method has two AUCs because they score "
                              "different things: the {} scores the map's magnitude (as the "
                              "method benchmark, §2, and its ranking do), the {} scores the "
                              "relevance as analysed (for LRP its positive part, where every "
                              "voxel at 0 ties).",
                              glossary.name("auc_abs"), glossary.name("auc_relevance")),
                  table_id="ground-truth-table"))
    scores = {key: dict(zip(summ["method"], summ[col], strict=True))
              for key, (col, _) in MEASURE_COLUMNS.items() if col in summ}
    for text in glossary.floor_notes(scores, k):
        sec.add(note(text, "info"))
    fig = figs.ground_truth_figure(gt, summ, ctx.data.methods)
    threshold_text = f"{100 * threshold:g} %" if threshold else "the analysis' threshold"
    sec.add(ctx.fig(fig, "ground truth recovery per method",
                    f"Per AD scan (points) and method (rows): {glossary.name('mass', k)} "
                    f"(red: chance, the atrophied share of the brain at tissue loss above "
                    f"{threshold_text}), {glossary.name('auc_abs', k)} and "
                    f"{glossary.name('auc_relevance', k)} (red: 0.5) and "
                    f"{glossary.name('topk_recall', k)}; boxes: quartiles and median.",
                    "fig-ground-truth"))
    disease = ctx.data.summary.disease_model_top_areas
    if disease:
        sec.add(fmt("<p><b>Most atrophied areas (truth):</b> {}</p>",
                    ", ".join(area_label(a, 40) for a in disease)))


SPEC = SectionSpec(
    "ground-truth", "Ground truth: recovery of the simulated atrophy",
    "On a simulated cohort the atrophy of every patient is known. How much of each method's "
    "relevance falls into truly atrophied tissue, how well it separates atrophied from "
    "intact voxels, and whether it finds the right areas.",
    build, requires=("analysis/ground_truth.tsv", "analysis/ground_truth_summary.tsv"),
    why="no ground truth: the cohort has no derivatives/ground_truth/ - cohorts made by "
        "`brainlrp simulate` have it; real cohorts skip this section",
    data=("analysis/ground_truth.tsv", "analysis/ground_truth_summary.tsv"))
