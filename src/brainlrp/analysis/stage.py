"""The ``analyze`` stage: from a run's predictions and heatmaps to tables and numbers.

Orchestration only: the maths lives in :mod:`~brainlrp.analysis.metrics`, the
streaming reductions in :mod:`~brainlrp.analysis.regions`, and the checks in
:mod:`~brainlrp.analysis.groundtruth`, :mod:`~brainlrp.analysis.faithfulness` and
:mod:`~brainlrp.analysis.sanity`. The output files and their columns are listed in
:mod:`brainlrp.analysis`.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp._io import read_json, remove_temporaries, write_json, write_table
from brainlrp._progress import progress_bar
from brainlrp.analysis import groundtruth as gt
from brainlrp.analysis import metrics
from brainlrp.analysis.faithfulness import AOPC_COLUMNS, FAITHFULNESS_COLUMNS
from brainlrp.analysis.regions import (
    AtlasRegions,
    MethodRegions,
    stream_method,
    write_groups,
)
from brainlrp.analysis.sanity import SANITY_COLUMNS
from brainlrp.data.grid import Grid, brain_mask
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

FINGERPRINT_COLUMNS = ("method", "participant_id", "p_ad", "area_rank", "area",
                       "relevance_density")
SIMILARITY_COLUMNS = ("method", "participant_a", "participant_b", "cosine_similarity")
BETA_OVERLAP_COLUMNS = ("method_a", "method_b", "beta_a", "beta_b", "measure", "group", "k",
                        "n_shared", "overlap", "shared_areas")
HIPPOCAMPUS_COLUMNS = ("method", "relevance", "n_subjects", "r", "p_value", "n_permutations")
HIPPOCAMPUS_SUBJECT_COLUMNS = ("method", "participant_id", "hippocampus_relevance",
                               "hippocampus_volume")
TOTALS_COLUMNS = ("method", "relevance", "group", "n_subjects", "mean_total_relevance")
#: Columns of the per-method analysis tables, by output name (``analysis/<name>.tsv``).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "fingerprints": FINGERPRINT_COLUMNS, "fingerprint_similarity": SIMILARITY_COLUMNS,
    "relevance_totals": TOTALS_COLUMNS, "hippocampus": HIPPOCAMPUS_COLUMNS,
    "hippocampus_subjects": HIPPOCAMPUS_SUBJECT_COLUMNS,
    "ground_truth": gt.GROUND_TRUTH_COLUMNS,
    "ground_truth_summary": gt.GROUND_TRUTH_SUMMARY_COLUMNS}
#: Keys of every method in ``summary.json`` (and columns of ``summary.tsv`` after ``method``).
SUMMARY_KEYS = (
    "relevance", "n_scans", "n_ad", "n_hc", "hc_ad_ratio",
    "fingerprint_n_patients", "fingerprint_mean_similarity", "fingerprint_min_similarity",
    "patient_a", "patient_b",
    "hippocampus_n", "hippocampus_r", "hippocampus_p",
    "gt_n_subjects", "gt_mass_accuracy", "gt_chance_mass_accuracy", "gt_auc",
    "gt_spearman_regions", "gt_topk_recall", "gt_group_topk_overlap",
    "aopc_relevance", "aopc_random", "aopc_difference",
    "sanity_spearman_top_layer", "sanity_spearman_all_layers")

#: Every file this stage may write under ``analysis/``; stale ones are removed.
ANALYSIS_FILES = ("summary.json", "summary.tsv", "fingerprints.tsv",
                  "fingerprint_similarity.tsv", "beta_overlap.tsv", "hippocampus.tsv",
                  "hippocampus_subjects.tsv", "relevance_totals.tsv", "ground_truth.tsv",
                  "ground_truth_summary.tsv", "faithfulness.tsv", "faithfulness_aopc.tsv",
                  "sanity.tsv")

FINGERPRINT_MIN_P = 0.9
FINGERPRINT_AREAS = 25
PREDICTION_COLUMNS = ("participant_id", "label", "p_ad", "predicted")


@dataclass
class AnalysisResult:
    """What :func:`analyze` did.

    Attributes
    ----------
    run : Path
    methods : list of str
        Methods analysed, in contract order.
    n_scans : dict
        Scans analysed per method.
    summary : dict
        Contents of ``analysis/summary.json``.
    outputs : list of Path
        Files written.
    notices : list of str
        One-line notices (skipped analyses and why).
    seconds : float
    timings : dict
        Seconds per phase (setup, regions per method, faithfulness, sanity).
    """

    run: Path
    methods: list[str]
    n_scans: dict[str, int]
    summary: dict
    outputs: list[Path] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def analyze(run: str | os.PathLike, atlas="neuromorphometrics",
            methods: Sequence[str] | None = None, cohort: str | os.PathLike | None = None,
            relevance: str = "auto",
            threshold: float = gt.DEFAULT_THRESHOLD, top_k: int = 10,
            n_permutations: int = 1000, faithfulness: bool = True, sanity: bool = True,
            faithfulness_subjects: int = 4, faithfulness_steps: int = 20, random_orders: int = 2,
            sanity_subjects: int = 1, sanity_voxels: int = 20000, batch_size: int = 8,
            seed: int = 0, model=None, inputs_fn: Callable[[list[str]], np.ndarray] | None = None,
            explain_fn=None, progress: bool = True) -> AnalysisResult:
    """Measure a run's heatmaps per region, subject and group, and check them.

    Parameters
    ----------
    run : path-like
        Run directory with ``predictions.tsv``, ``model/card.json`` and ``heatmaps/``.
    atlas : str, path-like or Atlas
        Built-in atlas name or a NIfTI label image (Neuromorphometrics, the
        paper's atlas, by default).
    methods : sequence of str, optional
        Methods to analyse; by default every method with heatmaps.
    cohort : path-like, optional
        Cohort folder or table (participants' covariates, ground truth); by
        default the one recorded in ``run.json``.
    relevance : {"auto", "positive", "signed", "absolute"}
        How heatmaps become relevance; ``"auto"`` uses each method's default
        (:data:`brainlrp.analysis.metrics.DEFAULT_RELEVANCE`).
    threshold : float
        Tissue loss above which a voxel counts as truly atrophied.
    top_k : int
        Areas compared in beta overlaps and ground-truth recall.
    n_permutations : int
        Permutations of the hippocampus correlation test.
    faithfulness, sanity : bool
        Run region perturbation / cascading randomisation (they need the model).
    faithfulness_subjects, sanity_subjects : int
        AD test scans sampled (seeded) for each check; the sanity scans are the
        first of the faithfulness sample. The defaults (4 and 1) keep both checks
        to about a minute at 2 mm on 2 CPU cores for seven methods: the forward
        passes and explanations they need dominate the stage's time.
    faithfulness_steps : int
        Areas replaced one by one.
    random_orders : int
        Random area orders averaged for the perturbation baseline.
    sanity_voxels : int
        Brain voxels sampled for the rank correlations.
    batch_size : int
        Heatmaps read (and inputs forwarded) at a time.
    seed : int
    model : torch.nn.Module, optional
        The trained model; by default ``brainlrp.training.load_model(run)``.
    inputs_fn : callable, optional
        ``inputs_fn(scan_ids) -> (n, 1, X, Y, Z)`` preprocessed inputs; by default
        ``brainlrp.training.load_inputs``.
    explain_fn : callable, optional
        ``explain_fn(model, x, method) -> heatmap``; by default
        ``brainlrp.explain.explain``.
    progress : bool

    Returns
    -------
    AnalysisResult
    """
    start = time.perf_counter()
    rd = RunDir(run)
    notices: list[str] = []
    grid = _model_grid(rd)
    predictions = read_predictions(rd)
    available = discover_methods(rd)
    chosen = select_methods(available, methods)
    modes = relevance_modes(chosen, relevance)
    atlas_regions = AtlasRegions.fit(atlas, grid)
    area_names = atlas_regions.areas["region"].tolist()
    if atlas_regions.lost:
        notices.append(f"{len(atlas_regions.lost)} label(s) of the atlas "
                       f"{atlas_regions.atlas_name} vanish on the {grid.describe()} grid "
                       f"({', '.join(atlas_regions.lost[:3])}); they get no region values")
    subjects, cohort_root = _cohort_tables(rd, cohort, notices)

    scans_of = {}
    for method in chosen:
        scans_of[method] = _scans_with_heatmaps(rd, method, predictions, notices)

    # Temporary files of a killed earlier analysis (every output is rewritten below).
    for folder in (rd.analysis, *(rd.regions / m for m in chosen), *(rd.means / m for m in chosen)):
        remove_temporaries(folder)

    hip_area = _hippocampus_area(subjects, atlas_regions, notices)
    truth_ctx = _prepare_truth(cohort_root, scans_of, atlas_regions, threshold, top_k, notices)

    timings: dict[str, float] = {"setup": time.perf_counter() - start}
    outputs: list[Path] = []
    results: dict[str, MethodRegions] = {}
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLE_COLUMNS}
    summary_methods: dict[str, dict] = {}
    for method in chosen:
        tick = time.perf_counter()
        mr, info, frames = _analyse_method(
            rd, method, scans_of[method], atlas_regions, modes[method], subjects, hip_area,
            truth_ctx, n_permutations=n_permutations, seed=seed, batch_size=batch_size,
            progress=progress)
        outputs += [rd.regions / method / "subjects.tsv", rd.regions / method / "groups.tsv",
                    *mr.mean_images]
        results[method] = mr
        summary_methods[method] = info
        for name, frame in frames.items():
            tables[name].append(frame)
        timings[f"regions {method}"] = time.perf_counter() - tick

    # Tables of analyses that did not run this time are not written (and removed below).
    ran = {"fingerprints", "fingerprint_similarity", "relevance_totals"}
    written: dict[str, pd.DataFrame] = {
        name: _concat(frames, TABLE_COLUMNS[name]) for name, frames in tables.items()
        if frames or name in ran}
    overlap = beta_overlap(results, area_names, top_k)
    if overlap is not None:
        written["beta_overlap"] = overlap

    if faithfulness or sanity:
        checks = _model_checks(rd, results, atlas_regions, grid, modes, notices,
                               faithfulness=faithfulness, sanity=sanity,
                               faithfulness_subjects=faithfulness_subjects,
                               faithfulness_steps=faithfulness_steps,
                               random_orders=random_orders, sanity_subjects=sanity_subjects,
                               sanity_voxels=sanity_voxels, batch_size=batch_size, seed=seed,
                               model=model, inputs_fn=inputs_fn, explain_fn=explain_fn,
                               timings=timings)
        written.update(checks)
        if "faithfulness_aopc" in checks:
            for row in checks["faithfulness_aopc"].itertuples():
                summary_methods[row.method].update(aopc_relevance=row.aopc_relevance,
                                                   aopc_random=row.aopc_random,
                                                   aopc_difference=row.aopc_difference)
        if "sanity" in checks:
            san = checks["sanity"]
            for method, part in san.groupby("method", sort=False):
                last = part["stage"].max()
                summary_methods[method].update(
                    sanity_spearman_top_layer=_mean(part.loc[part["stage"] == 1, "spearman"]),
                    sanity_spearman_all_layers=_mean(part.loc[part["stage"] == last,
                                                              "spearman"]))

    summary = {
        "atlas": atlas_regions.atlas_name, "n_labels": atlas_regions.n_labels,
        "n_areas": atlas_regions.n_areas, "relevance": modes, "top_k": top_k,
        "threshold": threshold if truth_ctx else None, "seed": seed,
        "disease_model_top_areas": ([area_names[i] for i in truth_ctx.disease_top]
                                    if truth_ctx else None),
        "methods": summary_methods, "notices": notices}
    written["summary"] = pd.DataFrame([{"method": m, **v} for m, v in summary_methods.items()],
                                      columns=["method", *SUMMARY_KEYS])
    rd.analysis.mkdir(parents=True, exist_ok=True)
    for name, frame in written.items():
        path = rd.analysis / f"{name}.tsv"
        write_table(path, frame)
        outputs.append(path)
    write_json(rd.analysis / "summary.json", summary)
    outputs.append(rd.analysis / "summary.json")
    keep = {p.name for p in outputs if p.parent == rd.analysis}
    for name in ANALYSIS_FILES:
        if name not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.remove(rd.analysis / name)
    seconds = time.perf_counter() - start
    rd.record("analyze", {"atlas": atlas_regions.atlas_name, "methods": chosen,
                          "relevance": modes, "n_scans": {m: len(s) for m, s in scans_of.items()},
                          "faithfulness": faithfulness, "sanity": sanity, "seed": seed,
                          "seconds": round(seconds, 2),
                          "timings": {k: round(v, 2) for k, v in timings.items()},
                          "notices": notices})
    return AnalysisResult(run=rd.root, methods=chosen,
                          n_scans={m: len(s) for m, s in scans_of.items()}, summary=summary,
                          outputs=outputs, notices=notices, seconds=seconds, timings=timings)


# --------------------------------------------------------------------------- inputs


def _model_grid(rd: RunDir) -> Grid:
    if not rd.predictions.is_file():
        raise BrainLRPError(f"{rd.root} has no predictions.tsv",
                            "run `brainlrp train` (then `brainlrp explain`) on it first")
    if not rd.card.is_file():
        raise BrainLRPError(f"{rd.root} has no model/card.json",
                            "run `brainlrp train` on it first")
    try:
        return Grid.from_dict(read_json(rd.card)["grid"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BrainLRPError(f"{rd.card} has no valid grid ({exc})",
                            "re-run `brainlrp train` to rewrite the model card") from None


def read_predictions(rd: RunDir) -> pd.DataFrame:
    """``predictions.tsv`` with ``scan_id``, ``diagnosis``, ``outcome`` and ``split`` filled in."""
    try:
        table = pd.read_csv(rd.predictions, sep="\t", dtype={"participant_id": str,
                                                             "scan_id": str})
    except Exception as exc:
        raise BrainLRPError(f"cannot read {rd.predictions} ({' '.join(str(exc).split())[:100]})",
                            "re-run `brainlrp train`") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in table.columns]
    if missing:
        raise BrainLRPError(f"{rd.predictions} lacks the column(s) {', '.join(missing)}",
                            "re-run `brainlrp train` to rewrite it")
    table = table.copy()
    if "scan_id" not in table.columns:
        table["scan_id"] = table["participant_id"]
    table["scan_id"] = table["scan_id"].fillna(table["participant_id"])
    table["label"] = pd.to_numeric(table["label"], errors="coerce")
    table["predicted"] = pd.to_numeric(table["predicted"], errors="coerce")
    table["p_ad"] = pd.to_numeric(table["p_ad"], errors="coerce")
    bad = ~table["label"].isin([0, 1]) | ~table["predicted"].isin([0, 1])
    if bad.any():
        raise BrainLRPError(f"{rd.predictions} line {int(np.flatnonzero(bad)[0]) + 2}: label and "
                            "predicted must be 0 or 1", "re-run `brainlrp train` to rewrite it")
    table["label"] = table["label"].astype(int)
    table["predicted"] = table["predicted"].astype(int)
    dup = table["scan_id"].duplicated()
    if dup.any():
        raise BrainLRPError(f"{rd.predictions}: scan {table['scan_id'][dup].iloc[0]} occurs twice",
                            "re-run `brainlrp train` to rewrite it")
    table["diagnosis"] = np.where(table["label"] == 1, "AD", "CN")
    # Derived, not trusted: the outcome must agree with label and prediction.
    table["outcome"] = np.select(
        [(table["label"] == 1) & (table["predicted"] == 1),
         (table["label"] == 0) & (table["predicted"] == 0),
         (table["label"] == 0) & (table["predicted"] == 1)], ["TP", "TN", "FP"], "FN")
    if "split" not in table.columns:
        table["split"] = ""
    table["split"] = table["split"].fillna("").astype(str)
    return table.sort_values(["participant_id", "scan_id"], kind="stable").reset_index(drop=True)


def discover_methods(rd: RunDir) -> list[str]:
    """Methods with at least one heatmap, in contract order."""
    folder = rd.heatmaps
    found = []
    if folder.is_dir():
        for sub in folder.iterdir():
            if sub.is_dir() and any(not f.name.startswith(".")
                                    for f in sub.glob("*.nii.gz")):
                found.append(sub.name)
    if not found:
        raise BrainLRPError(f"{rd.root} has no heatmaps (heatmaps/<method>/*.nii.gz)",
                            "run `brainlrp explain` on it first")
    return metrics.ordered(found)


def select_methods(available: list[str], requested: Sequence[str] | None) -> list[str]:
    """The requested methods (comma lists allowed), checked against the available ones."""
    if not requested:
        return available
    names = metrics.split_method_names(requested)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise BrainLRPError(f"no heatmaps for method(s) {', '.join(unknown)}; this run has "
                            f"{', '.join(available)}",
                            "choose among those or run `brainlrp explain --methods ...` first")
    return metrics.ordered(names)


def relevance_modes(methods: Sequence[str], relevance: str) -> dict[str, str]:
    """Relevance mode per method: the method's default for ``"auto"``, else ``relevance``."""
    if relevance != "auto" and relevance not in metrics.RELEVANCE_MODES:
        raise BrainLRPError(f"unknown relevance mode {relevance!r}",
                            f"use auto, {', '.join(metrics.RELEVANCE_MODES)}")
    return {m: metrics.default_relevance(m) if relevance == "auto" else relevance
            for m in methods}


def _scans_with_heatmaps(rd: RunDir, method: str, predictions: pd.DataFrame,
                         notices: list[str]) -> pd.DataFrame:
    folder = rd.heatmaps / method
    files = {f.name[: -len(".nii.gz")] for f in folder.glob("*.nii.gz")
             if not f.name.startswith(".")}
    has = predictions["scan_id"].isin(files)
    extra = files - set(predictions["scan_id"])
    if extra:
        notices.append(f"{method}: {len(extra)} heatmap(s) without a row in predictions.tsv "
                       f"skipped (e.g. {sorted(extra)[0]})")
    if not has.any():
        raise BrainLRPError(f"no heatmap in {folder} matches a scan of predictions.tsv",
                            "re-run `brainlrp explain` for this run")
    return predictions[has].reset_index(drop=True)


def _cohort_tables(rd: RunDir, cohort, notices: list[str]
                   ) -> tuple[pd.DataFrame | None, Path | None]:
    """The participants table (covariates) and the cohort folder, when reachable."""
    from brainlrp.data.cohort import load_cohort

    explicit = cohort is not None
    source = Path(cohort) if explicit else rd.cohort_source()
    if source is None:
        notices.append("no cohort recorded in run.json and no --cohort: hippocampus and "
                       "ground-truth analyses skipped")
        return None, None
    try:
        loaded = load_cohort(source)
    except BrainLRPError as exc:
        if explicit:
            raise
        notices.append(f"the cohort {source} recorded in run.json cannot be read "
                       f"({exc.message}); hippocampus and ground-truth analyses skipped - "
                       "pass --cohort")
        return None, None
    return loaded.subjects, loaded.root


# --------------------------------------------------------------------------- per method


def _analyse_method(rd: RunDir, method: str, scans: pd.DataFrame, atlas: AtlasRegions,
                    mode: str, subjects: pd.DataFrame | None, hip_area: int | None,
                    truth: _Truth | None, *, n_permutations: int, seed: int, batch_size: int,
                    progress: bool) -> tuple[MethodRegions, dict, dict[str, pd.DataFrame]]:
    """One streaming pass over a method's heatmaps, then its per-method analyses.

    Returns the region results, the method's summary entry and its rows of the
    analysis tables (keyed like :data:`TABLE_COLUMNS`).
    """
    paths = [rd.heatmap(method, s) for s in scans["scan_id"]]
    scorer = truth.scorer() if truth else None
    with progress_bar(len(paths), f"analyze {method}", progress) as advance:
        mr = stream_method(method, paths, scans, atlas, mode,
                           rd.regions / method / "subjects.tsv", rd.means / method,
                           batch_size=batch_size, on_batch=scorer, advance=advance)
    write_groups(rd.regions / method / "groups.tsv", mr.groups)
    info = {k: None for k in SUMMARY_KEYS}
    info.update(relevance=mode, n_scans=len(scans), n_ad=int(round(mr.weights["AD"].sum())),
                n_hc=int(round(mr.weights["HC"].sum())))
    frames: dict[str, pd.DataFrame] = {}
    frames["relevance_totals"], info["hc_ad_ratio"] = relevance_totals(mr)
    frames["fingerprints"], frames["fingerprint_similarity"], fp_info = fingerprints(mr, atlas)
    info.update(fp_info)
    if hip_area is not None:
        frames["hippocampus"], frames["hippocampus_subjects"], hip_info = hippocampus(
            mr, hip_area, subjects, n_permutations, seed)
        info.update(hip_info)
    if truth:
        frames["ground_truth"], row = truth.finish(method, mr, scorer, atlas)
        frames["ground_truth_summary"] = pd.DataFrame([row])
        info.update(gt_n_subjects=row["n_subjects"], gt_mass_accuracy=row["mass_accuracy_mean"],
                    gt_chance_mass_accuracy=row["chance_mass_accuracy"], gt_auc=row["auc_mean"],
                    gt_spearman_regions=row["spearman_regions_mean"],
                    gt_topk_recall=row["topk_recall_mean"],
                    gt_group_topk_overlap=row["group_topk_overlap"])
    return mr, info, frames


def relevance_totals(mr: MethodRegions) -> tuple[pd.DataFrame, float]:
    """Mean total relevance per group, and the HC / AD ratio of the means."""
    rows = []
    means = {}
    for g in mr.weights.columns:
        w = mr.weights[g].to_numpy()
        n = int(round(w.sum()))
        if n == 0:
            continue
        means[g] = float(metrics.weighted_group_mean(mr.totals[:, None], w)[0])
        rows.append({"method": mr.method, "relevance": mr.relevance, "group": g,
                     "n_subjects": n, "mean_total_relevance": means[g]})
    ratio = float(metrics.safe_ratio(means.get("HC", np.nan), means.get("AD", np.nan)))
    return pd.DataFrame(rows, columns=list(TOTALS_COLUMNS)), ratio


def _subject_means(values: np.ndarray, scans: pd.DataFrame, select: np.ndarray
                   ) -> tuple[list[str], np.ndarray]:
    """Average the selected scan rows per participant (participants in sorted order)."""
    pids = scans.loc[select, "participant_id"].to_numpy()
    if not len(pids):
        return [], np.zeros((0, *np.shape(values)[1:]))
    frame = pd.DataFrame(np.asarray(values)[select].reshape(len(pids), -1))
    means = frame.groupby(pids, sort=True).mean()
    return means.index.tolist(), means.to_numpy().reshape(len(means), *np.shape(values)[1:])


def fingerprints(mr: MethodRegions, atlas: AtlasRegions
                 ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Individual fingerprints of confidently detected patients (the paper's Fig. 7).

    TPs with AD probability above 0.9; their density vectors over the 25 areas of
    highest mean density (among them); cosine similarity of every pair.
    """
    scans = mr.scans
    select = ((scans["outcome"] == "TP") & (scans["p_ad"] > FINGERPRINT_MIN_P)).to_numpy()
    pids, dens = _subject_means(mr.area_density(atlas), scans, select)
    _, p_ad = _subject_means(scans["p_ad"].to_numpy(float)[:, None], scans, select)
    info = {"fingerprint_n_patients": len(pids)}
    if not pids:
        return (pd.DataFrame(columns=list(FINGERPRINT_COLUMNS)),
                pd.DataFrame(columns=list(SIMILARITY_COLUMNS)), info)
    areas = metrics.top_k(np.nanmean(dens, axis=0), FINGERPRINT_AREAS)
    vectors = dens[:, areas]
    names = atlas.areas["region"].to_numpy()[areas]
    n, k = vectors.shape
    fp = pd.DataFrame({"method": mr.method, "participant_id": np.repeat(pids, k),
                       "p_ad": np.repeat(p_ad[:, 0], k),
                       "area_rank": np.tile(np.arange(1, k + 1), n),
                       "area": np.tile(names, n), "relevance_density": vectors.reshape(-1)})
    sim = metrics.cosine_similarity_matrix(vectors)
    sim_rows = pd.DataFrame({"method": mr.method, "participant_a": np.repeat(pids, n),
                             "participant_b": np.tile(pids, n),
                             "cosine_similarity": sim.reshape(-1)})
    i, j, low = metrics.least_similar_pair(sim)
    info.update(fingerprint_mean_similarity=metrics.mean_off_diagonal(sim),
                fingerprint_min_similarity=low,
                patient_a=pids[i] if i >= 0 else None, patient_b=pids[j] if j >= 0 else None)
    return fp, sim_rows, info


def hippocampus(mr: MethodRegions, area: int, subjects: pd.DataFrame, n_permutations: int,
                seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Pearson r of hippocampal relevance with hippocampal volume over TPs (permutation p).

    Hippocampal relevance is the relevance sum of the merged ``Hippocampus`` area
    (left plus right), averaged over a participant's TP scans.
    """
    col = area
    select = (mr.scans["outcome"] == "TP").to_numpy()
    pids, rel = _subject_means(mr.area_sums[:, col][:, None], mr.scans, select)
    volume = pd.to_numeric(subjects.set_index("participant_id")["hippocampus_volume"],
                           errors="coerce").reindex(pids).to_numpy(float)
    rel = rel[:, 0] if len(pids) else np.zeros(0)
    r, p = metrics.permutation_pearson(rel, volume, n_permutations, seed)
    n = int(np.sum(np.isfinite(rel) & np.isfinite(volume)))
    table = pd.DataFrame([{"method": mr.method, "relevance": mr.relevance, "n_subjects": n,
                           "r": r, "p_value": p, "n_permutations": n_permutations}],
                         columns=list(HIPPOCAMPUS_COLUMNS))
    per_subject = pd.DataFrame({"method": mr.method, "participant_id": pids,
                                "hippocampus_relevance": rel, "hippocampus_volume": volume},
                               columns=list(HIPPOCAMPUS_SUBJECT_COLUMNS))
    return table, per_subject, {"hippocampus_n": n, "hippocampus_r": r, "hippocampus_p": p}


def _hippocampus_area(subjects: pd.DataFrame | None, atlas: AtlasRegions, notices: list[str]
                      ) -> int | None:
    """Column of the Hippocampus area when the correlation can be computed, else a notice."""
    if subjects is None:
        return None
    if "hippocampus_volume" not in subjects.columns:
        notices.append("the participants table has no hippocampus_volume column: "
                       "hippocampus correlation skipped")
        return None
    col = atlas.area_index("Hippocampus")
    if col is None:
        notices.append(f"the atlas {atlas.atlas_name} has no Hippocampus area: hippocampus "
                       "correlation skipped")
    return col


def _ranking_group(mr: MethodRegions) -> str:
    """The paper ranks areas over the true positives; AD when there are none."""
    return "TP" if mr.weights["TP"].sum() > 0 else "AD"


def beta_overlap(results: dict[str, MethodRegions], area_names: list[str], k: int
                 ) -> pd.DataFrame | None:
    """Overlap of the top-``k`` areas between every pair of LRP betas (sum, density, gain)."""
    betas = [(m, metrics.beta_of(m)) for m in results if metrics.beta_of(m) is not None]
    if len(betas) < 2:
        return None
    rows = []
    for a in range(len(betas)):
        for b in range(a + 1, len(betas)):
            (ma, ba), (mb, bb) = betas[a], betas[b]
            group = _ranking_group(results[ma])
            ta = results[ma].group_area_means(group)
            tb = results[mb].group_area_means(group)
            if ta.empty or tb.empty:
                continue
            for measure, col in (("sum", "mean_sum"), ("density", "mean_density"),
                                 ("gain", "gain")):
                va, vb = ta[col].to_numpy(float), tb[col].to_numpy(float)
                n_shared, frac = metrics.top_k_overlap(va, vb, k)
                shared = sorted(set(metrics.top_k(va, k).tolist())
                                & set(metrics.top_k(vb, k).tolist()))
                rows.append({"method_a": ma, "method_b": mb, "beta_a": ba, "beta_b": bb,
                             "measure": measure, "group": group, "k": k, "n_shared": n_shared,
                             "overlap": frac,
                             "shared_areas": ";".join(area_names[i] for i in shared)})
    return pd.DataFrame(rows, columns=list(BETA_OVERLAP_COLUMNS))


# --------------------------------------------------------------------------- ground truth


@dataclass
class _Truth:
    """Ground truth prepared once for all methods: masks, true area loss, disease top-k."""

    root: Path
    masks: gt.TruthMasks
    brain: np.ndarray
    area_loss: dict[str, np.ndarray]
    disease_top: np.ndarray
    k: int

    def scorer(self) -> gt.GroundTruthScorer:
        """A fresh voxel scorer for one method's pass."""
        return gt.GroundTruthScorer(self.masks, self.brain, set(self.area_loss))

    def finish(self, method: str, mr: MethodRegions, scorer: gt.GroundTruthScorer,
               atlas: AtlasRegions) -> tuple[pd.DataFrame, dict]:
        """The per-scan ground-truth table of a method and its summary row."""
        area_names = atlas.areas["region"].tolist()
        voxel = pd.DataFrame(scorer.rows, columns=["participant_id", "scan_id", "outcome",
                                                   "n_atrophied_voxels", "atrophied_fraction",
                                                   "mass_accuracy", "auc"])
        regional = gt.region_scores(mr.scans, mr.area_density(atlas), self.area_loss, self.k)
        per_scan = voxel.merge(regional, on=["participant_id", "scan_id"], how="left")
        per_scan.insert(0, "method", method)
        per_scan["k"] = self.k
        ad = mr.group_area_means("AD")
        gain = ad["gain"].to_numpy(float) if len(ad) else np.zeros(0)
        row = gt.summarise(per_scan, method, mr.relevance, gain, self.disease_top, area_names,
                           self.k)
        return per_scan[list(gt.GROUND_TRUTH_COLUMNS)], row


def _prepare_truth(cohort_root: Path | None, scans_of: dict[str, pd.DataFrame],
                   atlas: AtlasRegions, threshold: float, k: int, notices: list[str]
                   ) -> _Truth | None:
    if cohort_root is None or not gt.ground_truth_dir(cohort_root).is_dir():
        return None
    ad = sorted({p for s in scans_of.values()
                 for p in s.loc[s["label"] == 1, "participant_id"]})
    area_loss = {}
    missing = []
    sources = set()
    for pid in ad:
        tissue, _ = gt.ground_truth_files(cohort_root, pid)
        if not tissue.is_file():
            missing.append(pid)
            continue
        area_loss[pid], source = gt.true_area_loss(cohort_root, pid, atlas)
        sources.add(source)
    if missing:
        notices.append(f"ground truth missing for {len(missing)} AD participant(s) "
                       f"(e.g. {missing[0]}); they are left out of the ground-truth tables")
    if not area_loss:
        notices.append("the cohort has derivatives/ground_truth but none for the analysed AD "
                       "participants: ground-truth analysis skipped")
        return None
    if "map" in sources:
        notices.append("true area loss taken from the tissue-loss maps (the volume-loss tables "
                       "are per Neuromorphometrics label)")
    return _Truth(root=cohort_root, masks=gt.TruthMasks(cohort_root, atlas.grid, threshold),
                  brain=brain_mask(atlas.grid), area_loss=area_loss,
                  disease_top=gt.disease_top_k(area_loss, k), k=k)


# --------------------------------------------------------------------------- model checks


def _default_model(rd: RunDir, notices: list[str]):
    try:
        from brainlrp.training import load_model
    except ImportError:
        notices.append("brainlrp.training.load_model is not available: faithfulness and "
                       "sanity checks skipped")
        return None
    if not rd.checkpoint.is_file():
        notices.append(f"no model checkpoint ({rd.checkpoint}): faithfulness and sanity checks "
                       "skipped - run `brainlrp train`")
        return None
    model, _card = load_model(rd.root)
    return model


def _default_inputs(rd: RunDir, notices: list[str]):
    try:
        from brainlrp.training import load_inputs
    except ImportError:
        notices.append("brainlrp.training.load_inputs is not available: faithfulness and "
                       "sanity checks skipped")
        return None
    return lambda ids: load_inputs(rd.root, ids)


def _default_explain(notices: list[str]):
    try:
        from brainlrp.explain import explain
    except ImportError:
        notices.append("brainlrp.explain.explain is not available: sanity check skipped")
        return None
    return explain


def _load_inputs(inputs_fn, scan_ids: list[str], shape: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(inputs_fn(list(scan_ids)), dtype=np.float32)
    if x.ndim == 4:
        x = x[:, None]
    if x.shape != (len(scan_ids), 1, *shape):
        raise BrainLRPError(f"model inputs have shape {x.shape}, expected "
                            f"{(len(scan_ids), 1, *shape)}",
                            "re-run `brainlrp prepare` with the run's resolution")
    return x


def _hc_mean(inputs_fn, scan_ids: list[str], shape: tuple[int, ...], batch_size: int
             ) -> np.ndarray:
    """Mean input image of the healthy controls, read in batches (running sum)."""
    total = np.zeros(shape)
    for start in range(0, len(scan_ids), batch_size):
        batch = _load_inputs(inputs_fn, scan_ids[start: start + batch_size], shape)
        total += batch[:, 0].sum(axis=0, dtype=np.float64)
    return (total / max(len(scan_ids), 1)).astype(np.float32)


def _check_sample(results: dict[str, MethodRegions], n: int, seed: int) -> list[str]:
    """AD test scans explained by every method, a seeded sample of ``n`` (sorted)."""
    common = None
    for mr in results.values():
        s = mr.scans
        ad = s[s["label"] == 1]
        test = ad[ad["split"] == "test"]
        ids = set((test if len(test) else ad)["scan_id"])
        common = ids if common is None else common & ids
    pool = sorted(common or [])
    if len(pool) <= n:
        return pool
    rng = np.random.default_rng(seed)
    return sorted(np.asarray(pool)[rng.choice(len(pool), size=n, replace=False)].tolist())


def _model_checks(rd: RunDir, results: dict[str, MethodRegions], atlas: AtlasRegions, grid: Grid,
                  modes: dict[str, str], notices: list[str], *, faithfulness: bool,
                  sanity: bool, faithfulness_subjects: int, faithfulness_steps: int,
                  random_orders: int, sanity_subjects: int, sanity_voxels: int,
                  batch_size: int, seed: int, model, inputs_fn, explain_fn,
                  timings: dict[str, float]) -> dict[str, pd.DataFrame]:
    from brainlrp.analysis.faithfulness import faithfulness as run_faithfulness
    from brainlrp.analysis.sanity import cascading_randomization

    out: dict[str, pd.DataFrame] = {}
    if model is None:
        model = _default_model(rd, notices)
    if model is not None and inputs_fn is None:
        inputs_fn = _default_inputs(rd, notices)
    if model is None or inputs_fn is None:
        return out
    # A private copy in eval mode: the caller's model keeps its mode and weights.
    model = copy.deepcopy(model).eval()
    methods = list(results)
    n_sample = max(faithfulness_subjects if faithfulness else 0,
                   sanity_subjects if sanity else 0)
    sample = _check_sample(results, n_sample, seed)
    if not sample:
        notices.append("no AD scan was explained by every method: faithfulness and sanity "
                       "checks skipped")
        return out
    if faithfulness:
        tick = time.perf_counter()
        f_ids = sample[: faithfulness_subjects]
        hc_ids = sorted({s for mr in results.values()
                         for s in mr.scans.loc[mr.scans["label"] == 0, "scan_id"]})
        if not hc_ids:
            notices.append("no healthy control was analysed (no HC mean image): faithfulness "
                           "check skipped")
        else:
            x = _load_inputs(inputs_fn, f_ids, grid.shape)
            density = {}
            for m, mr in results.items():
                pos = mr.scans.reset_index(drop=True).set_index("scan_id").index.get_indexer(f_ids)
                density[m] = mr.area_density(atlas)[pos]
            res = run_faithfulness(model, x, _hc_mean(inputs_fn, hc_ids, grid.shape, batch_size),
                                   atlas.area_codes, atlas.n_areas, methods, density=density,
                                   scan_ids=f_ids, steps=faithfulness_steps,
                                   n_random=random_orders, seed=seed,
                                   batch_size=min(batch_size, 4))
            out["faithfulness"] = res.curves[list(FAITHFULNESS_COLUMNS)]
            out["faithfulness_aopc"] = res.aopc[list(AOPC_COLUMNS)]
        timings["faithfulness"] = time.perf_counter() - tick
    if sanity:
        if explain_fn is None:
            explain_fn = _default_explain(notices)
        if explain_fn is not None:
            tick = time.perf_counter()
            s_ids = sample[: sanity_subjects]
            x = _load_inputs(inputs_fn, s_ids, grid.shape)
            out["sanity"] = cascading_randomization(
                model, x, explain_fn, methods, mask=brain_mask(grid), relevance=modes,
                scan_ids=s_ids, n_voxels=sanity_voxels, seed=seed)[list(SANITY_COLUMNS)]
            timings["sanity"] = time.perf_counter() - tick
    return out


# --------------------------------------------------------------------------- helpers


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)[list(columns)]


def _mean(values: pd.Series) -> float | None:
    v = values.to_numpy(float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
