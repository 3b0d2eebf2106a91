"""Beta sensitivity: overlap of the top-k areas between every pair of the paper's betas.

For each pair of ``lrp-b<beta>`` methods and each measure (sum, density, gain),
the ``k`` areas ranked highest in the ranking group (TP, or AD without TPs) are
compared (the paper's Fig. 8).
"""

from __future__ import annotations

import pandas as pd

from brainlrp import catalog
from brainlrp.analysis import metrics
from brainlrp.analysis.regions import MethodRegions

#: Columns of ``analysis/beta_overlap.tsv``.
BETA_OVERLAP_COLUMNS = ("method_a", "method_b", "beta_a", "beta_b", "measure", "group", "k",
                        "n_shared", "overlap", "shared_areas")
MEASURES = (("sum", "mean_sum"), ("density", "mean_density"), ("gain", "gain"))


def beta_overlap(results: dict[str, MethodRegions], area_names: list[str], k: int
                 ) -> pd.DataFrame | None:
    """Overlap of the top-``k`` areas between every pair of betas.

    Parameters
    ----------
    results : dict of str to MethodRegions
        Every analysed method (only the paper's beta-rule methods are compared).
    area_names : list of str
    k : int

    Returns
    -------
    pandas.DataFrame or None
        :data:`BETA_OVERLAP_COLUMNS`; ``None`` with fewer than two betas.
    """
    betas = catalog.paper_betas(results)
    if len(betas) < 2:
        return None
    rows = []
    for a in range(len(betas)):
        for b in range(a + 1, len(betas)):
            (ma, ba), (mb, bb) = betas[a], betas[b]
            group = results[ma].ranking_group()
            ta = results[ma].group_area_means(group)
            tb = results[mb].group_area_means(group)
            if ta.empty or tb.empty:
                continue
            for measure, col in MEASURES:
                va, vb = ta[col].to_numpy(float), tb[col].to_numpy(float)
                n_shared, frac = metrics.top_k_overlap(va, vb, k)
                shared = sorted(set(metrics.top_k(va, k).tolist())
                                & set(metrics.top_k(vb, k).tolist()))
                rows.append({"method_a": ma, "method_b": mb, "beta_a": ba, "beta_b": bb,
                             "measure": measure, "group": group, "k": k, "n_shared": n_shared,
                             "overlap": frac,
                             "shared_areas": ";".join(area_names[i] for i in shared)})
    return pd.DataFrame(rows, columns=list(BETA_OVERLAP_COLUMNS))
