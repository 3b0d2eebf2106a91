"""Relevance fingerprints of patients."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainlrp.report import style
from brainlrp.report.figures.common import scaled_axis, styled
from brainlrp.report.style import area_label

# =========================================================================== fingerprints


@styled
def fingerprint_figure(similarity: pd.DataFrame, profiles: pd.DataFrame,
                       patients: Mapping[str, str]) -> Figure:
    """Cosine similarity of the confident patients' density fingerprints, and the
    fingerprints of patients A and B (the paper's Fig. 7).

    Parameters
    ----------
    similarity : pandas.DataFrame
        Square matrix (participants x participants).
    profiles : pandas.DataFrame
        Participants (index) by the fingerprint areas (columns, top first).
    patients : mapping of letter -> participant_id

    Returns
    -------
    Figure
    """
    n_areas = profiles.shape[1]
    fig = Figure(figsize=(12, max(4.2, 0.22 * n_areas + 1.2)))
    gs = fig.add_gridspec(1, 2, width_ratios=(1, 1.15), left=0.07, right=0.98, bottom=0.12,
                          top=0.9, wspace=0.72)
    ax = fig.add_subplot(gs[0])
    ids = list(similarity.index)
    m = similarity.to_numpy(float)
    lo = float(np.nanmin(m)) if m.size else 0.0
    im = ax.imshow(m, cmap="viridis", vmin=min(lo, 0.99), vmax=1.0)
    ticks = np.arange(len(ids))
    show = ids if len(ids) <= 30 else [""] * len(ids)
    ax.set_xticks(ticks, show, rotation=90, fontsize=7 if len(ids) > 12 else 8)
    ax.set_yticks(ticks, show, fontsize=7 if len(ids) > 12 else 8)
    for letter, pid in patients.items():
        if pid in ids:
            i = ids.index(pid)
            for setter in (ax.get_xticklabels()[i], ax.get_yticklabels()[i]):
                setter.set_color(style.PATIENT_COLORS[letter])
                setter.set_fontweight("bold")
    a, b = patients.get("A"), patients.get("B")
    if a in ids and b in ids:
        i, j = ids.index(a), ids.index(b)
        for (r, c) in ((i, j), (j, i)):
            ax.add_patch(mpl.patches.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False,
                                               ec="red", lw=2))
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label("cosine similarity")
    ax.set_title(f"fingerprint similarity ({len(ids)} patients, p(AD) > 0.9)", loc="left")
    ax.spines[:].set_visible(False)

    ax = fig.add_subplot(gs[1])
    areas = list(profiles.columns)
    y = np.arange(len(areas))
    mean = profiles.mean(axis=0).to_numpy(float)
    ax.barh(y, mean, color="#dddddd", height=0.8, label="mean of the patients")
    markers = {"A": "D", "B": "s"}
    for letter, pid in patients.items():
        if pid in profiles.index:
            ax.plot(profiles.loc[pid].to_numpy(float), y, marker=markers.get(letter, "o"),
                    ms=5, lw=1.2, color=style.PATIENT_COLORS[letter],
                    label=f"patient {letter} ({pid})")
    ax.set_yticks(y, [area_label(a, 32) for a in areas])
    ax.set_ylim(len(areas) - 0.5, -0.5)
    ax.tick_params(axis="y", length=0)
    scaled_axis(ax, "x", "relevance density (a.u. per voxel)")
    ax.set_title("fingerprints of patients A and B", loc="left")
    ax.legend(loc="lower right", frameon=True, framealpha=0.95, edgecolor="none")
    return fig
