"""The report's figures: data in, a matplotlib :class:`~matplotlib.figure.Figure` out.

Every function here is pure: it takes arrays and tables, draws on a new figure
(never pyplot's global state, so nothing needs closing) and returns it. Brain
images are drawn with nilearn in neurological convention (left on the left, marked
L and R); charts with matplotlib. Colours, names and units come from
:mod:`brainlrp.report.style`, so the same method or group looks the same everywhere.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from brainlrp.report import style
from brainlrp.report.style import area_label, fmt_p, method_label

#: Matplotlib settings of every chart (sizes in points; figures are shown at 96 px/inch).
RC = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
      "ytick.labelsize": 8, "legend.fontsize": 8, "axes.spines.top": False,
      "axes.spines.right": False, "axes.grid": False, "figure.dpi": 100,
      "font.family": "DejaVu Sans", "axes.titleweight": "bold", "svg.fonttype": "none",
      "image.interpolation": "nearest"}


def styled(func: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw ``func``'s figure under the report's matplotlib settings."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(RC):
            return func(*args, **kwargs)

    return wrapper


def _message(fig: Figure, text: str, ax=None) -> None:
    target = ax if ax is not None else fig.add_axes((0, 0, 1, 1))
    target.set_axis_off()
    target.text(0.5, 0.5, text, ha="center", va="center", color="#555555",
                transform=target.transAxes, wrap=True)


def _text_width(text: str, fontsize: float, bold: bool = False) -> float:
    """Width of ``text`` (its longest line) in inches at ``fontsize`` points (the
    report's font)."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(family=RC["font.family"], size=fontsize,
                          weight="bold" if bold else "normal")
    # Agg's own measure, as the text will be drawn; font hinting makes the width vary by
    # a few per cent with the resolution, so the widest of the screen's and the page's.
    return max(renderer.get_text_width_height_descent(line, prop, ismath=False)[0]
               / renderer.dpi for renderer in _measuring_renderers()
               for line in text.split("\n"))


@functools.cache
def _measuring_renderers() -> tuple:
    from matplotlib.backends.backend_agg import RendererAgg

    from brainlrp.report.html import FIGURE_DPI

    return tuple(RendererAgg(1, 1, dpi) for dpi in (RC["figure.dpi"], FIGURE_DPI))


def _fit_text(text: str, width: float, fontsize: float = 10.0, smallest: float = 8.0,
              bold: bool = True) -> tuple[str, float]:
    """``(text, size)`` that fits ``width`` inches: the size lowered in half points down to
    ``smallest``, then the text wrapped at spaces (a method's label and id can be 80
    characters; panel titles side by side must not run into each other)."""
    size = fontsize
    while size > smallest and _text_width(text, size, bold) > width:
        size -= 0.5
    chars = len(text)
    wrapped = text
    while chars > 10 and _text_width(wrapped, size, bold) > width:
        chars -= 2
        wrapped = _wrap(text, chars)
    return wrapped, size


# =========================================================================== brains


@dataclass
class BrainMap:
    """A volume to draw over a background, with how to draw it.

    Attributes
    ----------
    data : numpy.ndarray
        3D map on the model grid (relevance mode already applied).
    title : str
    unit : str
        Colour-bar label, with units.
    mode : str
        ``positive``/``absolute`` (black-red-yellow from 0) or ``signed`` (diverging).
    vmax : float, optional
        Top of the colour scale; by default a robust maximum of ``data``.
    threshold : float, optional
        Values with magnitude below this are transparent; default ``0.2 * vmax``.
    """

    data: np.ndarray
    title: str
    unit: str
    mode: str = "positive"
    vmax: float | None = None
    threshold: float | None = None

    def scale(self) -> tuple[float, float]:
        """``(vmax, threshold)`` of the colour scale."""
        vmax = self.vmax if self.vmax is not None else robust_max(self.data)
        threshold = self.threshold if self.threshold is not None else 0.2 * vmax
        return vmax, threshold


