"""Per-scan results the report shows: each scan's areas ranked, and how the model classified.

Two analyses that need no model and no heatmap beyond the region tables:

- :func:`scan_areas`: each scan's areas ranked by relevance density (areas of at least
  :data:`MIN_AREA_FRACTION` of the atlas's voxels on the grid, as a few voxels make a
  density noisy), the first :data:`N_TOP` kept, each with the healthy controls' mean and
  SD of that area's density (each control subject counts once) and the scan's z-score
  against them. The report's cards, its table of cards and its example figures read
  these rankings.
- :func:`classification`: the confusion matrix and the ROC curve per split of
  ``predictions.tsv``; ``analysed`` stands for the analysed scans when the run has no
  test split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Smallest area ranked, as a fraction of the atlas's voxels on the grid. Density is
#: relevance per voxel, so a tiny structure with a few bright voxels (optic chiasm, 3rd
#: ventricle: under 0.1 %) would otherwise top the list. 1 % would also drop the
#: hippocampus and amygdala (0.1-0.5 %), the areas the paper is about.
MIN_AREA_FRACTION = 0.001
#: Areas kept per scan.
N_TOP = 10
#: Columns of ``analysis/scan_areas.tsv``.
SCAN_AREAS_COLUMNS = ("method", "scan_id", "participant_id", "rank", "area", "density",
                      "hc_mean", "hc_sd", "z")
#: Columns of ``analysis/confusion.tsv`` (one row per split, true and predicted class).
CONFUSION_COLUMNS = ("split", "diagnosis", "predicted", "outcome", "n")
#: Columns of ``analysis/roc.tsv`` (the curve's points per split; ``auc`` on every row).
ROC_COLUMNS = ("split", "threshold", "fpr", "tpr", "auc")
#: The split name used when ``predictions.tsv`` has no test scan.
ANALYSED = "analysed"


def area_density(subjects: pd.DataFrame, areas: Sequence[str] | None = None) -> pd.DataFrame:
    """Relevance density of each merged area per scan from a ``subjects.tsv`` table.

    An area's density is the sum of its labels' relevance sums over the sum of
    their voxel counts (left and right merged, as in the paper).

    Parameters
    ----------
    subjects : pandas.DataFrame
        Long table with ``scan_id``, ``area``, ``n_voxels``, ``relevance_sum``.
    areas : sequence of str, optional
        Column order (default: order of first appearance).

    Returns
    -------
    pandas.DataFrame
        Index ``scan_id``, one column per area.
    """
    g = subjects.groupby(["scan_id", "area"], sort=False)[["relevance_sum", "n_voxels"]].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        dens = (g["relevance_sum"] / g["n_voxels"].where(g["n_voxels"] > 0)).unstack("area")
    order = list(areas) if areas is not None else list(dict.fromkeys(subjects["area"]))
    scans = list(dict.fromkeys(subjects["scan_id"].astype(str)))
    dens.index = dens.index.astype(str)
    return dens.reindex(index=scans, columns=order)


def per_participant(values: pd.DataFrame, scans: pd.DataFrame) -> pd.DataFrame:
    """Average rows indexed by ``scan_id`` per participant (each subject counts once).

    Parameters
    ----------
    values : pandas.DataFrame
        Indexed by ``scan_id``.
    scans : pandas.DataFrame
        With ``scan_id`` and ``participant_id``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``participant_id`` (sorted).
    """
    pid = scans.set_index("scan_id")["participant_id"].reindex(values.index)
    keep = pid.notna().to_numpy()
    return values[keep].groupby(pid[keep].to_numpy(), sort=True).mean()


def area_voxels(subjects: pd.DataFrame, areas: Sequence[str]) -> pd.Series:
    """Voxels of each merged area on the grid (one scan's ``n_voxels``: every scan shares
    the grid), in the order of ``areas``."""
    first = subjects[subjects["scan_id"] == subjects["scan_id"].iloc[0]] if len(subjects) \
        else subjects
    counts = first.groupby("area", sort=False)["n_voxels"].sum()
    return counts.reindex(list(areas)).fillna(0).astype(int)


def large_areas(n_voxels: pd.Series) -> list[str]:
    """Areas with at least :data:`MIN_AREA_FRACTION` of the atlas's voxels on the grid."""
    return n_voxels.index[n_voxels >= MIN_AREA_FRACTION * max(int(n_voxels.sum()), 1)].tolist()


