"""What analyze reads: predictions, the model grid, the heatmaps present, the cohort."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp import catalog
from brainlrp.card import read_card
from brainlrp.data.grid import Grid
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

PREDICTION_COLUMNS = ("participant_id", "label", "p_ad", "predicted")


def model_grid(rd: RunDir) -> Grid:
    """The model grid from the run's model card (a clear error when the run is not trained)."""
    if not rd.predictions.is_file():
        raise BrainLRPError(f"{rd.root} has no predictions.tsv",
                            "run `brainlrp train` (then `brainlrp explain`) on it first")
    if not rd.card.is_file():
        raise BrainLRPError(f"{rd.root} has no model/card.json",
                            "run `brainlrp train` on it first")
    return read_card(rd.root).grid


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
    table["diagnosis"] = np.where(table["label"] == 1, "AD", "HC")
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
    return catalog.ordered(found)


def select_methods(available: list[str], requested: Sequence[str] | None) -> list[str]:
    """The requested methods (comma lists allowed), checked against the available ones."""
    return catalog.select(requested, available, "no heatmaps for",
                          "choose among those or run `brainlrp explain --methods ...` first")


def relevance_modes(methods: Sequence[str], relevance: str) -> dict[str, str]:
    """Relevance mode per method: the method's default for ``"auto"``, else ``relevance``."""
    if relevance != "auto" and relevance not in catalog.RELEVANCE_MODES:
        raise BrainLRPError(f"unknown relevance mode {relevance!r}",
                            f"use auto, {', '.join(catalog.RELEVANCE_MODES)}")
    return {m: catalog.describe(m).relevance if relevance == "auto" else relevance
            for m in methods}


def scans_with_heatmaps(rd: RunDir, method: str, predictions: pd.DataFrame,
                        notices: list[str]) -> pd.DataFrame:
    """The scans of ``predictions`` that have a heatmap of ``method`` (notices for extras)."""
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


def cohort_tables(rd: RunDir, cohort, notices: list[str]
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


def test_balanced_accuracy(rd: RunDir) -> float | None:
    """The model's test balanced accuracy from ``metrics.json`` (``None`` when unknown)."""
    from brainlrp._io import read_json

    try:
        value = read_json(rd.metrics)["test"]["balanced_accuracy"]
        return None if value is None else float(value)
    except (OSError, KeyError, TypeError, ValueError):
        return None
