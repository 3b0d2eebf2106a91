"""Overlap of the top areas between LRP betas."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainlrp.report.figures.common import styled

# =========================================================================== beta


@styled
def beta_overlap_figure(overlap: pd.DataFrame) -> Figure:
    """Top-k overlap between every pair of betas, for sum, density and gain.

    Parameters
    ----------
    overlap : pandas.DataFrame
        ``analysis/beta_overlap.tsv``.

    Returns
    -------
    Figure
    """
    betas = sorted(set(overlap["beta_a"]) | set(overlap["beta_b"]))
    n = len(betas)
    fig = Figure(figsize=(12, 3.9))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.06, right=0.92, bottom=0.17, top=0.86, wspace=0.35)
    k = int(overlap["k"].iloc[0]) if len(overlap) else 10
    im = None
    for ax, measure in zip(axes, ("sum", "density", "gain"), strict=True):
        m = np.eye(n)
        shared = np.full((n, n), k, dtype=int)
        part = overlap[overlap["measure"] == measure]
        for row in part.itertuples():
            i, j = betas.index(row.beta_a), betas.index(row.beta_b)
            m[i, j] = m[j, i] = row.overlap
            shared[i, j] = shared[j, i] = row.n_shared
        im = ax.imshow(m, cmap="Greens", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{shared[i, j]}", ha="center", va="center", fontsize=9,
                        color="white" if m[i, j] > 0.6 else "black")
        labels = [f"{b:g}" for b in betas]
        ax.set_xticks(range(n), labels)
        ax.set_yticks(range(n), labels)
        ax.set_xlabel("β")
        ax.set_ylabel("β")
        ax.set_title(f"relevance {measure}", loc="left")
        ax.spines[:].set_visible(False)
    cax = fig.add_axes((0.935, 0.2, 0.012, 0.6))
    cb = fig.colorbar(im, cax=cax)
    cb.set_label(f"shared top-{k} areas (fraction)")
    fig.text(0.06, 0.02, f"numbers: areas shared among the top {k}", fontsize=8,
             color="#555555")
    return fig
