"""Hippocampal relevance against hippocampal volume."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainlrp.report import style
from brainlrp.report.figures.common import _wrap, scaled_axis, styled
from brainlrp.report.style import fmt_p, method_label

# =========================================================================== hippocampus


@styled
def hippocampus_figure(subjects: pd.DataFrame, stats: pd.DataFrame, methods: Sequence[str]
                       ) -> Figure:
    """Hippocampal relevance against hippocampal volume over the true positives.

    Parameters
    ----------
    subjects : pandas.DataFrame
        ``analysis/hippocampus_subjects.tsv``.
    stats : pandas.DataFrame
        ``analysis/hippocampus.tsv`` (r, p_value, n_subjects per method).
    methods : sequence of str
        Panels, in order.

    Returns
    -------
    Figure
    """
    methods = [m for m in methods if m in set(subjects["method"])]
    ncols = min(4, max(1, len(methods)))
    nrows = max(1, -(-len(methods) // ncols))
    # Titles wrap to the panel's width (a method's label and id can be 60 characters),
    # so neighbouring titles never run into each other.
    # (about 0.7 em per bold character, less the y axis' labels)
    chars = int((12 / ncols - 0.7) * 72 / (0.7 * 9))
    titles = {m: _wrap(method_label(m), chars) for m in methods}
    lines = max((t.count("\n") + 2 for t in titles.values()), default=2)
    fig = Figure(figsize=(12, nrows * (2.5 + 0.17 * lines) + 0.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    st = stats.set_index("method")
    for ax, m in zip(axes, methods, strict=False):
        part = subjects[subjects["method"] == m]
        x = part["hippocampus_volume"].to_numpy(float)
        y = part["hippocampus_relevance"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=20, color=style.GROUP_COLORS["TP"], edgecolor="black",
                   linewidths=0.4, zorder=3)
        if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
            slope, icpt = np.polyfit(x[ok], y[ok], 1)
            xs = np.linspace(x[ok].min(), x[ok].max(), 2)
            ax.plot(xs, slope * xs + icpt, color="black", lw=1.2)
        r = st.loc[m, "r"] if m in st.index else np.nan
        p = st.loc[m, "p_value"] if m in st.index else np.nan
        ax.set_title(f"{titles[m]}\nr = {style.fmt_r(r)}, {fmt_p(p)}, "
                     f"n = {int(ok.sum())}", loc="left", fontsize=9)
        ax.set_xlabel("hippocampus volume (mm³)")
        scaled_axis(ax, "y", "hippocampal relevance (a.u.)")
        ax.yaxis.label.set_fontsize(8)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(4))
    for ax in axes[len(methods):]:
        ax.set_axis_off()
    return fig