def robust_max(data: np.ndarray, percentile: float = 99.5) -> float:
    """A colour-scale maximum: the ``percentile`` of the non-zero magnitudes.

    Parameters
    ----------
    data : numpy.ndarray
    percentile : float

    Returns
    -------
    float
        Positive; 1.0 for an all-zero map.
    """
    values = np.abs(np.asarray(data, dtype=np.float32))
    values = values[values > 0]
    if not values.size:
        return 1.0
    top = float(np.percentile(values, percentile))
    return top if top > 0 else float(values.max())


def peak_coords(data: np.ndarray, affine: np.ndarray, smooth: float = 1.0) -> tuple[float, ...]:
    """MNI coordinates of a map's largest magnitude after light smoothing.

    Parameters
    ----------
    data : numpy.ndarray
        3D map.
    affine : numpy.ndarray
        Voxel-to-MNI affine.
    smooth : float
        Gaussian sigma in voxels (0: none); makes the peak robust to one bright voxel.

    Returns
    -------
    tuple of float
        (x, y, z) in mm.
    """
    from scipy.ndimage import gaussian_filter

    d = gaussian_filter(np.abs(np.asarray(data, dtype=np.float32)), smooth) if smooth else data
    ijk = np.unravel_index(int(np.argmax(d)), d.shape)
    xyz = np.asarray(affine)[:3, :3] @ np.asarray(ijk, float) + np.asarray(affine)[:3, 3]
    return tuple(float(v) for v in xyz)


def _img(data: np.ndarray, affine: np.ndarray):
    import nibabel as nib

    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(affine, float))


def _norm_cmap(bm: BrainMap):
    import nilearn.plotting.cm  # noqa: F401  (registers nilearn's colour maps)

    vmax, _ = bm.scale()
    cmap = mpl.colormaps[style.cmap_for(bm.mode)]
    vmin = -vmax if bm.mode == "signed" else 0.0
    return mpl.colors.Normalize(vmin=vmin, vmax=vmax), cmap


def _draw_stat(ax, bm: BrainMap, background, affine, display_mode: str, cut_coords,
               annotate: bool = True, draw_cross: bool = True):
    """One nilearn stat-map display on ``ax`` (no colour bar: the caller draws one)."""
    from nilearn import plotting

    vmax, threshold = bm.scale()
    signed = bm.mode == "signed"
    with warnings.catch_warnings():
        # nilearn warns when nothing passes the threshold (e.g. a control's map).
        warnings.simplefilter("ignore", UserWarning)
        return plotting.plot_stat_map(
            _img(bm.data, affine), bg_img=_img(background, affine), axes=ax,
            display_mode=display_mode, cut_coords=cut_coords, cmap=style.cmap_for(bm.mode),
            vmin=None if signed else 0.0, vmax=vmax, symmetric_cbar=signed,
            threshold=threshold, colorbar=False, black_bg=True, annotate=annotate,
            draw_cross=draw_cross, dim=0, resampling_interpolation="nearest")


def _colorbar(fig: Figure, rect, bm: BrainMap, dark: bool = True,
              orientation: str = "vertical") -> None:
    """A colour bar with the unit as its label and the display threshold marked."""
    norm, cmap = _norm_cmap(bm)
    cax = fig.add_axes(rect)
    cb = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax,
                      orientation=orientation)
    color = "white" if dark else "black"
    cb.locator = mpl.ticker.MaxNLocator(5)
    cb.formatter = mpl.ticker.FuncFormatter(lambda v, _pos: style.fmt_number(v, 2))
    cb.update_ticks()
    cb.set_label(bm.unit, color=color, fontsize=8)
    cb.ax.tick_params(colors=color, labelsize=7)
    cb.outline.set_edgecolor(color)
    _, threshold = bm.scale()
    for t in ((threshold, -threshold) if bm.mode == "signed" else (threshold,)):
        if orientation == "vertical":
            cb.ax.axhline(t, color="#888888", lw=1.2)
        else:
            cb.ax.axvline(t, color="#888888", lw=1.2)


