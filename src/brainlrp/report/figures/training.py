"""Training curves and the test classification."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainlrp.report import style
from brainlrp.report.figures.common import styled

# =========================================================================== training


@styled
def training_curves(log: pd.DataFrame, selected_trial: int | None = None,
                    early_stopping_start: int | None = None) -> Figure:
    """Loss and balanced accuracy per epoch, training (solid) and validation (dashed).

    Parameters
    ----------
    log : pandas.DataFrame
        ``training_log.csv``: trial, epoch, train_loss, train_bacc, val_loss, val_bacc.
    selected_trial : int, optional
        The kept trial (drawn thicker; its best validation epoch is starred).
    early_stopping_start : int, optional
        Epochs ignored by early stopping (shaded).

    Returns
    -------
    Figure
    """
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.06, right=0.83, bottom=0.15, top=0.88, wspace=0.22)
    trials = sorted(log["trial"].unique())
    colors = mpl.colormaps["tab10"]
    for ax, (metric, title) in zip(axes, (("loss", "cross-entropy loss"),
                                          ("bacc", "balanced accuracy")), strict=True):
        for t in trials:
            part = log[log["trial"] == t].sort_values("epoch")
            lw = 2.0 if t == selected_trial or len(trials) == 1 else 1.0
            alpha = 1.0 if lw > 1 else 0.55
            c = colors(int(t) % 10)
            for split, ls in (("train", "-"), ("val", "--")):
                col = f"{split}_{metric}"
                if col in part:
                    ax.plot(part["epoch"], part[col], ls=ls, color=c, lw=lw, alpha=alpha,
                            label=f"trial {t} {split}" if metric == "loss" else None)
            if t == selected_trial and "val_bacc" in part and part["val_bacc"].notna().any():
                best = part.loc[part["val_bacc"].idxmax()]
                if metric == "bacc":
                    ax.plot(best["epoch"], best["val_bacc"], marker="*", ms=13, color=c,
                            mec="black", zorder=5, label="kept checkpoint")
        if early_stopping_start:
            ax.axvspan(0, early_stopping_start, color="#eeeeee", zorder=0)
            ax.text(early_stopping_start / 2, 0.98, "no early\nstopping", fontsize=7,
                    ha="center", va="top", color="#777777",
                    transform=ax.get_xaxis_transform())
        ax.set_xlabel("epoch")
        ax.set_title(title, loc="left")
        if metric == "bacc":
            ax.axhline(0.5, color="#999999", lw=0.8, ls=":")
            ax.set_ylim(0.3, 1.02)
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.84, 0.5), frameon=False,
               title="solid: train, dashed: val", title_fontsize=8)
    return fig


@styled
def classification_figure(test: pd.DataFrame, confusion: pd.DataFrame,
                          roc: pd.DataFrame) -> Figure:
    """Confusion matrix, ROC curve and AD probability per diagnosis on the test split.

    Parameters
    ----------
    test : pandas.DataFrame
        Test rows of ``predictions.tsv`` (label, p_ad, predicted).
    confusion : pandas.DataFrame
        The split's rows of ``analysis/confusion.tsv`` (diagnosis, predicted, n).
    roc : pandas.DataFrame
        The split's rows of ``analysis/roc.tsv`` (fpr, tpr, auc); empty with one class.

    Returns
    -------
    Figure
    """
    fig = Figure(figsize=(12, 3.5))
    gs = fig.add_gridspec(1, 3, width_ratios=(1, 1.1, 1.5), left=0.06, right=0.98,
                          bottom=0.16, top=0.86, wspace=0.42)
    y, p = test["label"].to_numpy(int), test["p_ad"].to_numpy(float)
    pred = test["predicted"].to_numpy(int)
    counts = confusion.set_index(["diagnosis", "predicted"])["n"]
    cm = np.array([[int(counts.get((a, b), 0)) for b in ("HC", "AD")] for a in ("HC", "AD")])
    ax = fig.add_subplot(gs[0])
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.max(), 1))
    names = (("TN", "FP"), ("FN", "TP"))
    for a in (0, 1):
        for b in (0, 1):
            ax.text(b, a, f"{cm[a, b]}\n{names[a][b]}", ha="center", va="center",
                    fontsize=11, color="white" if cm[a, b] > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], ["HC", "AD"])
    ax.set_yticks([0, 1], ["HC", "AD"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true diagnosis")
    ax.set_title("confusion matrix", loc="left")
    ax.spines[:].set_visible(False)

    ax = fig.add_subplot(gs[1])
    if len(roc):
        ax.plot(roc["fpr"].to_numpy(float), roc["tpr"].to_numpy(float),
                color=style.GROUP_COLORS["AD"], lw=2, label=f"AUC = {roc['auc'].iloc[0]:.3f}")
        ax.legend(loc="lower right", frameon=False)
    ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1)
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_aspect("equal")
    ax.set_title("ROC curve", loc="left")

    ax = fig.add_subplot(gs[2])
    rng = np.random.default_rng(0)
    for row, label in enumerate((0, 1)):
        sel = y == label
        jitter = rng.uniform(-0.18, 0.18, sel.sum())
        outcome = np.where(pred[sel] == label, "TN" if label == 0 else "TP",
                           "FP" if label == 0 else "FN")
        ax.scatter(p[sel], row + jitter, s=22, c=[style.GROUP_COLORS[o] for o in outcome],
                   edgecolors="black", linewidths=0.4, zorder=3)
    ax.axvline(0.5, color="black", lw=1, ls="--")
    ax.set_yticks([0, 1], ["HC", "AD"])
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.5, 1.5)
    ax.set_xlabel("AD probability p(AD)")
    ax.set_title("p(AD) per test scan (threshold 0.5)", loc="left")
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="o", ls="", color=style.GROUP_COLORS[o],
                              mec="black", mew=0.4, label=o) for o in style.OUTCOMES],
              loc="center", ncol=4, frameon=False, handletextpad=0.2, columnspacing=1.0)
    return fig
