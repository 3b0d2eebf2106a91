"""The method benchmark: every explanation method scored against what the model uses.

One row per analysed method (``analysis/method_benchmark.tsv``), from the method's
summary and its cost (:mod:`~brainlrp.analysis.costs`):

``mass_accuracy``, ``chance_mass_accuracy``, ``auc_abs``, ``topk_recall``
    Recovery of the simulated atrophy (:mod:`~brainlrp.analysis.groundtruth`):
    share of positive relevance in truly atrophied voxels (and its chance level),
    voxel AUC of ``|map|``, recall of the most atrophied areas.
``spearman_restoration``
    Spearman over areas of the relevance in each area with the restoration importance,
    the drop in p(AD) when the area is restored from the healthy twin
    (:mod:`~brainlrp.analysis.twins`): does the map rank areas as the model uses them?
    Both sides use the same voxels: the area grown by ``restoration_dilate`` voxels,
    so the CSF next to it, where atrophy shows, counts for it.
``unused_change_share``
    Share of the positive relevance in areas where the scan differs from its healthy
    twin but restoring them does not move p(AD) (:func:`~brainlrp.analysis.twins.
    unused_change_share`): an explanation is not an anomaly map; lower is better. Not
    ranked on (the floors, which ignore the model, show what a map of the change gets).
``sanity_top_layer``, ``sanity_all_layers``
    Rank correlation with the trained map after re-initialising the top layer, and
    all layers (a faithful map changes: low is good).
``aopc_difference``
    Region perturbation: AOPC of the method's order minus that of random orders.
``seconds_per_scan``, ``cost_ratio``
    CPU seconds per scan (one thread), each method timed back to back with the input
    gradient (``gradient``) on the same scan in analyze's process, and the ratio to the
    gradient's: the work a method takes, whatever else the machine runs.

**Ranking**: methods with ground truth are ranked by the mean of their ranks in
mass accuracy, ``|.|``-AUC and restoration Spearman (each higher is better; a
missing score ranks last), ties broken by cost: the cheaper first where the costs
differ by more than :data:`COST_TIE_TOLERANCE` (a measured cost varies by about 15 %
between runs, so closer costs would reorder tied methods at random), else in the
catalog's order. The **recommended** method is the
best-ranked one a user can run on real data: it needs no healthy twin, is not a
floor (``edges``, ``noise``) and puts more of its relevance into the atrophy than
both floors do. Among those, the first that passes the randomisation check
(top-layer Spearman below 0.5 when measured) and costs at most 3 input gradients;
else the first that passes the check within 10 gradients (still practical per
scan); else the best-ranked.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp import catalog
from brainlrp.analysis.costs import COST_REFERENCE
from brainlrp.analysis.summary import MethodSummary

#: Columns of ``analysis/method_benchmark.tsv``; ``truth`` says what a row's scores rest
#: on (:data:`TRUTHS`).
BENCHMARK_COLUMNS = ("rank", "method", "label", "family", "needs_twin", "recommended",
                     "mass_accuracy", "chance_mass_accuracy", "auc_abs",
                     "spearman_restoration", "unused_change_share", "topk_recall",
                     "sanity_top_layer", "sanity_all_layers", "aopc_difference",
                     "seconds_per_scan", "cost_ratio", "truth")
#: ``simulated``: the cohort's own simulated patients; ``planted``: atrophy planted into
#: the run's held-out controls (``brainlrp benchmark``); ``none``: nothing to score with.
TRUTHS = ("simulated", "planted", "none")
#: The recommended method passes these when they are measured.
MAX_SANITY_TOP_LAYER = 0.5
MAX_COST_RATIO = 3.0
#: The recommendation's fallback budget when no method passes within MAX_COST_RATIO.
PRACTICAL_COST_RATIO = 10.0
SCORES = ("mass_accuracy", "auc_abs", "spearman_restoration")
#: Tied methods are ordered by cost only where one costs this many times the cheapest's.
COST_TIE_TOLERANCE = 1.3


def _value(x) -> float:
    return float("nan") if x is None else float(x)


def method_benchmark(summaries: dict[str, MethodSummary],
                     seconds_per_scan: dict[str, float] | None = None) -> pd.DataFrame:
    """The benchmark table, ranked (see the module docstring).

    Parameters
    ----------
    summaries : dict of str to MethodSummary
    seconds_per_scan : dict, optional
        Method -> seconds per scan (:func:`brainlrp.analysis.costs.measure_costs`), the
        gradient's among them.

    Returns
    -------
    pandas.DataFrame
        :data:`BENCHMARK_COLUMNS`, best first.
    """
    seconds = seconds_per_scan or {}
    base = seconds.get(COST_REFERENCE)
    rows = []
    for method, s in summaries.items():
        info = catalog.describe(method)
        sec = seconds.get(method)
        rows.append({
            "method": method, "label": info.label, "family": info.family,
            "needs_twin": info.needs_twin, "mass_accuracy": _value(s.gt_mass_accuracy),
            "chance_mass_accuracy": _value(s.gt_chance_mass_accuracy),
            "auc_abs": _value(s.gt_auc_abs),
            "spearman_restoration": _value(s.gt_spearman_restoration),
            "unused_change_share": _value(s.gt_unused_change_share),
            "topk_recall": _value(s.gt_topk_recall),
            "sanity_top_layer": _value(s.sanity_spearman_top_layer),
            "sanity_all_layers": _value(s.sanity_spearman_all_layers),
            "aopc_difference": _value(s.aopc_difference),
            "seconds_per_scan": _value(sec),
            "cost_ratio": _value(sec / base if sec is not None and base else None)})
    table = pd.DataFrame(rows, columns=[c for c in BENCHMARK_COLUMNS
                                        if c not in ("rank", "recommended")])
    if table.empty:
        return pd.DataFrame(columns=list(BENCHMARK_COLUMNS))
    table["truth"] = np.where(table[list(SCORES)].notna().any(axis=1), "simulated", "none")
    ranks = [table[c].rank(ascending=False, method="average", na_option="bottom")
             for c in SCORES]
    has_truth = table[list(SCORES)].notna().any(axis=1)
    score = pd.concat(ranks, axis=1).mean(axis=1).where(has_truth, np.inf)
    classes = _cost_classes(score.to_numpy(), table["cost_ratio"].to_numpy(float))
    keys = [(score.iloc[i], classes[i], catalog.describe(m).sort_key())
            for i, m in enumerate(table["method"])]
    order = sorted(range(len(table)), key=keys.__getitem__)
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.where(np.isfinite(score.iloc[order]), np.arange(1, len(table) + 1),
                                     np.nan))
    table.insert(5, "recommended", False)
    pick = recommend(table)
    if pick is not None:
        table.loc[table["method"] == pick, "recommended"] = True
    return table[list(BENCHMARK_COLUMNS)]


def _cost_classes(score: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per method, how many :data:`COST_TIE_TOLERANCE` steps it costs above the cheapest
    method with the same score (unmeasured: last)."""
    classes = np.full(len(score), np.inf)
    for value in np.unique(score):
        tied = (score == value) & np.isfinite(cost) & (cost > 0)
        if tied.any():
            steps = np.log(cost[tied] / cost[tied].min()) / np.log(COST_TIE_TOLERANCE)
            classes[tied] = np.floor(steps + 1e-9)
    return classes


