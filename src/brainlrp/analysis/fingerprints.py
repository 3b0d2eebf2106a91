"""Individual fingerprints of confidently detected patients (the paper's Fig. 7).

True positives with p(AD) above 0.9; their relevance-density vectors over the 25
areas of highest mean density among them; the cosine similarity of every pair.
The least similar pair is shown as patients A and B.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainlrp.analysis import metrics
from brainlrp.analysis.regions import AtlasRegions, MethodRegions, subject_means

FINGERPRINT_MIN_P = 0.9
FINGERPRINT_AREAS = 25
#: Columns of ``analysis/fingerprints.tsv``.
FINGERPRINT_COLUMNS = ("method", "participant_id", "p_ad", "area_rank", "area",
                       "relevance_density")
#: Columns of ``analysis/fingerprint_similarity.tsv``.
SIMILARITY_COLUMNS = ("method", "participant_a", "participant_b", "cosine_similarity")


@dataclass(frozen=True)
class FingerprintSummary:
    """A method's summary part (``None`` where fewer than two patients qualify)."""

    fingerprint_n_patients: int
    fingerprint_mean_similarity: float | None = None
    fingerprint_min_similarity: float | None = None
    patient_a: str | None = None
    patient_b: str | None = None


def fingerprints(mr: MethodRegions, atlas: AtlasRegions
                 ) -> tuple[pd.DataFrame, pd.DataFrame, FingerprintSummary]:
    """Fingerprints and their pairwise similarity for one method.

    Parameters
    ----------
    mr : MethodRegions
    atlas : AtlasRegions

    Returns
    -------
    fingerprints : pandas.DataFrame
        :data:`FINGERPRINT_COLUMNS`.
    similarity : pandas.DataFrame
        :data:`SIMILARITY_COLUMNS` (the full matrix, long format).
    summary : FingerprintSummary
    """
    scans = mr.scans
    select = ((scans["outcome"] == "TP") & (scans["p_ad"] > FINGERPRINT_MIN_P)).to_numpy()
    pids, dens = subject_means(mr.area_density(atlas), scans, select)
    _, p_ad = subject_means(scans["p_ad"].to_numpy(float)[:, None], scans, select)
    if not pids:
        return (pd.DataFrame(columns=list(FINGERPRINT_COLUMNS)),
                pd.DataFrame(columns=list(SIMILARITY_COLUMNS)), FingerprintSummary(0))
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
    summary = FingerprintSummary(
        fingerprint_n_patients=len(pids),
        fingerprint_mean_similarity=metrics.mean_off_diagonal(sim),
        fingerprint_min_similarity=low,
        patient_a=pids[i] if i >= 0 else None, patient_b=pids[j] if j >= 0 else None)
    return fp, sim_rows, summary
