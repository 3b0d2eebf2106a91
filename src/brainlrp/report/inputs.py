"""Everything the report reads from a run directory, read once and tolerantly.

Required: ``predictions.tsv``, ``model/card.json`` (the grid) and the ``analyze``
outputs (``analysis/summary.json`` and ``regions/<method>/``). Everything else is
optional: a missing table becomes ``None``, and a section that needs it says what
is missing and which command writes it (:mod:`brainlrp.report.sections`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp import catalog
from brainlrp._io import read_json
from brainlrp.analysis.metrics import apply_relevance
from brainlrp.analysis.scans import area_density, area_voxels
from brainlrp.analysis.summary import AnalysisSummary, read_summary
from brainlrp.card import ModelCard, read_card
from brainlrp.data.grid import Grid
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

#: Tables of ``analysis/`` the report reads (``<name>.tsv``).
ANALYSIS_TABLES = ("claims", "top_areas", "fingerprints", "fingerprint_similarity",
                   "beta_overlap", "hippocampus", "hippocampus_subjects", "relevance_totals",
                   "ground_truth", "ground_truth_summary", "faithfulness",
                   "faithfulness_aopc", "sanity", "method_benchmark", "twins",
                   "restoration", "scan_areas", "confusion", "roc")
#: Tables every analysis of this version writes; a run analysed before lacks them.
REQUIRED_TABLES = ("scan_areas", "confusion", "roc")


@dataclass(eq=False)
class RunData:
    """The contents of a run directory that the report shows.

    Attributes
    ----------
    rd : RunDir
    grid : Grid
        The model grid (from the model card).
    run : dict
        ``run.json`` (empty when absent).
    card : ModelCard
        ``model/card.json``.
    metrics : dict or None
        ``metrics.json``.
    training_log : pandas.DataFrame or None
        ``training_log.csv``.
    predictions : pandas.DataFrame
        ``predictions.tsv`` with outcomes derived from label and prediction.
    splits : pandas.DataFrame or None
    summary : AnalysisSummary
        ``analysis/summary.json``.
    methods : list of str
        Methods shown, in the contract's order.
    tables : dict
        ``analysis/<name>.tsv`` per name of :data:`ANALYSIS_TABLES`; ``None`` when absent.
    participants : pandas.DataFrame or None
        The cohort's subjects with their covariates (participants table), indexed by
        ``participant_id``; ``None`` when the run's cohort cannot be read.
    notes : list of str
        What was missing and skipped.
    """

    rd: RunDir
    grid: Grid
    run: dict
    card: ModelCard
    metrics: dict | None
    training_log: pd.DataFrame | None
    predictions: pd.DataFrame
    splits: pd.DataFrame | None
    summary: AnalysisSummary
    methods: list[str]
    tables: dict[str, pd.DataFrame | None]
    participants: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- per method

    def mode(self, method: str) -> str:
        """Relevance mode of ``method`` (positive, absolute or signed)."""
        return str(self.summary.relevance.get(method, "positive"))

    @functools.cache  # noqa: B019 - one RunData per report; caching saves re-reading TSVs
    def subjects(self, method: str) -> pd.DataFrame:
        """``regions/<method>/subjects.tsv``."""
        return _read_tsv(self.rd.regions / method / "subjects.tsv", required=True)

    @functools.cache  # noqa: B019
    def groups(self, method: str) -> pd.DataFrame:
        """``regions/<method>/groups.tsv``."""
        return _read_tsv(self.rd.regions / method / "groups.tsv", required=True)

    def group_areas(self, method: str, group: str) -> pd.DataFrame:
        """Area rows of one group in ``groups.tsv`` (empty when the group is empty)."""
        g = self.groups(method)
        return g[(g["group"] == group) & (g["level"] == "area")].reset_index(drop=True)

    @functools.cache  # noqa: B019
    def area_density(self, method: str) -> pd.DataFrame:
        """Relevance density per scan (rows, ``scan_id``) and merged area (columns)."""
        return area_density(self.subjects(method), self.area_order(method))

    @functools.cache  # noqa: B019
    def area_voxels(self, method: str) -> pd.Series:
        """Voxels of each merged area on the grid (``subjects.tsv``'s ``n_voxels`` of
        one scan: every scan shares the grid), in atlas order."""
        return area_voxels(self.subjects(method), self.area_order(method))

    @functools.cache  # noqa: B019
    def area_order(self, method: str) -> tuple[str, ...]:
        """Area names in atlas order (as in ``groups.tsv``)."""
        g = self.groups(method)
        return tuple(dict.fromkeys(g.loc[g["level"] == "area", "region"]))

    @functools.cached_property
    def brain(self) -> np.ndarray:
        """The template brain mask on the grid (the preprocessing's mask)."""
        from brainlrp.data.grid import brain_mask

        return np.asarray(brain_mask(self.grid))

    def mean_image(self, method: str, group: str) -> np.ndarray | None:
        """``means/<method>/<group>.nii.gz`` as float32, or ``None`` when absent."""
        return _read_volume(self.rd.means / method / f"{group}.nii.gz", self.grid)

    def mean_map(self, method: str, group: str) -> np.ndarray | None:
        """A group's mean map as shown: relevance mode applied, zero outside the brain."""
        return self._shown(method, self.mean_image(method, group))

    def heatmap(self, method: str, scan_id: str) -> np.ndarray | None:
        """A scan's heatmap as shown: the method's relevance mode applied, zero outside
        the brain mask (the scans are zero there; gradients need not be), ``None`` when
        the file is absent."""
        return self._shown(method, _read_volume(self.rd.heatmap(method, scan_id), self.grid))

    def _shown(self, method: str, data: np.ndarray | None) -> np.ndarray | None:
        if data is None:
            return None
        data = apply_relevance(data, self.mode(method), out=data)
        data[~self.brain] = 0
        return data

    # ----------------------------------------------------------------- subjects

    def age_sex(self, participant_id: str) -> tuple[float | None, str | None]:
        """A participant's age and sex from the participants table (``None`` when the
        table, its column or the value is missing)."""
        p = self.participants
        if p is None or participant_id not in p.index:
            return None, None
        row = p.loc[participant_id]
        age = _column(p, ("age", "age_years", "age_at_scan"))
        sex = _column(p, ("sex", "gender"))
        a = pd.to_numeric(row[age], errors="coerce") if age else np.nan
        x = row[sex] if sex else None
        return (None if pd.isna(a) else float(a),
                None if x is None or pd.isna(x) or not str(x).strip() else str(x).strip())

    def test_scans(self) -> pd.DataFrame:
        """Scans of the test split that have a heatmap of the first method (all analysed
        scans when the run has no split column)."""
        p = self.predictions
        analysed = set(self.subjects(self.methods[0])["scan_id"].astype(str))
        rows = p[p["scan_id"].isin(analysed)]
        test = rows[rows["split"] == "test"]
        return (test if len(test) else rows).reset_index(drop=True)


def load_run(run: str | os.PathLike, methods: Sequence[str] | None = None) -> RunData:
    """Read a run directory for the report.

    Parameters
    ----------
    run : path-like
    methods : sequence of str, optional
        Methods to show (comma lists allowed); by default every analysed method.

    Returns
    -------
    RunData

    Raises
    ------
    BrainLRPError
        When the run or its analysis outputs are missing.
    """
    from brainlrp.analysis.inputs import read_predictions

    rd = RunDir(run)
    if not rd.root.is_dir():
        raise BrainLRPError(f"the run directory {rd.root} does not exist",
                            "pass a run made by `brainlrp train` and `brainlrp analyze`")
    summary_path = rd.analysis / "summary.json"
    if not summary_path.is_file():
        raise BrainLRPError(f"{rd.root} has no analysis results ({summary_path} is missing)",
                            f"run `brainlrp analyze {rd.root}` first")
    try:
        summary = read_summary(summary_path)
    except Exception as exc:
        raise BrainLRPError(f"cannot read {summary_path} ({type(exc).__name__})",
                            f"re-run `brainlrp analyze {rd.root}`") from None
    if not rd.predictions.is_file():
        raise BrainLRPError(f"{rd.root} has no predictions.tsv", "run `brainlrp train` first")
    if not rd.card.is_file():
        raise BrainLRPError(f"{rd.root} has no model/card.json", "run `brainlrp train` first")
    card = read_card(rd.root)
    grid = card.grid
    analysed = [m for m in summary.methods
                if (rd.regions / m / "subjects.tsv").is_file()
                and (rd.regions / m / "groups.tsv").is_file()]
    if not analysed:
        raise BrainLRPError(f"{rd.root} has no region tables (regions/<method>/*.tsv)",
                            f"run `brainlrp analyze {rd.root}` first")
    analysed = catalog.select(methods, analysed, "not analysed:",
                              "choose among those or run `brainlrp analyze` with them")
    notes: list[str] = []
    metrics = _read_json(rd.metrics) if rd.metrics.is_file() else None
    log_path = rd.root / "training_log.csv"
    training_log = _read_table(log_path, sep=",") if log_path.is_file() else None
    splits = _read_tsv(rd.splits) if rd.splits.is_file() else None
    tables = {name: (_read_tsv(rd.analysis / f"{name}.tsv")
                     if (rd.analysis / f"{name}.tsv").is_file() else None)
              for name in ANALYSIS_TABLES}
    for name in REQUIRED_TABLES:
        if tables[name] is None:
            raise BrainLRPError(f"{rd.analysis / (name + '.tsv')} is missing: the analysis was "
                                "made by an earlier brainlrp",
                                f"run `brainlrp analyze {rd.root}` again")
    for name, table in tables.items():
        if table is not None and "method" in table.columns and name != "faithfulness":
            keep = table["method"].isin(analysed)
            if "truth" in table.columns:  # planted-truth rows: every benchmarked method
                keep |= table["truth"] == "planted"
            tables[name] = table[keep].reset_index(drop=True)
    if tables["faithfulness"] is not None:
        f = tables["faithfulness"]
        tables["faithfulness"] = f[f["method"].isin([*analysed, "random"])].reset_index(drop=True)
    if tables["beta_overlap"] is not None:
        b = tables["beta_overlap"]
        tables["beta_overlap"] = b[b["method_a"].isin(analysed)
                                   & b["method_b"].isin(analysed)].reset_index(drop=True)
    return RunData(rd=rd, grid=grid, run=rd.read_run(), card=card, metrics=metrics,
                   training_log=training_log, predictions=read_predictions(rd), splits=splits,
                   summary=summary, methods=analysed, tables=tables,
                   participants=_read_participants(rd, notes), notes=notes)


def _read_participants(rd: RunDir, notes: list[str]) -> pd.DataFrame | None:
    """The run's cohort's subjects (covariates) by participant, or ``None`` with a note."""
    from brainlrp.data import load_cohort

    source = rd.cohort_source()
    if source is None:
        return None
    try:
        subjects = load_cohort(source).subjects
    except (BrainLRPError, OSError, ValueError) as exc:
        reason = exc.message if isinstance(exc, BrainLRPError) else type(exc).__name__
        notes.append(f"the cohort {source} cannot be read ({reason}); the cards show no age "
                     "or sex")
        return None
    return subjects.assign(participant_id=subjects["participant_id"].astype(str)).set_index(
        "participant_id")


def _column(frame: pd.DataFrame, names: Sequence[str]) -> str | None:
    """The first column of ``frame`` whose lower-case name is in ``names``."""
    lower = {str(c).lower(): c for c in frame.columns}
    return next((lower[n] for n in names if n in lower), None)


def _read_json(path: Path, required: bool = False):
    try:
        return read_json(path)
    except Exception as exc:
        if required:
            raise BrainLRPError(f"cannot read {path} ({type(exc).__name__})",
                                "re-run the stage that wrote it") from None
        return None


def _read_table(path: Path, sep: str = "\t", required: bool = False) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, sep=sep, dtype={"participant_id": str, "scan_id": str,
                                                 "participant_a": str, "participant_b": str})
    except Exception as exc:
        if required:
            raise BrainLRPError(f"cannot read {path} ({type(exc).__name__})",
                                "re-run `brainlrp analyze`") from None
        return None


def _read_tsv(path: Path, required: bool = False) -> pd.DataFrame | None:
    if required and not path.is_file():
        raise BrainLRPError(f"{path} is missing", "run `brainlrp analyze` first")
    return _read_table(path, "\t", required)


def _read_volume(path: Path, grid: Grid) -> np.ndarray | None:
    """A float32 volume on ``grid``; ``None`` when the file is missing or unreadable."""
    import nibabel as nib

    if not path.is_file():
        return None
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception:
        return None
    if not grid.same_as(data.shape, img.affine):
        return None
    return np.nan_to_num(data, copy=False)
