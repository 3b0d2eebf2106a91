"""Ground truth: how well each method recovers the simulated atrophy."""

from __future__ import annotations

from brainlrp.report import figures as figs
from brainlrp.report.html import Section, fmt, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import area_label, fmt_number, method_label


def build(ctx: Context, sec: Section) -> None:
    """Recovery table and figure per method; the truly most atrophied areas."""
    gt, summ = ctx.table("ground_truth"), ctx.table("ground_truth_summary")
    frame = summ.copy()
    frame["mass accuracy"] = [f"{fmt_number(a)} ± {fmt_number(b, 2)}" for a, b in
                              zip(frame["mass_accuracy_mean"], frame["mass_accuracy_sd"],
                                  strict=True)]
    frame["AUC"] = [f"{fmt_number(a)} ± {fmt_number(b, 2)}" for a, b in
                    zip(frame["auc_mean"], frame["auc_sd"], strict=True)]
    frame["method"] = [method_label(m) for m in frame["method"]]
    k = int(frame["k"].iloc[0]) if "k" in frame and len(frame) else 10
    sec.add(table(frame, {"method": "method", "relevance": "relevance", "n_subjects": "n AD",
                          "mass accuracy": "relevance in atrophy (mean ± SD)",
                          "chance_mass_accuracy": "chance",
                          "AUC": "voxel AUC (mean ± SD)",
                          "spearman_regions_mean": "area rank ρ",
                          "topk_recall_mean": f"top-{k} recall",
                          "group_topk_overlap": f"group top-{k} overlap"},
                  numeric=["n_subjects", "chance_mass_accuracy", "spearman_regions_mean",
                           "topk_recall_mean", "group_topk_overlap"],
                  caption="Relevance in atrophy: fraction of a scan's relevance inside truly "
                          "atrophied voxels (chance = atrophied fraction of the brain). Area "
                          "rank ρ: Spearman correlation of area density with true area loss. "
                          "Recall: true top areas found among the method's top areas.",
                  table_id="ground-truth-table"))
    fig = figs.ground_truth_figure(gt, summ, ctx.data.methods)
    sec.add(ctx.fig(fig, "ground truth recovery per method",
                    "Per AD scan and method: relevance mass inside atrophy (dashed: chance), "
                    "voxel-wise ROC AUC (dashed: 0.5) and recall of the truly most atrophied "
                    "areas.", "fig-ground-truth"))
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
