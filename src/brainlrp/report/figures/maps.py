"""Brain maps: explanations over the template, group slices, glass brains."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from brainlrp.report import style
from brainlrp.report.figures.common import _fit_text, styled
from brainlrp.report.style import area_label

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
