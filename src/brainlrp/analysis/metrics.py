"""Pure maths of the analysis: relevance sign, region statistics, similarity and tests.

Every function takes plain arrays and returns arrays or floats; nothing here reads
files or knows about run directories, so each can be checked by hand on tiny inputs.
Undefined results (a zero denominator, fewer than two observations, a constant
vector) are ``NaN``, never an exception: a small group or a flat heatmap is a
normal outcome of an analysis, not an error.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from brainlrp.catalog import RELEVANCE_MODES


def apply_relevance(maps: np.ndarray, mode: str, out: np.ndarray | None = None) -> np.ndarray:
    """Turn heatmaps into relevance: keep the positive part, the magnitude, or the sign.

    Parameters
    ----------
    maps : numpy.ndarray
        Heatmaps of any shape.
    mode : {"positive", "signed", "absolute"}
    out : numpy.ndarray, optional
        Where to write the result (may be ``maps`` itself, to save a copy of a
        large batch).

    Returns
    -------
    numpy.ndarray
    """
    if mode == "positive":
        return np.maximum(maps, 0, out=out)
    if mode == "absolute":
        return np.abs(maps, out=out)
    if mode == "signed":
        if out is None or out is maps:
            return maps
        out[...] = maps
        return out
    raise ValueError(f"relevance mode must be one of {', '.join(RELEVANCE_MODES)}, got {mode!r}")


def density(sums: np.ndarray, n_voxels: np.ndarray) -> np.ndarray:
    """Relevance density: region sum divided by region size (NaN for empty regions).

    Parameters
    ----------
    sums : array (..., n_regions)
    n_voxels : array (n_regions,)
    """
    n = np.asarray(n_voxels, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(sums, dtype=np.float64) / np.where(n > 0, n, np.nan)


def safe_ratio(numerator, denominator) -> np.ndarray:
    """``numerator / denominator`` with NaN wherever the denominator is 0 or NaN."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


def gain(group_mean: np.ndarray, hc_mean: np.ndarray) -> np.ndarray:
    """Relevance gain: a group's mean over the healthy controls' mean (NaN where HC is 0)."""
    return safe_ratio(group_mean, hc_mean)


def weighted_group_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of ``values`` rows with ``weights`` that sum to the number of subjects.

    A scan of a subject with ``m`` scans in the group has weight ``1 / m``, so each
    subject counts once whatever its number of scans.

    Parameters
    ----------
    values : array (n_scans, n_regions)
    weights : array (n_scans,)

    Returns
    -------
    array (n_regions,); NaN when the weights sum to 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    if total <= 0:
        return np.full(np.shape(values)[1:], np.nan)
    return w @ np.asarray(values, dtype=np.float64) / total


