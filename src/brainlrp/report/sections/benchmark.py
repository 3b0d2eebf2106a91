"""The method benchmark: which explanation finds what the model uses (first after the summary)."""

from __future__ import annotations

import pandas as pd

from brainlrp.report.html import Section, paragraph, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec

COLUMNS = {"rank": "rank", "label": "method", "mass_accuracy": "mass in atrophy",
           "chance_mass_accuracy": "chance", "auc_abs": "|.|-AUC",
           "spearman_restoration": "ρ restoration", "topk_recall": "top-10 recall",
           "sanity_top_layer": "ρ top layer rand.", "sanity_all_layers": "ρ all layers rand.",
           "aopc_difference": "AOPC − random", "cost_ratio": "cost (× gradient)"}


def _row_class(row: pd.Series) -> str:
    if bool(row.get("recommended")):
        return "recommended"
    if bool(row.get("needs_twin")):
        return "upper-bound"
    return "floor" if row.get("family") == "floor" else ""


def build(ctx: Context, sec: Section) -> None:
    """The ranked table with the recommendation, the floors and the twin upper bounds."""
    bench = ctx.table("method_benchmark")
    best = ctx.data.summary.recommended_method
    frame = bench.copy()
    frame["label"] = [f"{lab} ★" if rec else (f"{lab} (needs the twin)" if twin else lab)
                      for lab, rec, twin in zip(frame["label"], frame["recommended"],
                                                frame["needs_twin"], strict=True)]
    if best:
        row = bench[bench["method"] == best].iloc[0]
        sec.add(paragraph(
            f"Recommended: {row['label']} (★): the best-ranked method that needs no healthy "
            f"twin — {row['mass_accuracy']:.2f} of its relevance lies in truly atrophied "
            f"voxels (chance {row['chance_mass_accuracy']:.2f}), |.|-AUC "
            f"{row['auc_abs']:.2f}, area ranking against the model's own restoration "
            f"importance ρ = {row['spearman_restoration']:.2f}. The cards and group maps "
            "below show it beside the paper's LRP."))
    sec.add(table(frame, COLUMNS, caption=(
        "Methods ranked by the mean of their ranks in mass accuracy, |.|-AUC and "
        "restoration ρ. Rows marked 'needs the twin' explain against the patient's "
        "simulated healthy twin, an upper bound no real scan has, or against the twin "
        "scanned again (rescan): the best a real reference could be. Edges and noise are "
        "model-free floors; a method below them finds the atrophy no better than the "
        "image itself. Randomisation ρ: low means the map depends on the learned weights."),
        table_id="benchmark-table", row_class=_row_class))


SPEC = SectionSpec(
    "benchmark", "Which explanation finds what the model uses",
    "Every method scored against the simulated ground truth (the atrophy the patients "
    "really have) and the model's own ground truth (how much p(AD) drops when an area is "
    "restored from the healthy twin), with the randomisation check and the cost.",
    build, requires=("analysis/method_benchmark.tsv",),
    why="no method benchmark in this run - run `brainlrp analyze` (ground-truth scores need "
        "a simulated cohort)",
    data=("analysis/method_benchmark.tsv", "analysis/restoration.tsv", "analysis/twins.tsv"))