def top_of_scan(density: pd.Series, hc: pd.DataFrame, k: int = N_TOP) -> pd.DataFrame:
    """One scan's ``k`` areas of highest density with z-scores against the controls.

    Parameters
    ----------
    density : pandas.Series
        One scan's density per area.
    hc : pandas.DataFrame
        Healthy controls (rows) by areas: the reference distribution.
    k : int

    Returns
    -------
    pandas.DataFrame
        ``area``, ``density``, ``hc_mean``, ``hc_sd``, ``z`` (NaN where the controls'
        SD is 0 or fewer than two controls exist); highest density first.
    """
    d = density.dropna().sort_values(ascending=False).head(k)
    mu = hc.mean(axis=0).reindex(d.index) if len(hc) else pd.Series(np.nan, index=d.index)
    sd = hc.std(axis=0, ddof=1).reindex(d.index) if len(hc) > 1 else \
        pd.Series(np.nan, index=d.index)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (d - mu) / sd.where(sd > 0)
    return pd.DataFrame({"area": d.index, "density": d.to_numpy(float),
                         "hc_mean": mu.to_numpy(float), "hc_sd": sd.to_numpy(float),
                         "z": z.to_numpy(float)})


def scan_areas(method: str, subjects: pd.DataFrame, areas: Sequence[str],
               k: int = N_TOP) -> pd.DataFrame:
    """Every scan's ``k`` areas of highest density with z-scores against the controls.

    Parameters
    ----------
    method : str
    subjects : pandas.DataFrame
        The method's ``regions/<method>/subjects.tsv`` (``scan_id``, ``participant_id``,
        ``diagnosis``, ``area``, ``n_voxels``, ``relevance_sum``).
    areas : sequence of str
        The merged areas in atlas order.
    k : int

    Returns
    -------
    pandas.DataFrame
        :data:`SCAN_AREAS_COLUMNS`, scans in the table's order, ``rank`` from 1.
    """
    dens = area_density(subjects, areas)
    dens = dens[large_areas(area_voxels(subjects, areas))]
    scans = subjects.drop_duplicates("scan_id")[["scan_id", "participant_id", "diagnosis"]]
    scans = scans.assign(scan_id=scans["scan_id"].astype(str))
    per = per_participant(dens, scans)
    dx = scans.drop_duplicates("participant_id").set_index("participant_id")["diagnosis"]
    hc = per[dx.reindex(per.index) == "HC"]
    pid = scans.set_index("scan_id")["participant_id"]
    frames = []
    for sid in dens.index:
        top = top_of_scan(dens.loc[sid], hc, k)
        frames.append(top.assign(method=method, scan_id=sid, participant_id=pid[sid],
                                 rank=np.arange(1, len(top) + 1)))
    if not frames:
        return pd.DataFrame(columns=list(SCAN_AREAS_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(SCAN_AREAS_COLUMNS)]


def classification(predictions: pd.DataFrame, analysed: Sequence[str] = ()
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The confusion matrix and the ROC curve of every split.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``predictions.tsv`` as :func:`brainlrp.analysis.inputs.read_predictions` reads it
        (``split``, ``label``, ``predicted``, ``p_ad``, ``outcome``).
    analysed : sequence of str
        Scan ids with a heatmap: scored as the split :data:`ANALYSED` when no scan is a
        test scan.

    Returns
    -------
    confusion, roc : pandas.DataFrame
        :data:`CONFUSION_COLUMNS` (four rows per split, zeros included) and
        :data:`ROC_COLUMNS` (scikit-learn's ROC points; none for a split with one class).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    splits = {name: rows for name, rows in predictions.groupby("split", sort=True)}
    if "test" not in splits:
        splits[ANALYSED] = predictions[predictions["scan_id"].isin(set(analysed))]
    confusion, roc = [], []
    for name, rows in splits.items():
        y, p = rows["label"].to_numpy(int), rows["p_ad"].to_numpy(float)
        pred = rows["predicted"].to_numpy(int)
        for truth, dx in ((0, "HC"), (1, "AD")):
            for called, outcome in ((0, "TN" if truth == 0 else "FN"),
                                    (1, "FP" if truth == 0 else "TP")):
                confusion.append({"split": name, "diagnosis": dx,
                                  "predicted": "AD" if called else "HC", "outcome": outcome,
                                  "n": int(np.sum((y == truth) & (pred == called)))})
        if len(np.unique(y)) == 2:
            fpr, tpr, thresholds = roc_curve(y, p)
            roc.append(pd.DataFrame({"split": name, "threshold": thresholds, "fpr": fpr,
                                     "tpr": tpr, "auc": float(roc_auc_score(y, p))}))
    roc_frame = (pd.concat(roc, ignore_index=True)[list(ROC_COLUMNS)] if roc
                 else pd.DataFrame(columns=list(ROC_COLUMNS)))
    return pd.DataFrame(confusion, columns=list(CONFUSION_COLUMNS)), roc_frame
