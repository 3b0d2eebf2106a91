"""Ground truth, region perturbation and randomisation checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainlrp.report import style
from brainlrp.report.figures.common import (
    _HORIZONTAL,
    _method_lines,
    _wrap,
    legend_columns,
    legend_height,
    method_legend,
    scaled_axis,
    styled,
)
from brainlrp.report.style import method_label

# =========================================================================== ground truth


@styled
def ground_truth_figure(per_scan: pd.DataFrame, summary: pd.DataFrame,
                        methods: Sequence[str]) -> Figure:
    """Recovery of the simulated atrophy per method, one row per method (so any number
    of methods fits): mass in atrophy (against chance), |.|-AUC and relevance-AUC vs
    atrophy, and top-k recall, over the AD scans.

    Parameters
    ----------
    per_scan : pandas.DataFrame
        ``analysis/ground_truth.tsv``.
    summary : pandas.DataFrame
        ``analysis/ground_truth_summary.tsv`` (for the chance level).
    methods : sequence of str

    Returns
    -------
    Figure
    """
    from brainlrp.report import glossary

    all_methods = list(methods)  # colours and markers as in the report's other charts
    methods = [m for m in methods if m in set(per_scan["method"])]
    k = int(per_scan["k"].iloc[0]) if "k" in per_scan and len(per_scan) else 10
    chance = summary.set_index("method")["chance_mass_accuracy"] if len(summary) else None
    specs = [("mass_accuracy", "mass", chance, (0, 1.02)),
             ("auc_abs", "auc_abs", 0.5, (0.2, 1.02)),
             ("auc", "auc_relevance", 0.5, (0.2, 1.02)),
             ("topk_recall", "topk_recall", None, (0, 1.05))]
    specs = [s for s in specs if s[0] in per_scan]
    n = max(len(methods), 1)
    fig = Figure(figsize=(12, 0.3 * n + 1.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(specs), sharey=True, squeeze=False)).ravel()
    rng = np.random.default_rng(0)
    pos = np.arange(len(methods))
    for ax, (col, key, ref, xlim) in zip(axes, specs, strict=True):
        ax.set_xlim(*xlim)
        data = [per_scan.loc[per_scan["method"] == m, col].dropna().to_numpy(float)
                for m in methods]
        if any(len(d) for d in data):
            ax.boxplot([d if len(d) else [np.nan] for d in data], positions=pos, widths=0.6,
                       showfliers=False, medianprops={"color": "black"},
                       boxprops={"color": "#555555"}, whiskerprops={"color": "#555555"},
                       capprops={"color": "#555555"}, manage_ticks=False, **_HORIZONTAL)
        for i, (m, d) in enumerate(zip(methods, data, strict=True)):
            st = style.method_style(m, all_methods)
            ax.scatter(d, i + rng.uniform(-0.17, 0.17, len(d)), s=10, alpha=0.75,
                       color=st["color"], marker=st["marker"], linewidths=0, zorder=3)
            if isinstance(ref, pd.Series) and m in ref.index:
                ax.plot([ref[m]] * 2, [i - 0.38, i + 0.38], color="red", lw=1.3, ls="--",
                        label="chance" if i == 0 else None)
        if isinstance(ref, float):
            ax.axvline(ref, color="red", lw=1, ls="--", label="chance")
        ax.set_xlabel(glossary.name(key, k))
        # Named above as well (a tall figure's bottom is off screen), wrapped to the narrow
        # panel so that neighbouring names never meet.
        ax.set_title(_wrap(glossary.name(key, k), 18), fontsize=9, fontweight="normal")
        ax.grid(axis="x", color="#eeeeee", lw=0.8)
        ax.set_axisbelow(True)
        ax.tick_params(axis="y", length=0)
    axes[0].set_yticks(pos, [method_label(m) for m in methods])
    axes[0].set_ylim(len(methods) - 0.5, -0.5)
    return fig


@styled
def faithfulness_figure(curves: pd.DataFrame, methods: Sequence[str]) -> Figure:
    """Region perturbation: p(AD) as the most relevant areas are replaced one by one
    (by the healthy-control mean), against random area orders.

    Parameters
    ----------
    curves : pandas.DataFrame
        ``analysis/faithfulness.tsv`` (``random`` is the baseline).
    methods : sequence of str

    Returns
    -------
    Figure
        Two panels above one legend with an entry per method and the random orders.
    """
    shown = [m for m in methods if m in set(curves["method"])]
    labels = [method_label(m) for m in shown] + ["random order"]
    rows = -(-len(labels) // legend_columns(labels))
    fig = Figure(figsize=(12, 3.4 + legend_height(rows)), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (col, title, ylabel) in zip(axes, (
            ("p_ad", "p(AD) while areas are replaced", "mean p(AD)"),
            ("p_ad_drop", "drop in p(AD)", "mean p(AD) drop (higher = more faithful)")),
            strict=True):
        _method_lines(ax, curves, "n_areas_replaced", col, methods, shown)
        rand = curves[curves["method"] == "random"]
        if len(rand):
            mean = rand.groupby("n_areas_replaced")[col].mean()
            ax.plot(mean.index, mean.to_numpy(), color="black", ls="--", lw=2.2,
                    label="random order")
        ax.set_xlabel("areas replaced (most relevant first)")
        scaled_axis(ax, "y", ylabel)
        ax.set_title(title, loc="left")
    h, lab = axes[0].get_legend_handles_labels()
    method_legend(fig, h, lab)
    return fig


@styled
def sanity_figure(sanity: pd.DataFrame, methods: Sequence[str]) -> Figure:
    """Cascading model randomisation: rank correlation of each method's map with the
    trained model's map as layers are re-initialised from the top.

    Parameters
    ----------
    sanity : pandas.DataFrame
        ``analysis/sanity.tsv``.
    methods : sequence of str

    Returns
    -------
    Figure
        One panel above one legend with an entry per method.
    """
    shown = [m for m in methods if m in set(sanity["method"])]
    labels = [method_label(m) for m in shown]
    rows = -(-len(labels) // legend_columns(labels))
    fig = Figure(figsize=(12, 3.6 + legend_height(rows)), layout="constrained")
    ax = fig.subplots()
    layers = (sanity.sort_values("stage").drop_duplicates("stage")
              .set_index("stage")["layer"])
    for m in shown:
        part = sanity[sanity["method"] == m]
        mean = part.groupby("stage")["spearman"].mean()
        x = np.concatenate([[0], mean.index.to_numpy()])
        y = np.concatenate([[1.0], mean.to_numpy(float)])
        ax.plot(x, y, ms=4, lw=1.5, label=method_label(m),
                **style.method_style(m, list(methods)))
    ax.set_xticks([0, *layers.index], ["trained", *[f"+{lay}" for lay in layers]],
                  rotation=30, ha="right")
    ax.axhline(0, color="#999999", lw=0.8, ls=":")
    ax.set_ylim(-0.25, 1.05)
    ax.set_ylabel("Spearman ρ with the trained map")
    ax.set_xlabel("layers re-initialised, cumulatively from the output")
    ax.set_title("cascading randomisation (a map that explains the model falls towards 0)",
                 loc="left")
    h, lab = ax.get_legend_handles_labels()
    if h:
        method_legend(fig, h, lab)
    return fig
