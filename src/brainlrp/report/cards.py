"""Per-subject explanation cards: one PNG per test scan, cheap enough for hundreds.

A card shows the AD probability and outcome, three orthogonal slices of the
subject's own scan through the relevance peak with the relevance on top, and the
ten areas of highest relevance density with each area's z-score against the
healthy controls (bar: the subject, coloured by z as the legend says; grey: the
controls' mean ± 1 SD), and the subject's age and sex from the participants table.
The ranking and the z-scores are ``analyze``'s (``analysis/scan_areas.tsv``,
:func:`brainlrp.analysis.scans.scan_areas`).

Speed: :class:`CardRenderer` builds one matplotlib figure (Agg) and, for each
card, only swaps image data, bar widths and texts before saving; slices are drawn
with ``imshow`` on pre-computed extents, not with nilearn. A card costs a few tens
of milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainlrp._io import atomic_path
from brainlrp.analysis.scans import N_TOP
from brainlrp.report import style
from brainlrp.report.figures import RC, peak_coords


@dataclass
class CardData:
    """What one card shows.

    Attributes
    ----------
    scan_id, participant_id, diagnosis, outcome : str
    p_ad : float
    background : numpy.ndarray
        The subject's scan (or the template) on the model grid.
    relevance : numpy.ndarray
        The heatmap with the method's relevance mode applied.
    top : pandas.DataFrame
        ``area``, ``density``, ``hc_mean``, ``hc_sd``, ``z``; highest density first.
    background_note : str
        Shown when the background is not the subject's own scan.
    age : float or None
        From the cohort's participants table (``None``: shown as ``age –``).
    sex : str or None
        As written in the participants table (``None``: ``sex –``).
    """

    scan_id: str
    participant_id: str
    diagnosis: str
    outcome: str
    p_ad: float
    background: np.ndarray
    relevance: np.ndarray
    top: pd.DataFrame
    background_note: str = ""
    age: float | None = None
    sex: str | None = None

    def demographics(self) -> str:
        """``age 71 · sex F``; a dash for what the participants table lacks."""
        age = "–" if self.age is None or not np.isfinite(self.age) else f"{self.age:.0f}"
        return f"age {age} · sex {self.sex or '–'}"


class CardRenderer:
    """Draw cards on one reused figure.

    Parameters
    ----------
    affine : numpy.ndarray
        Model-grid affine (diagonal, RAS+; true for the template grids).
    shape : tuple of int
    unit : str
        Colour-bar label.
    mode : str
        Relevance mode (``signed`` gets a diverging map).
    method : str
        Display name of the method.
    vmax : float
        Colour scale top, shared by all cards so they can be compared.
    mask : numpy.ndarray of bool, optional
        Brain mask: the slices are cropped to its bounding box.
    """

    WIDTH, HEIGHT = 11.0, 3.9

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int], unit: str, mode: str,
                 method: str, vmax: float, mask: np.ndarray | None = None):
        import nilearn.plotting.cm  # noqa: F401  (registers nilearn's colour maps)

        self.affine = np.asarray(affine, float)
        self.shape = tuple(shape)
        self.mode = mode
        self.vmax = float(vmax)
        self.threshold = 0.2 * self.vmax
        self.method = method
        if mask is not None and np.any(mask):
            where = np.argwhere(mask)
            lo = np.maximum(where.min(axis=0) - 2, 0)
            hi = np.minimum(where.max(axis=0) + 3, self.shape)
        else:
            lo, hi = np.zeros(3, int), np.asarray(self.shape)
        self.box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        self.lo = lo
        with mpl.rc_context(RC):
            self._build(unit)

    # ------------------------------------------------------------------ layout

    def _extent(self, axis: int) -> tuple[float, float, float, float]:
        """imshow extent (mm) of the cropped slice orthogonal to ``axis``."""
        step = np.diag(self.affine)[:3]
        first = self.affine[:3, 3] + step * self.lo
        n = [b.stop - b.start for b in self.box]
        edges = [(first[a] - step[a] / 2, first[a] + step[a] * (n[a] - 0.5)) for a in range(3)]
        h, v = [a for a in range(3) if a != axis]
        return (*edges[h], *edges[v])

    def _build(self, unit: str) -> None:
        """The figure's fixed parts, drawn once: header with the p(AD) gauge, the three
        slices with their colour bar, and the top-areas bars."""
        self.fig = Figure(figsize=(self.WIDTH, self.HEIGHT), facecolor="white")
        self._build_header()
        left = self._build_slices()
        self._build_colorbar(unit, left)
        self._build_bars()

    def _build_header(self) -> None:
        fig = self.fig
        self.title = fig.text(0.012, 0.935, "", fontsize=12.5, fontweight="bold", va="center")
        self.subtitle = fig.text(0.012, 0.855, "", fontsize=9, va="center", color="#333333")
        self.outcome = fig.text(0.565, 0.935, "", fontsize=12, fontweight="bold", va="center",
                                ha="right")
        gauge = fig.add_axes((0.585, 0.905, 0.2, 0.06))
        gauge.set_xlim(0, 1)
        gauge.set_ylim(0, 1)
        gauge.set_yticks([])
        gauge.set_xticks([0, 0.5, 1], ["0", "0.5", "1"], fontsize=7)
        gauge.tick_params(axis="x", length=2, pad=1)
        gauge.barh([0.5], [1], height=1, color="#eeeeee")
        self.gauge_bar = gauge.barh([0.5], [0], height=1, color="black")[0]
        gauge.axvline(0.5, color="#555555", lw=1)
        for side in ("top", "right", "left"):
            gauge.spines[side].set_visible(False)
        self.gauge_text = fig.text(0.795, 0.935, "", fontsize=10.5, va="center")

    def _build_slices(self) -> float:
        """The three orthogonal slices; returns where (in inches) the next axes go."""
        W, H, fig = self.WIDTH, self.HEIGHT, self.fig
        cmap = mpl.colormaps[style.cmap_for(self.mode)]
        vmin = -self.vmax if self.mode == "signed" else 0.0
        self.norm = mpl.colors.Normalize(vmin=vmin, vmax=self.vmax)
        self.cmap = cmap
        # Axes sized to the slices' physical extents: one mm is the same length in all.
        exts = [self._extent(a) for a in range(3)]
        sizes = [(e[1] - e[0], e[3] - e[2]) for e in exts]
        gap = 0.06
        avail_w, avail_h = 0.52 * W - 2 * gap, 0.7 * H
        scale = min(avail_w / sum(w for w, _ in sizes), avail_h / max(h for _, h in sizes))
        left = 0.006 * W
        self.slices = []
        for axis, (w_mm, h_mm) in enumerate(sizes):
            w_in, h_in = w_mm * scale, h_mm * scale
            ax = fig.add_axes((left / W, 0.09, w_in / W, h_in / H))
            left += w_in + gap
            ax.set_facecolor("black")
            ax.set_xticks([])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            ext = exts[axis]
            bg = ax.imshow(np.zeros((2, 2)), cmap="gray", extent=ext, origin="lower", vmin=0,
                           vmax=1, interpolation="bilinear", aspect="equal")
            ov = ax.imshow(np.ma.masked_all((2, 2)), cmap=cmap, norm=self.norm, extent=ext,
                           origin="lower", interpolation="nearest", aspect="equal")
            ax.set_xlim(ext[0], ext[1])
            ax.set_ylim(ext[2], ext[3])
            h = ax.axhline(0, color="#00E5FF", lw=0.6, alpha=0.7)
            v = ax.axvline(0, color="#00E5FF", lw=0.6, alpha=0.7)
            # Above the slice, not on it: the cropped slices have brain up to their edges.
            label = ax.text(0.5, 1.015, "", color="#333333", fontsize=8, ha="center",
                            va="bottom", transform=ax.transAxes)
            marks = ("P", "A") if axis == 0 else ("L", "R")
            ax.text(0.03, 0.97, marks[0], color="white", fontsize=9, fontweight="bold",
                    transform=ax.transAxes, va="top")
            ax.text(0.97, 0.97, marks[1], color="white", fontsize=9, fontweight="bold",
                    transform=ax.transAxes, va="top", ha="right")
            self.slices.append((ax, bg, ov, h, v, label))
        return left

    def _build_colorbar(self, unit: str, left: float) -> None:
        fig = self.fig
        cax = fig.add_axes((left / self.WIDTH, 0.13, 0.008, 0.58))
        cb = fig.colorbar(mpl.cm.ScalarMappable(norm=self.norm, cmap=self.cmap), cax=cax,
                          extend="max" if self.mode != "signed" else "both")
        cb.locator = mpl.ticker.MaxNLocator(5)
        cb.formatter = mpl.ticker.FuncFormatter(lambda v, _pos: style.fmt_number(v, 2))
        cb.update_ticks()
        cb.set_label(unit, fontsize=8)
        cb.ax.tick_params(labelsize=7)
        cb.ax.axhline(self.threshold, color="#888888", lw=1)
        self.method_text = fig.text(0.006, 0.02, "", fontsize=7.5, color="#555555")

    def _build_bars(self) -> None:
        """The top areas' relevance density, the HC mean and SD, and each area's z."""
        fig = self.fig
        ax = fig.add_axes((0.775, 0.2, 0.15, 0.55))
        self.bars_ax = ax
        y = np.arange(N_TOP)
        self.bars = ax.barh(y, np.zeros(N_TOP), height=0.62, color="#D55E00")
        self.hc_lines = [ax.plot([0, 0], [i, i], color="#555555", lw=2.5, alpha=0.45,
                                 solid_capstyle="butt")[0] for i in y]
        self.hc_marks = [ax.plot([0], [i], marker="|", ms=9, color="#0072B2", mew=1.6)[0]
                         for i in y]
        self.z_texts = [fig.text(0.99, 0, "", fontsize=8, ha="right", va="center")
                        for _ in y]
        ax.set_ylim(N_TOP - 0.5, -0.5)
        ax.set_yticks(y, [""] * N_TOP)
        ax.tick_params(axis="y", length=0, labelsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(3))
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(
            lambda v, _pos: style.fmt_number(v, 2)))
        ax.set_xlabel("relevance density (a.u. per voxel)", fontsize=8)
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.text(0.605, 0.79, "top-10 areas by relevance density", fontsize=9,
                 fontweight="bold")
        fig.text(0.99, 0.79, "z vs HC", fontsize=8.5, fontweight="bold", ha="right")
        handles = [mpl.patches.Patch(color=_z_color(z), label=text)
                   for z, text in ((2.0, "z ≥ 2"), (1.0, "1 ≤ z < 2"), (0.0, "z < 1"))]
        handles.append(mpl.lines.Line2D([], [], color="#555555", lw=2.5, alpha=0.45,
                                        marker="|", ms=7, mec="#0072B2", mew=1.4,
                                        label="HC mean ± 1 SD"))
        fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.6, -0.015), ncol=4,
                   fontsize=7, frameon=False, handlelength=1.4, handletextpad=0.4,
                   columnspacing=0.9)

    # ------------------------------------------------------------------ drawing

    def draw(self, card: CardData) -> Figure:
        """Update the figure to show ``card`` and return it."""
        bg = np.asarray(card.background, dtype=np.float32)
        inside = bg[bg > 0]
        top = float(np.percentile(inside, 99.5)) if inside.size else 1.0
        rel = np.asarray(card.relevance, dtype=np.float32)
        xyz = peak_coords(rel, self.affine)
        ijk = np.round((np.asarray(xyz) - self.affine[:3, 3]) / np.diag(self.affine)[:3])
        ijk = np.clip(ijk.astype(int), 0, np.asarray(self.shape) - 1)
        bgc, relc = bg[self.box], rel[self.box]
        for axis, (_ax, bgi, ovi, h, v, label) in enumerate(self.slices):
            index = [slice(None)] * 3
            index[axis] = int(np.clip(ijk[axis] - self.lo[axis], 0, bgc.shape[axis] - 1))
            b = bgc[tuple(index)].T / top
            r = relc[tuple(index)].T
            bgi.set_data(np.clip(b, 0, 1))
            ovi.set_data(np.ma.masked_where(np.abs(r) < self.threshold, r))
            hv = [a for a in range(3) if a != axis]
            v.set_xdata([xyz[hv[0]]] * 2)
            h.set_ydata([xyz[hv[1]]] * 2)
            label.set_text(f"{'xyz'[axis]} = {xyz[axis]:.0f} mm")
        color = style.GROUP_COLORS.get(card.outcome, "black")
        self.title.set_text(f"{card.participant_id}"
                            + (f"  (scan {card.scan_id})" if card.scan_id != card.participant_id
                               else ""))
        dx = "AD" if card.diagnosis == "AD" else "HC"
        verdict = {"TP": "AD detected", "TN": "control, correctly classified",
                   "FP": "control, misclassified as AD",
                   "FN": "AD missed"}.get(card.outcome, card.outcome)
        self.subtitle.set_text(f"{dx} · {card.demographics()} · {verdict} · slices at the "
                               f"relevance peak, MNI ({xyz[0]:.0f}, {xyz[1]:.0f}, "
                               f"{xyz[2]:.0f}) mm")
        self.outcome.set_text(card.outcome)
        self.outcome.set_color(color)
        self.gauge_bar.set_width(float(card.p_ad))
        self.gauge_bar.set_color(style.GROUP_COLORS["AD"] if card.p_ad >= 0.5
                                 else style.GROUP_COLORS["HC"])
        self.gauge_text.set_text(f"p(AD) = {card.p_ad:.3f}")
        note = f"; background: {card.background_note}" if card.background_note else ""
        self.method_text.set_text(f"{self.method}; L = left (neurological); shown: |value| ≥ "
                                  f"{style.fmt_number(self.threshold, 2)}" + note)
        self._draw_bars(card.top)
        return self.fig

    def _draw_bars(self, top: pd.DataFrame) -> None:
        n = min(len(top), N_TOP)
        ax = self.bars_ax
        dens = top["density"].to_numpy(float)[:n]
        mu = top["hc_mean"].to_numpy(float)[:n]
        sd = top["hc_sd"].to_numpy(float)[:n]
        z = top["z"].to_numpy(float)[:n]
        xmax = np.nanmax(np.concatenate([dens, mu + np.nan_to_num(sd), [1e-12]]))
        ax.set_xlim(min(0.0, float(np.nanmin(np.concatenate([dens, [0]])))), xmax * 1.05)
        labels = [style.area_label(a, 30) for a in top["area"][:n]] + [""] * (N_TOP - n)
        ax.set_yticks(np.arange(N_TOP), labels)
        bbox = ax.get_position()
        for i in range(N_TOP):
            bar, line, mark, text = (self.bars[i], self.hc_lines[i], self.hc_marks[i],
                                     self.z_texts[i])
            if i >= n:
                bar.set_width(0)
                line.set_data([], [])
                mark.set_data([], [])
                text.set_text("")
                continue
            bar.set_width(dens[i])
            bar.set_color(_z_color(z[i]))
            if np.isfinite(mu[i]):
                s = sd[i] if np.isfinite(sd[i]) else 0.0
                line.set_data([max(mu[i] - s, 0), mu[i] + s], [i, i])
                mark.set_data([mu[i]], [i])
            else:
                line.set_data([], [])
                mark.set_data([], [])
            text.set_position((0.99, bbox.y1 - (i + 0.5) / N_TOP * bbox.height))
            text.set_text(_fmt_z(z[i]))
            text.set_color(_z_color(z[i]) if np.isfinite(z[i]) else "#555555")

    def save(self, card: CardData, path: str | os.PathLike, dpi: int = 100) -> None:
        """Draw ``card`` and write it as PNG atomically."""
        self.draw(card)
        with atomic_path(path, suffix=".png") as tmp:
            self.fig.savefig(tmp, dpi=dpi, format="png")


def _fmt_z(z: float) -> str:
    """``+2.3``, ``-0.4``, ``0.0`` (never ``-0.0``), ``–`` when undefined."""
    if not np.isfinite(z):
        return "–"
    r = round(float(z), 1)
    return "0.0" if r == 0 else f"{r:+.1f}"


def _z_color(z: float) -> str:
    """Bar colour by z-score: strong (z >= 2) dark red, raised (>= 1) orange, else grey."""
    if not np.isfinite(z):
        return "#999999"
    if z >= 2:
        return "#B2182B"
    if z >= 1:
        return "#EF8A62"
    return "#9E9E9E"
