"""Relevance totals: mean whole-map relevance per group, and the HC / AD ratio.

The paper found very little relevance in healthy controls: with relevance
starting at p(AD), a control called HC carries little of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainlrp.analysis import metrics
from brainlrp.analysis.regions import MethodRegions

#: Columns of ``analysis/relevance_totals.tsv``.
TOTALS_COLUMNS = ("method", "relevance", "group", "n_subjects", "mean_total_relevance")


@dataclass(frozen=True)
class TotalsSummary:
    """A method's summary part: mean total relevance of controls over patients."""

    hc_ad_ratio: float


def relevance_totals(mr: MethodRegions) -> tuple[pd.DataFrame, TotalsSummary]:
    """Mean total relevance per group, and the HC / AD ratio of the means.

    Parameters
    ----------
    mr : MethodRegions
        One method's streamed region results.

    Returns
    -------
    table : pandas.DataFrame
        :data:`TOTALS_COLUMNS`, one row per non-empty group.
    summary : TotalsSummary
    """
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
    return pd.DataFrame(rows, columns=list(TOTALS_COLUMNS)), TotalsSummary(hc_ad_ratio=ratio)