@styled
def explanation_figure(background: np.ndarray, affine: np.ndarray, maps: Sequence[BrainMap],
                       cut: Sequence[float], contours: Sequence[tuple[np.ndarray, str]] = (),
                       title: str = "") -> Figure:
    """Individual explanations side by side (e.g. LRP beside guided backprop).

    Parameters
    ----------
    background : numpy.ndarray
        The subject's own scan (or a template) on the model grid.
    affine : numpy.ndarray
    maps : sequence of BrainMap
        One panel each, cut at the same point.
    cut : sequence of float
        MNI (x, y, z) in mm where the three orthogonal slices meet.
    contours : sequence of (mask, name)
        Atlas regions outlined in every panel (colours of :data:`style.CONTOUR_COLORS`).
    title : str

    Returns
    -------
    Figure
    """
    n = len(maps)
    fig = Figure(figsize=(12, 3.4), facecolor="black")
    width = 1.0 / n
    for k, bm in enumerate(maps):
        left = k * width
        ax = fig.add_axes((left + 0.005, 0.12, width - 0.085, 0.68))
        display = _draw_stat(ax, bm, background, affine, "ortho", tuple(cut))
        for (mask, _name), color in zip(contours, style.CONTOUR_COLORS, strict=False):
            if mask.any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    display.add_contours(_img(mask.astype(np.float32), affine), levels=[0.5],
                                         colors=[color], linewidths=1.3)
        _colorbar(fig, (left + width - 0.072, 0.16, 0.008, 0.6), bm)
        label, size = _fit_text(bm.title, (width - 0.02) * fig.get_figwidth())
        fig.text(left + 0.01, 0.815, label, color="white", fontsize=size, fontweight="bold",
                 va="bottom", linespacing=1.0)
    if title:
        fig.text(0.006, 0.975, title, color="white", fontsize=11, fontweight="bold", va="top")
    if contours:
        x = 0.01
        fig.text(x, 0.03, "outlined:", color="#bbbbbb", fontsize=8.5)
        x += 0.055
        for (_mask, name), color in zip(contours, style.CONTOUR_COLORS, strict=False):
            label = area_label(name, 40)
            fig.text(x, 0.03, f"■ {label}", color=color, fontsize=8.5)
            x += 0.0062 * (len(label) + 3) + 0.01
    return fig


@styled
def group_slices(background: np.ndarray, affine: np.ndarray,
                 maps: Mapping[str, np.ndarray | None], counts: Mapping[str, int],
                 unit: str, mode: str, cuts: Sequence[float], vmax: float | None = None,
                 method: str = "") -> Figure:
    """Mean maps of the groups as axial slices, one row per group, one colour scale.

    Parameters
    ----------
    background : numpy.ndarray
        Template on the model grid.
    affine : numpy.ndarray
    maps : mapping of group -> array or None
        Rows in order; ``None`` (empty group) gives a row that says so.
    counts : mapping of group -> int
        Subjects per group (shown on the row).
    unit, mode : str
    cuts : sequence of float
        Axial cut positions (z, mm).
    vmax : float, optional
        Common top of the scale (default: robust maximum of the first map).
    method : str
        Display name shown in the title.

    Returns
    -------
    Figure
    """
    groups = list(maps)
    first = next((m for m in maps.values() if m is not None), None)
    if vmax is None:
        vmax = robust_max(first) if first is not None else 1.0
    row_h = 1.55
    fig = Figure(figsize=(12, row_h * len(groups) + 0.5), facecolor="black")
    top = 1 - 0.4 / fig.get_figheight()
    h = (top - 0.02) / len(groups)
    bm0 = BrainMap(first if first is not None else np.zeros(1), "", unit, mode, vmax=vmax)
    for r, g in enumerate(groups):
        bottom = top - (r + 1) * h
        color = style.GROUP_COLORS.get(g, "white")
        fig.text(0.01, bottom + h * 0.62, g, color=color, fontsize=14, fontweight="bold")
        fig.text(0.01, bottom + h * 0.38, f"n = {counts.get(g, 0)}", color="#cccccc",
                 fontsize=8.5)
        ax = fig.add_axes((0.085, bottom + 0.005, 0.82, h - 0.01))
        data = maps[g]
        if data is None:
            ax.set_facecolor("black")
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"no {style.GROUP_NAMES.get(g, g)} in the test set",
                    color="#aaaaaa", ha="center", va="center", transform=ax.transAxes)
            continue
        bm = BrainMap(data, "", unit, mode, vmax=vmax, threshold=bm0.scale()[1])
        _draw_stat(ax, bm, background, affine, "z", list(cuts), annotate=r == 0,
                   draw_cross=False)
    _colorbar(fig, (0.918, 0.1, 0.011, 0.75), bm0)
    fig.text(0.085, 1 - 0.08 / fig.get_figheight(),
             f"{method} mean maps per group, one colour scale (z in mm; L = left)",
             color="white", fontsize=10, va="top")
    return fig


