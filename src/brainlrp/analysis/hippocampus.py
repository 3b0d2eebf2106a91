"""Hippocampus: relevance against volume over true positives (the paper's Fig. 9).

Pearson r of the merged Hippocampus area's relevance sum (left plus right,
averaged over a participant's TP scans) with ``hippocampus_volume`` from the
participants table; two-sided, seeded permutation test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainlrp.analysis import metrics
from brainlrp.analysis.regions import AtlasRegions, MethodRegions, subject_means

#: Columns of ``analysis/hippocampus.tsv``.
HIPPOCAMPUS_COLUMNS = ("method", "relevance", "n_subjects", "r", "p_value", "n_permutations")
#: Columns of ``analysis/hippocampus_subjects.tsv``.
HIPPOCAMPUS_SUBJECT_COLUMNS = ("method", "participant_id", "hippocampus_relevance",
                               "hippocampus_volume")


@dataclass(frozen=True)
class HippocampusSummary:
    """A method's summary part."""

    hippocampus_n: int
    hippocampus_r: float
    hippocampus_p: float


def hippocampus_area(subjects: pd.DataFrame | None, atlas: AtlasRegions, notices: list[str]
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


def hippocampus(mr: MethodRegions, area: int, subjects: pd.DataFrame, n_permutations: int,
                seed: int) -> tuple[pd.DataFrame, pd.DataFrame, HippocampusSummary]:
    """Pearson r of hippocampal relevance with hippocampal volume over TPs (permutation p).

    Parameters
    ----------
    mr : MethodRegions
    area : int
        Column of the Hippocampus area (:func:`hippocampus_area`).
    subjects : pandas.DataFrame
        Participants table with ``hippocampus_volume``.
    n_permutations : int
    seed : int

    Returns
    -------
    table : pandas.DataFrame
        :data:`HIPPOCAMPUS_COLUMNS` (one row).
    per_subject : pandas.DataFrame
        :data:`HIPPOCAMPUS_SUBJECT_COLUMNS`.
    summary : HippocampusSummary
    """
    select = (mr.scans["outcome"] == "TP").to_numpy()
    pids, rel = subject_means(mr.area_sums[:, area][:, None], mr.scans, select)
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
    return table, per_subject, HippocampusSummary(n, r, p)
