"""Shared helpers of the report's figures: the style, text fitting, axes scaling, legends."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainlrp.report import style
from brainlrp.report.style import area_label, method_label

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