#: Where ``brainlrp benchmark`` writes its planted-truth table, relative to the run.
PLANTED_TABLE = Path("benchmark") / "method_benchmark.tsv"


def read_planted(run_root: str | os.PathLike) -> pd.DataFrame | None:
    """The run's planted-truth benchmark table (None before ``brainlrp benchmark``)."""
    path = Path(run_root) / PLANTED_TABLE
    return pd.read_csv(path, sep="\t") if path.is_file() else None


def with_planted(own: pd.DataFrame, planted: pd.DataFrame | None) -> pd.DataFrame:
    """The run's benchmark table with the planted-truth rows of ``brainlrp benchmark``.

    Rows scored on the cohort's simulated truth come first; the planted rows (ranked and
    with the recommendation the benchmark chose on its validation plants) follow; rows of
    the run without any truth are kept only when there is nothing else. Each truth marks
    its own recommendation; the run's (``summary.json``) is :func:`run_recommendation`'s.
    Without planted rows the table is returned as it is.
    """
    if planted is None or planted.empty:
        return own
    planted = planted.assign(truth="planted")
    scored = own[own["truth"] == "simulated"] if "truth" in own else own.iloc[:0]
    frames = [f for f in (scored, planted) if not f.empty]
    if not frames:
        return own
    return pd.concat(frames, ignore_index=True).reindex(columns=list(BENCHMARK_COLUMNS))


def recommended_of(table: pd.DataFrame) -> str | None:
    """The method marked recommended in a benchmark table (the first marked row)."""
    if "recommended" not in table or table.empty:
        return None
    marked = table[table["recommended"].astype(bool)]
    return str(marked["method"].iloc[0]) if len(marked) else None


#: Whose recommendation a run takes when its table holds several truths: the planted
#: truth's is chosen on validation plants and scored on the test plants (no peeking); the
#: simulated truth's is chosen on the same test patients it is scored on.
RECOMMENDATION_ORDER = ("planted", "simulated")


def run_recommendation(table: pd.DataFrame) -> str | None:
    """The run's recommended method (``summary.json``): the first truth of
    :data:`RECOMMENDATION_ORDER` in ``table`` that recommends one, else ``None``."""
    if "truth" not in table:
        return recommended_of(table)
    for truth in RECOMMENDATION_ORDER:
        pick = recommended_of(table[table["truth"] == truth])
        if pick is not None:
            return pick
    return None


def recommend(table: pd.DataFrame) -> str | None:
    """The recommended method of a ranked benchmark table (``None`` without ground truth)."""
    ranked = table[table["rank"].notna()]
    floors = ranked.loc[ranked["family"] == "floor", "mass_accuracy"].max()
    usable = ranked[~ranked["needs_twin"].astype(bool) & (ranked["family"] != "floor")]
    if pd.notna(floors):
        usable = usable[usable["mass_accuracy"] > floors]
    if usable.empty:
        return None
    sane = usable["sanity_top_layer"].isna() | (usable["sanity_top_layer"] < MAX_SANITY_TOP_LAYER)
    for budget in (MAX_COST_RATIO, PRACTICAL_COST_RATIO):
        cheap = usable["cost_ratio"].isna() | (usable["cost_ratio"] <= budget)
        if (sane & cheap).any():
            return str(usable.loc[sane & cheap, "method"].iloc[0])
    return str(usable["method"].iloc[0])