class _GlassBrainAxes(Axes):
    """Axes for nilearn's glass-brain views: patches are added without a data-limit update.

    nilearn draws each view's outline as about 250 Bezier patches and then sets the
    view's limits from the outline's bounds itself, so matplotlib's per-patch limit
    update (an extrema search on every Bezier segment) is wasted work - most of a glass
    brain's drawing time in a long report. Everything else ``add_patch`` does (axes,
    transform, clipping to the axes) ``add_artist`` does too.
    """

    def add_patch(self, p):
        return self.add_artist(p)


class _GlassBrainFigure(Figure):
    """A figure whose axes made while ``nilearn_axes`` is set are :class:`_GlassBrainAxes`
    (nilearn creates its view axes itself, inside the axes it is given)."""

    nilearn_axes = False

    def add_axes(self, *args, **kwargs):
        if self.nilearn_axes and not {"projection", "polar", "axes_class"} & set(kwargs):
            kwargs["axes_class"] = _GlassBrainAxes
        return super().add_axes(*args, **kwargs)


@styled
def glass_brains(maps: Sequence[BrainMap], affine: np.ndarray, ncols: int = 2,
                 display_mode: str = "lyrz", row_height: float = 2.2) -> Figure:
    """Maximum-intensity projections ("glass brains"), one panel per map.

    Parameters
    ----------
    maps : sequence of BrainMap
        Each with its own colour scale (give the same ``vmax`` to compare).
    affine : numpy.ndarray
    ncols : int
    display_mode : str
        nilearn's glass-brain views (``lyrz`` = left, front, right, top).
    row_height : float
        Inches per row.

    Returns
    -------
    Figure
    """
    from nilearn import plotting

    nrows = max(1, -(-len(maps) // ncols))
    fig = _GlassBrainFigure(figsize=(12, row_height * nrows), facecolor="white")
    w, h = 1.0 / ncols, 1.0 / nrows
    for k, bm in enumerate(maps):
        r, c = divmod(k, ncols)
        left, bottom = c * w, 1 - (r + 1) * h
        ax = fig.add_axes((left + 0.005, bottom + h * 0.04, w - 0.1, h * 0.8))
        vmax, threshold = bm.scale()
        signed = bm.mode == "signed"
        fig.nilearn_axes = True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                plotting.plot_glass_brain(
                    _img(bm.data, affine), axes=ax, display_mode=display_mode,
                    cmap=style.cmap_for(bm.mode), vmin=-vmax if signed else 0.0, vmax=vmax,
                    threshold=threshold, colorbar=False, plot_abs=not signed,
                    symmetric_cbar=signed, black_bg=False, annotate=True)
        finally:
            fig.nilearn_axes = False
        _colorbar(fig, (left + w - 0.085, bottom + h * 0.12, 0.008, h * 0.66), bm, dark=False)
        label, size = _fit_text(bm.title, (w - 0.02) * fig.get_figwidth())
        fig.text(left + 0.01, bottom + h - 0.012, label, fontsize=size, fontweight="bold",
                 va="top", linespacing=1.0)
    return fig


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
def classification_figure(test: pd.DataFrame) -> Figure:
    """Confusion matrix, ROC curve and AD probability per diagnosis on the test split.

    Parameters
    ----------
    test : pandas.DataFrame
        Test rows of ``predictions.tsv`` (label, p_ad, predicted).

    Returns
    -------
    Figure
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = Figure(figsize=(12, 3.5))
    gs = fig.add_gridspec(1, 3, width_ratios=(1, 1.1, 1.5), left=0.06, right=0.98,
                          bottom=0.16, top=0.86, wspace=0.42)
    y, p = test["label"].to_numpy(int), test["p_ad"].to_numpy(float)
    pred = (p >= 0.5).astype(int)
    cm = np.array([[np.sum((y == a) & (pred == b)) for b in (0, 1)] for a in (0, 1)])
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
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=style.GROUP_COLORS["AD"], lw=2,
                label=f"AUC = {roc_auc_score(y, p):.3f}")
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


# =========================================================================== regions


def scaled_axis(ax, which: str, label: str) -> None:
    """Label an axis whose values are tiny or huge with a power of ten in the label.

    ``relevance per voxel (a.u.)`` with ticks 0, 5e-06, 1e-05 becomes ticks 0, 0.5, 1
    and the label ``relevance per voxel (×10⁻⁵ a.u.)``: no offset text that could
    collide with the label. Call after the data are drawn.

    Parameters
    ----------
    ax : matplotlib Axes
    which : {"x", "y"}
    label : str
    """
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    top = max(abs(lo), abs(hi))
    exponent = int(np.floor(np.log10(top))) if top > 0 else 0
    axis = ax.xaxis if which == "x" else ax.yaxis
    if -2 <= exponent <= 3:
        axis.set_major_formatter(mpl.ticker.ScalarFormatter(useOffset=False))
        axis.set_label_text(label)
        return
    scale = 10.0 ** exponent
    axis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _pos: f"{v / scale:g}"))
    power = f"×10{str(exponent).translate(_SUPERSCRIPT)}"
    if label.endswith(")"):
        text = f"{label[:label.rindex('(') + 1]}{power} {label[label.rindex('(') + 1:]}"
    else:
        text = f"{label} ({power})"
    axis.set_label_text(text)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _per_voxel(unit: str) -> str:
    """``relevance (a.u.)`` -> ``relevance per voxel (a.u.)``."""
    return unit.replace(" (a.u.)", " per voxel (a.u.)") if "(a.u.)" in unit else \
        f"{unit} per voxel"


def _barh_panel(ax, labels: Sequence[str], series: Sequence[tuple[str, np.ndarray, str]],
                xlabel: str, title: str, ref: float | None = None) -> None:
    n = len(labels)
    k = len(series)
    height = 0.8 / k
    ypos = np.arange(n)
    for j, (name, values, color) in enumerate(series):
        ax.barh(ypos - 0.4 + height * (j + 0.5), values, height=height, color=color,
                label=name, edgecolor="none")
    ax.set_yticks(ypos, [area_label(a, 30) for a in labels])
    ax.invert_yaxis()
    ax.set_ylim(n - 0.5, -0.5)
    scaled_axis(ax, "x", xlabel)
    ax.set_title(title, loc="left")
    if ref is not None:
        ax.axvline(ref, color="#555555", lw=0.8, ls=":")
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#eeeeee", lw=0.8)
    ax.set_axisbelow(True)


@styled
def region_bars(groups: Mapping[str, pd.DataFrame], unit: str,
                top: Mapping[str, Sequence[str]], rank_group: str = "TP") -> Figure:
    """Relevance sum, density and gain of the top areas (as in the paper).

    Parameters
    ----------
    groups : mapping of group -> area rows of ``groups.tsv``
        Needs AD and HC; TP and TN for the gain.
    unit : str
        Relevance unit (e.g. ``relevance (a.u.)``).
    top : mapping of measure -> area names
        The top areas of ``sum``, ``density`` and ``gain``, highest first
        (``analysis/top_areas.tsv``).
    rank_group : str
        Group whose values ranked the areas (the paper: true positives).

    Returns
    -------
    Figure
    """
    k = max((len(v) for v in top.values()), default=0)
    # One legend for the three panels, under them: inside a panel it covered the bars of
    # the lowest areas. The constrained layout makes room for it and the area names.
    fig = Figure(figsize=(12, 0.21 * max(k, 1) + 1.7), layout="constrained")
    axes = fig.subplots(1, 3)
    fig.get_layout_engine().set(wspace=0.06)
    handles: dict[str, object] = {}
    specs = (("sum", "mean_sum", "relevance sum", f"sum of {unit}", ("AD", "HC")),
             ("density", "mean_density", "relevance density", _per_voxel(unit), ("AD", "HC")),
             ("gain", "gain", "relevance gain", "group mean / HC mean", ("TP", "TN")))
    for ax, (measure, col, title, xlabel, shown) in zip(axes, specs, strict=True):
        areas = list(top.get(measure) or [])
        if not areas:
            _message(fig, "no AD group", ax)
            continue
        series = []
        for g in shown:
            table = groups.get(g)
            if table is None or table.empty:
                continue
            vals = table.set_index("region")[col].reindex(areas).to_numpy(float)
            name = f"{g}/HC" if col == "gain" else g
            series.append((f"{name} (n={int(table['n_subjects'].max())})", vals,
                           style.GROUP_COLORS[g]))
        _barh_panel(ax, areas, series, xlabel, f"{title}\n(top {len(areas)} by {rank_group})",
                    ref=1.0 if col == "gain" else None)
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=len(handles), frameon=False)
    return fig


def _half_violin(ax, values: np.ndarray, pos: float, side: int, color: str,
                 width: float = 0.42) -> None:
    values = values[np.isfinite(values)]
    if values.size < 2 or np.ptp(values) == 0:
        if values.size:
            ax.plot([values.mean()] * 2, [pos, pos + side * width * 0.6], color=color, lw=2)
        return
    import inspect

    # Matplotlib 3.10 renamed ``vert=False`` to ``orientation="horizontal"``.
    horizontal = ({"orientation": "horizontal"}
                  if "orientation" in inspect.signature(ax.violinplot).parameters
                  else {"vert": False})
    parts = ax.violinplot(values, positions=[pos], widths=2 * width, showextrema=False,
                          showmedians=False, **horizontal)
    for body in parts["bodies"]:
        verts = body.get_paths()[0].vertices
        if side < 0:
            verts[:, 1] = np.minimum(verts[:, 1], pos)
        else:
            verts[:, 1] = np.maximum(verts[:, 1], pos)
        body.set_facecolor(color)
        body.set_edgecolor("none")
        body.set_alpha(0.55)
    ax.plot([np.median(values)] * 2, [pos, pos + side * width * 0.8], color=color, lw=1.6)


@styled
def density_violins(density: pd.DataFrame, diagnosis: pd.Series, areas: Sequence[str],
                    unit: str, patients: Mapping[str, tuple[str, pd.Series]] | None = None
                    ) -> Figure:
    """Relevance density over subjects, AD (above) and HC (below) per area, with
    patients A and B marked (as in the paper).

    Parameters
    ----------
    density : pandas.DataFrame
        Participants (index) by areas (columns).
    diagnosis : pandas.Series
        ``AD`` or ``CN``/``HC`` per participant.
    areas : sequence of str
        Areas to show, top first.
    unit : str
    patients : mapping of letter -> (participant_id, densities by area), optional

    Returns
    -------
    Figure
    """
    n = len(areas)
    fig = Figure(figsize=(12, 0.3 * n + 1.5))
    ax = fig.add_axes((0.25, 0.8 / fig.get_figheight(), 0.72,
                       1 - 1.35 / fig.get_figheight()))
    dx = diagnosis.reindex(density.index).replace({"CN": "HC"})
    for i, area in enumerate(areas):
        col = density[area] if area in density else pd.Series(dtype=float)
        _half_violin(ax, col[dx == "AD"].to_numpy(float), i, -1, style.GROUP_COLORS["AD"])
        _half_violin(ax, col[dx == "HC"].to_numpy(float), i, 1, style.GROUP_COLORS["HC"])
    markers = {"A": "D", "B": "s"}
    for letter, (pid, values) in (patients or {}).items():
        v = values.reindex(list(areas)).to_numpy(float)
        ax.scatter(v, np.arange(n) - 0.12, marker=markers.get(letter, "o"), s=30,
                   facecolor=style.PATIENT_COLORS.get(letter, "black"), edgecolor="white",
                   linewidths=0.6, zorder=5, label=f"patient {letter} ({pid})")
    ax.set_yticks(np.arange(n), [area_label(a, 36) for a in areas])
    ax.set_ylim(n - 0.5, -0.6)
    scaled_axis(ax, "x", _per_voxel(unit))
    ax.grid(axis="x", color="#eeeeee", lw=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    from matplotlib.patches import Patch

    handles = [Patch(color=style.GROUP_COLORS["AD"], alpha=0.55,
                     label=f"AD (n={int((dx == 'AD').sum())}), upper half"),
               Patch(color=style.GROUP_COLORS["HC"], alpha=0.55,
                     label=f"HC (n={int((dx == 'HC').sum())}), lower half")]
    h, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + h, loc="lower right", frameon=True, framealpha=0.95,
              edgecolor="none")
    ax.set_title("relevance density per subject (violins: distribution, tick: median)",
                 loc="left")
    return fig


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


# =========================================================================== many methods


def method_legend(fig: Figure, handles: Sequence, labels: Sequence[str],
                  width: float | None = None) -> int:
    """A complete legend under the figure's axes, in as many columns as the longest label
    allows; returns its number of rows (the caller makes the figure tall enough).

    The legend sits outside the axes in the figure's constrained layout, which shrinks
    the axes to make room for it, so no entry is cut off however many methods there are.

    Parameters
    ----------
    fig : Figure
        Made with ``layout="constrained"``.
    handles, labels : sequence
    width : float, optional
        Inches available (default: the figure's width).

    Returns
    -------
    int
    """
    ncol = legend_columns(labels, fig.get_figwidth() if width is None else width)
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, frameon=False,
               handlelength=3.2)
    return -(-len(labels) // ncol)


def legend_columns(labels: Sequence[str], width: float = 12.0) -> int:
    """Columns of a :func:`method_legend` of ``labels`` on a figure ``width`` inches wide:
    as many as the widest entry allows (known before drawing, to size the figure)."""
    fontsize = float(RC["legend.fontsize"])
    # Handle (3.2 em), its padding and the spacing to the next column around each label.
    column = max((_text_width(t, fontsize) for t in labels), default=1.0) + 6.0 * fontsize / 72
    return int(max(1, min(len(labels), (width - 0.3) // column)))


def legend_height(n_rows: int) -> float:
    """Inches a :func:`method_legend` of ``n_rows`` rows takes (8 pt text, 1.4 line spacing)."""
    return 0.2 + n_rows * 0.2


def _wrap(text: str, width: int) -> str:
    """``text`` broken at spaces into lines of at most ``width`` characters (a long word
    such as a method id stays whole)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_long_words=False,
                                   break_on_hyphens=False)) or text


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


# The boxplot keyword for horizontal boxes (matplotlib 3.10 renamed ``vert``).
_HORIZONTAL = ({"orientation": "horizontal"} if tuple(int(v) for v in
               mpl.__version__.split(".")[:2]) >= (3, 10) else {"vert": False})


# =========================================================================== checks


def _method_lines(ax, curves: pd.DataFrame, x: str, y: str, methods: Sequence[str],
                  shown: Sequence[str]) -> None:
    """One line per method (mean of ``y`` at each ``x``), in its colour, style and marker."""
    for m in shown:
        part = curves[curves["method"] == m]
        mean = part.groupby(x)[y].mean()
        ax.plot(mean.index, mean.to_numpy(), lw=1.5, ms=4, label=method_label(m),
                **style.method_style(m, list(methods)))


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
