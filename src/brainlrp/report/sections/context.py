"""What every section shares: the run's data, the methods shown, the template and
atlas on the model grid, the subjects' own scans, and a few table lookups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from brainlrp.analysis import scans
from brainlrp.errors import BrainLRPError
from brainlrp.report import style
from brainlrp.report.html import Safe
from brainlrp.report.html import figure as html_figure
from brainlrp.report.inputs import RunData

InputsFn = Callable[[list[str]], np.ndarray]

#: Areas ranked per scan (analysis/scan_areas.tsv): those of at least this fraction of the
#: atlas's voxels; :data:`brainlrp.analysis.scans.MIN_AREA_FRACTION` says why.
MIN_AREA_FRACTION = scans.MIN_AREA_FRACTION


@dataclass(eq=False)
class Context:
    """What every section shares.

    Attributes
    ----------
    data : RunData
    main : str
        The method shown in depth (:func:`brainlrp.catalog.choose_main_and_comparison`).
    compare : str or None
        The method shown beside it (the paper's comparison when analysed).
    inputs_fn : callable or None
        ``inputs_fn(scan_ids) -> (n, 1, X, Y, Z)``: the subjects' preprocessed scans.
    notes : list of str
        Notes collected while building (shown in the methods section).
    timings : dict
        Seconds per section (and per other step of the report).
    cards : dict
        Relative link (``cards/<scan_id>.png``) per scan id of the cards written.
    raised : dict
        Per scan: the top-10 area with the largest z-score against the controls
        (found while writing the cards).
    """

    data: RunData
    main: str
    compare: str | None
    inputs_fn: InputsFn | None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cards: dict[str, str] = field(default_factory=dict)
    raised: dict[str, tuple[str, float]] = field(default_factory=dict)
    _atlas: object = None
    _atlas_failed: bool = False
    _inputs_failed: str = ""

    @property
    def grid(self):
        """The model grid."""
        return self.data.grid

    @property
    def affine(self) -> np.ndarray:
        """The model grid's affine."""
        return self.data.grid.affine_array

    def template(self) -> np.ndarray:
        """The ICBM 2009c template on the model grid."""
        from brainlrp.data.grid import template

        return np.asarray(template(self.grid))

    def mask(self) -> np.ndarray:
        """The template brain mask on the model grid."""
        from brainlrp.data.grid import brain_mask

        return np.asarray(brain_mask(self.grid))

    def atlas(self):
        """The analysis atlas fitted to the grid (``None``, with a note, if unavailable)."""
        if self._atlas is None and not self._atlas_failed:
            from brainlrp.analysis.regions import AtlasRegions

            name = self.data.summary.atlas
            try:
                self._atlas = AtlasRegions.fit(name, self.grid)
            except (BrainLRPError, OSError, ValueError) as exc:
                self._atlas_failed = True
                self.notes.append(f"the atlas {name} could not be loaded ({exc}); region "
                                  "outlines and viewer labels are left out")
        return self._atlas

    def scans(self, scan_ids: list[str]) -> tuple[list[np.ndarray], str]:
        """The subjects' own preprocessed scans, or the template with a note on why."""
        if self.inputs_fn is not None and not self._inputs_failed:
            try:
                x = np.asarray(self.inputs_fn(list(scan_ids)), dtype=np.float32)
                if x.ndim == 5:
                    x = x[:, 0]
                if x.shape == (len(scan_ids), *self.grid.shape):
                    return list(x), ""
                self._inputs_failed = f"the scans have shape {x.shape[1:]}, not the grid's"
            except (BrainLRPError, OSError, KeyError, ValueError) as exc:
                self._inputs_failed = " ".join(str(exc).split())[:160]
            self.notes.append("the subjects' own scans are not available "
                              f"({self._inputs_failed}); the template is shown beneath "
                              "individual heatmaps instead - keep the cohort and the "
                              "preprocessing cache of the run to see them")
        reason = "ICBM 2009c template (own scan unavailable)"
        return [self.template()] * len(scan_ids), reason

    def fig(self, fig, alt: str, caption=None, fig_id: str | None = None) -> Safe:
        """Embed a figure, then empty it so that its memory goes at once (a figure's
        artists form reference cycles that only the cyclic collector would free)."""
        html = html_figure(fig, alt, caption, fig_id)
        fig.clear()
        return html

    def table(self, name: str) -> pd.DataFrame:
        """``analysis/<name>.tsv`` restricted to the methods shown (empty when absent)."""
        table = self.data.tables.get(name)
        return table if table is not None else pd.DataFrame()

    def method_unit(self, method: str) -> str:
        """Colour-bar label of ``method`` with its relevance mode."""
        return method_unit(self.data, method)


def method_unit(data: RunData, method: str) -> str:
    """Colour-bar label of ``method`` with its relevance mode, e.g. ``relevance (a.u.)``."""
    return style.unit_label(method, data.mode(method))


#: How ``analyze`` averages a group's maps (``means/<method>/<group>.nii.gz``), by the
#: method's relevance mode: each scan's map goes through the mode before it is added to
#: the group's running sum (:func:`brainlrp.analysis.regions.stream_method`).
MEAN_RULES = {
    "positive": "the mean of each subject's positive relevance: negative values are set to 0 "
                "in every map before averaging, so evidence against AD never cancels evidence "
                "for it, and the mean shows only where evidence for AD lies",
    "absolute": "the mean of each subject's magnitude |map|: the sign of a sensitivity is a "
                "direction, not evidence, and is dropped in every map before averaging",
    "signed": "the mean of the signed maps: positive and negative values cancel",
}


def mean_rule(mode: str, short: bool = False) -> str:
    """What a group mean image of a method with relevance ``mode`` averages (each subject
    counts once: its scans are averaged first); ``short``: only up to the colon."""
    text = MEAN_RULES.get(mode, f"the mean of the maps after the {mode!r} relevance mode")
    return text.split(":")[0] if short else text


def group_counts(data: RunData, method: str) -> dict[str, int]:
    """Subjects per group in ``regions/<method>/groups.tsv``."""
    g = data.groups(method)
    area = g[g["level"] == "area"]
    return {k: int(v) for k, v in area.groupby("group")["n_subjects"].max().items()}


def diagnosis(data: RunData) -> pd.Series:
    """AD or HC per participant."""
    p = data.predictions.drop_duplicates("participant_id").set_index("participant_id")
    return p["label"].map({1: "AD", 0: "HC"})


def large_areas(data: RunData, method: str) -> list[str]:
    """Areas with at least :data:`MIN_AREA_FRACTION` of the atlas's voxels on the grid."""
    return scans.large_areas(data.area_voxels(method))


def scan_ranking(data: RunData, method: str) -> dict[str, pd.DataFrame]:
    """Each scan's ranked areas (``analysis/scan_areas.tsv``: area, density, hc_mean,
    hc_sd, z; highest density first), by scan id."""
    table = data.tables["scan_areas"]
    rows = table[table["method"] == method].sort_values(["scan_id", "rank"], kind="stable")
    return {str(sid): top.drop(columns=["method", "scan_id", "participant_id", "rank"])
            .reset_index(drop=True) for sid, top in rows.groupby("scan_id", sort=False)}


def min_area_text(data: RunData, method: str) -> str:
    """The caption's words for the minimum area size, e.g. ``areas of at least 0.1 % of
    the atlas's voxels (208 voxels, 1.7 cm³); 5 smaller areas (e.g. Optic Chiasm, Basal
    Forebrain) left out, ...``."""
    n = data.area_voxels(method)
    least = MIN_AREA_FRACTION * max(int(n.sum()), 1)
    size = f"{least:.0f} voxels, {least * data.grid.voxel_volume / 1000:.1f} cm³"
    dropped = n.index[n < least].tolist()
    if not dropped:
        return f"areas of at least {100 * MIN_AREA_FRACTION:g} % of the atlas's voxels ({size})"
    named = ", ".join(style.area_label(a) for a in sorted(dropped, key=lambda a: n[a])[:2])
    return (f"areas of at least {100 * MIN_AREA_FRACTION:g} % of the atlas's voxels ({size}); "
            f"{len(dropped)} smaller area{'s' if len(dropped) != 1 else ''} (e.g. {named}) "
            "left out, as a few voxels make their density noisy")


def fixed(value, digits: int = 3) -> str:
    """A metric with fixed decimals (``0.975``, ``1.000``); ``–`` when missing."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if v != v else f"{v:.{digits}f}"


def paper_methods() -> tuple[list[str], str | None]:
    """The catalog's methods of the paper: its betas (ascending) and its comparison."""
    from brainlrp import catalog

    names = catalog.listed()
    betas = [m for m, _ in sorted(catalog.paper_betas(names), key=lambda mb: mb[1])]
    compare = next((m for m in names if catalog.describe(m).paper_comparison), None)
    return betas, compare
