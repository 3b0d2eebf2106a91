"""Region relevance: bars and density violins."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from brainlrp.report import style
from brainlrp.report.figures.common import _barh_panel, _message, _per_voxel, scaled_axis, styled
from brainlrp.report.style import area_label


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