def cosine_similarity_matrix(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of every pair of rows (NaN for an all-zero row).

    Parameters
    ----------
    vectors : array (n, d)

    Returns
    -------
    array (n, n)
    """
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = v / np.where(norms > 0, norms, np.nan)[:, None]
    return unit @ unit.T


def mean_off_diagonal(matrix: np.ndarray) -> float:
    """Mean of the entries above the diagonal (NaN for fewer than two rows)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[0] < 2:
        return float("nan")
    return float(np.nanmean(m[np.triu_indices(m.shape[0], k=1)]))


def least_similar_pair(matrix: np.ndarray) -> tuple[int, int, float]:
    """Indices ``(i, j)``, ``i < j``, of the smallest off-diagonal entry and its value.

    Ties go to the first pair in row-major order, so the result is deterministic.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape[0] < 2:
        return -1, -1, float("nan")
    i, j = np.triu_indices(m.shape[0], k=1)
    vals = np.where(np.isnan(m[i, j]), np.inf, m[i, j])
    best = int(np.argmin(vals))
    return int(i[best]), int(j[best]), float(m[i[best], j[best]])


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first.

    NaN counts as smallest; ties keep the original order (a stable sort), so the
    ranking is deterministic.
    """
    v = np.asarray(values, dtype=np.float64)
    key = np.where(np.isnan(v), -np.inf, v)
    return np.argsort(-key, kind="stable")[: max(int(k), 0)]


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> tuple[int, float]:
    """How many of the top-``k`` entries two score vectors share.

    Returns
    -------
    n_shared : int
    overlap : float
        ``n_shared / k`` (NaN for ``k = 0``).
    """
    shared = len(set(top_k(a, k).tolist()) & set(top_k(b, k).tolist()))
    return shared, (shared / k if k > 0 else float("nan"))


def top_k_recall(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of the truly most affected regions found among the ``k`` highest scores.

    The truly affected set is the ``k`` regions with the largest ``truth``, limited
    to regions whose truth is above 0 (a healthy region cannot be "missed").

    Returns
    -------
    float
        NaN when no region is affected.
    """
    t = np.asarray(truth, dtype=np.float64)
    wanted = [i for i in top_k(t, k).tolist() if t[i] > 0]
    if not wanted:
        return float("nan")
    found = set(top_k(scores, k).tolist())
    return sum(i in found for i in wanted) / len(wanted)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (NaN for fewer than three pairs or a constant vector)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 3:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    den = np.sqrt((xc @ xc) * (yc @ yc))
    return float(xc @ yc / den) if den > 0 else float("nan")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (ties get average ranks; NaN when undefined)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    return pearson(rankdata(x[keep]), rankdata(y[keep]))


def permutation_pearson(x: np.ndarray, y: np.ndarray, n_permutations: int = 1000,
                        seed: int = 0) -> tuple[float, float]:
    """Pearson r with a two-sided permutation p-value.

    ``p = (1 + #{|r_perm| >= |r|}) / (1 + n_permutations)``: the observed labelling
    counts as one permutation, so p is never 0 and lies in
    ``[1 / (n_permutations + 1), 1]``.

    Parameters
    ----------
    x, y : array (n,)
        Pairs with a missing value in either are dropped.
    n_permutations : int
    seed : int
        Seeds the permutations, so the p-value is reproducible.

    Returns
    -------
    r, p : float
        NaN for fewer than three pairs or a constant vector.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    r = pearson(x, y)
    if not np.isfinite(r) or n_permutations < 1:
        return r, float("nan")
    rng = np.random.default_rng(seed)
    xc = (x - x.mean()) / np.linalg.norm(x - x.mean())
    yc = (y - y.mean()) / np.linalg.norm(y - y.mean())
    # All permutations in one matrix product; centring and norms are permutation-invariant.
    perms = rng.permuted(np.tile(yc, (n_permutations, 1)), axis=1)
    r_perm = perms @ xc
    # A small tolerance so that a permutation reproducing |r| exactly still counts.
    hits = int(np.count_nonzero(np.abs(r_perm) >= abs(r) - 1e-12))
    return r, (1 + hits) / (1 + n_permutations)


def mass_accuracy(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive relevance that falls inside ``mask``.

    Parameters
    ----------
    relevance : array
        A heatmap; only its positive part counts.
    mask : bool array of the same shape
        E.g. the truly atrophied voxels.

    Returns
    -------
    float
        NaN when the heatmap has no positive relevance.
    """
    pos = np.maximum(np.asarray(relevance, dtype=np.float64), 0)
    total = pos.sum()
    if total <= 0:
        return float("nan")
    return float(pos[np.asarray(mask, dtype=bool)].sum() / total)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve from ranks (the Mann-Whitney U statistic).

    Tied scores get average ranks, so a constant heatmap scores exactly 0.5.

    Parameters
    ----------
    scores : array (n,)
    labels : bool array (n,)

    Returns
    -------
    float
        NaN when either class is empty.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def aopc(curves: np.ndarray) -> np.ndarray:
    """Area over the perturbation curve (Samek et al. 2017).

    ``AOPC = 1 / (K + 1) * sum_{k=0..K} (p(x_0) - p(x_k))``, where ``x_0`` is the
    unperturbed input (its term is 0) and ``x_k`` has the ``k`` first regions
    replaced. Larger means the regions removed first mattered more to the model.

    Parameters
    ----------
    curves : array (..., K + 1)
        The model's output after 0, 1, ..., K perturbation steps.

    Returns
    -------
    array (...)
    """
    c = np.asarray(curves, dtype=np.float64)
    return (c[..., :1] - c).mean(axis=-1)
