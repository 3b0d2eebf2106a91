"""The method benchmark: which explanation finds what the model uses (first after the summary)."""

from __future__ import annotations

import pandas as pd

from brainlrp.report import glossary
from brainlrp.report.html import Safe, Section, fmt, note, paragraph, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import method_html

#: Columns of ``analysis/method_benchmark.tsv`` shown, each with its measure
#: (:data:`brainlrp.report.glossary.MEASURES`); ``None``: not a measure.
COLUMNS = {"rank": None, "label": None, "mass_accuracy": "mass",
           "chance_mass_accuracy": "chance", "auc_abs": "auc_abs",
           "spearman_restoration": "rho_restoration",
           "unused_change_share": "unused_change", "topk_recall": "topk_recall",
           "sanity_top_layer": "sanity_top", "sanity_all_layers": "sanity_all",
           "aopc_difference": "aopc_difference", "cost_ratio": "cost"}
#: Headers of the columns that are not measures.
PLAIN = {"rank": "rank", "label": "method"}
#: The measures of the ranking, and the other measures a floor may win.
COMPARED = ("mass", "auc_abs", "rho_restoration", "topk_recall", "aopc_difference")
#: Columns an older analysis may lack (shown only when present).
OPTIONAL = ("unused_change_share",)


def _row_class(row: pd.Series) -> str:
    if bool(row.get("recommended")):
        return "recommended"
    if bool(row.get("needs_twin")):
        return "upper-bound"
    return "floor" if row.get("family") == "floor" else ""


def headers(k: int, columns=None) -> dict[str, str]:
    """Column -> header: the measures' names from the glossary, linked to their definitions."""
    return {c: glossary.header(key, k) if key else PLAIN[c] for c, key in COLUMNS.items()
            if columns is None or c in columns}


def method_cell(row: pd.Series) -> Safe:
    """Label and id of the method, marked when recommended or when it needs the twin."""
    mark = " ★" if row["recommended"] else (" (needs the twin)" if row["needs_twin"] else "")
    return fmt("{}{}", method_html(str(row["method"])), mark)


#: What each kind of ground truth is, for the section's text.
TRUTH_TEXT = {
    "simulated": "the atrophy the cohort's simulated patients really have, and the model's "
                 "own ground truth (how much p(AD) drops when an area is restored from the "
                 "healthy twin)",
    "planted": "atrophy planted into the run's own held-out controls (`brainlrp "
               "benchmark`: the simulator's disease flow in the real scans; each original "
               "scan is its planted copy's healthy twin), the method chosen on the "
               "validation plants and scored on the test plants",
}


def build(ctx: Context, sec: Section) -> None:
    """The ranked table(s) with the recommendation, the floors and the twin upper bounds:
    one per ground truth the scores rest on (simulated, planted)."""
    bench = ctx.table("method_benchmark")
    if "truth" not in bench.columns:  # analysed before the column existed
        scored = bench[["mass_accuracy", "auc_abs", "spearman_restoration"]].notna().any(axis=1)
        bench = bench.assign(truth=["simulated" if s else "none" for s in scored])
    best = ctx.data.summary.recommended_method
    truths = [t for t in ("simulated", "planted") if (bench["truth"] == t).any()]
    if not truths:
        sec.add(note("Nothing in this run can be scored against a ground truth: its cohort "
                     "has no simulated patients and no atrophy was planted. The methods "
                     "shown are the catalog's defaults, not a measured choice; run "
                     f"`brainlrp benchmark {ctx.data.rd.root}` to plant known atrophy into "
                     "the run's held-out controls and rank the methods on it."))
        return
    sec.add(paragraph(basis_text(bench, best, str(ctx.data.rd.root))))
    for truth in truths:
        rows = bench[bench["truth"] == truth].reset_index(drop=True)
        _benchmark_table(ctx, sec, rows, truth, best, several=len(truths) > 1)


def basis_text(bench: pd.DataFrame, best: str | None, run: str) -> Safe:
    """What the run's recommendation rests on: planted truth chosen on validation,
    simulated truth chosen on the test patients it is scored on, or nothing."""
    picked = bench[bench["recommended"].astype(bool)] if "recommended" in bench else bench[:0]
    truth = picked.loc[picked["method"] == best, "truth"]
    rests = str(truth.iloc[0]) if best is not None and len(truth) else None
    if rests == "planted":
        return fmt("The recommendation, {}, rests on planted truth: chosen on the planted "
                   "validation controls, scored on the planted test controls; no test scan "
                   "took part in the choice.", method_html(best))
    if rests == "simulated":
        return fmt("The recommendation, {}, rests on the simulated patients' truth. Their "
                   "truth is known only for the test scans, so it is chosen on the same "
                   "scans it is scored on; `brainlrp benchmark {}` chooses on planted "
                   "validation controls instead.", method_html(best), run)
    return fmt("No method is recommended: no ground truth ranks the methods of this run.")


def _benchmark_table(ctx: Context, sec: Section, bench: pd.DataFrame, truth: str,
                     best: str | None, several: bool) -> None:
    k = ctx.data.summary.top_k
    frame = bench.copy()
    frame["label"] = [method_cell(r) for _, r in frame.iterrows()]
    marked = bench[bench["recommended"].astype(bool)]
    pick = str(marked["method"].iloc[0]) if len(marked) else None
    if several or truth == "planted":
        sec.add(paragraph(fmt("Scored against {}.", TRUTH_TEXT[truth])))
    if pick is not None:
        row = marked.iloc[0]
        shown = (" The cards and group maps below show it beside the paper's LRP."
                 if pick == best else "")
        sec.add(paragraph(fmt(
            "Recommended: {} (★): the best-ranked method that needs no healthy twin — "
            "{} {} (chance {}), {} {}, {} {} (the area ranking against the model's own "
            "restoration importance).{}", method_html(pick),
            glossary.header("mass"), f"{row['mass_accuracy']:.2f}",
            f"{row['chance_mass_accuracy']:.2f}", glossary.header("auc_abs"),
            f"{row['auc_abs']:.2f}", glossary.header("rho_restoration"),
            f"{row['spearman_restoration']:.2f}", shown)))
    elif truth == "planted" and bench["rank"].isna().all():
        sec.add(note("The model barely responds to the planted atrophy, so these scores "
                     "cannot tell the methods apart: nothing is ranked or recommended "
                     "(benchmark/response.tsv holds p(AD) of each planted scan and its "
                     "original).", "info"))
    shown = [c for c in COLUMNS if c not in OPTIONAL or c in frame.columns]
    sec.add(table(frame, headers(k, shown), caption=(
        "Methods ranked by the mean of their ranks in mass in atrophy, |.|-AUC vs atrophy "
        "and ρ restoration (each header links to its definition in the Measures list of "
        "the last section). Rows marked 'needs the twin' explain against the patient's "
        "healthy twin, an upper bound no real scan has, or against the twin "
        "scanned again (rescan): the best a real reference could be. Edges and noise are "
        "model-free floors; a method below them finds the atrophy no better than the "
        "image itself; 'Difference' floors are a reference minus the scan, what its "
        "reference methods must beat. Every reference method explains the same number, "
        "p(AD) of the scan minus p(AD) of its reference; the others explain p(AD). "
        "Randomisation ρ: low means the map depends on the learned weights."),
        table_id="benchmark-table" if truth == "simulated" or not several
        else f"benchmark-table-{truth}", row_class=_row_class,
        numeric=[c for c, key in COLUMNS.items() if (key or c == "rank") and c in shown]))
    if pick is not None:
        text = own_difference_note(bench, pick, k)
        if text:
            sec.add(note(text, "info"))
    scores = {key: dict(zip(bench["method"], bench[col], strict=True))
              for col, key in COLUMNS.items() if key in COMPARED}
    for text in glossary.floor_notes(scores, k):
        sec.add(note(text, "info"))


#: The ranking's measures, compared between a reference method and its reference's
#: difference from the scan.
OWN_DIFFERENCE = {"mass_accuracy": "mass", "auc_abs": "auc_abs",
                  "spearman_restoration": "rho_restoration"}


def own_difference_note(bench: pd.DataFrame, method: str, k: int) -> str | None:
    """Whether a reference method beats its own reference's model-free difference
    (``diff@<reference>``) on each ranking measure, when that floor was benchmarked."""
    from brainlrp import catalog

    floor = catalog.own_difference(method)
    rows = bench.set_index("method")
    if floor is None or floor not in rows.index:
        return None
    beaten, not_beaten = [], []
    for col, key in OWN_DIFFERENCE.items():
        ours, theirs = rows.loc[method, col], rows.loc[floor, col]
        if pd.isna(ours) or pd.isna(theirs):
            continue
        part = f"{glossary.name(key, k)} {ours:.2f} vs {theirs:.2f}"
        (beaten if ours > theirs else not_beaten).append(part)
    if not beaten and not not_beaten:
        return None
    text = f"Against its own reference's difference from the scan ({floor}): "
    if beaten:
        text += "better on " + ", ".join(beaten)
    if not_beaten:
        text += ("; " if beaten else "") + "not better on " + ", ".join(not_beaten)
        text += (" - there the explanation adds nothing the reference alone did not show")
    return text + "."


SPEC = SectionSpec(
    "benchmark", "Which explanation finds what the model uses",
    "Every method scored against a ground truth: the simulated patients' atrophy and the "
    "model's own (how much p(AD) drops when an area is restored from the healthy twin), "
    "or atrophy planted into the run's held-out controls (brainlrp benchmark), with the "
    "randomisation check and the cost.",
    build, requires=("analysis/method_benchmark.tsv",),
    why="no method benchmark in this run - run `brainlrp analyze`, and `brainlrp benchmark` "
        "for ground truth on a cohort that is not simulated",
    data=("analysis/method_benchmark.tsv", "analysis/restoration.tsv", "analysis/twins.tsv"))
