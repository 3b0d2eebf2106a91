"""``brainlrp prepare``: validate a cohort, preprocess every scan, write the split."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp._io import write_table
from brainlrp._progress import progress_bar
from brainlrp.data.cohort import Cohort, load_cohort
from brainlrp.data.grid import Grid
from brainlrp.data.preprocess import PreprocessCache, Preprocessing, preprocess_paths
from brainlrp.data.register import Registration
from brainlrp.data.splits import make_splits, read_splits
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir


@dataclass
class PreparedCohort:
    """A cohort on the model grid: scans with their cached arrays and their split.

    Attributes
    ----------
    cohort : Cohort
    prep : Preprocessing
    scans : pandas.DataFrame
        ``cohort.scans`` plus ``split`` and ``array`` (path of the cached ``.npy``).
    splits : pandas.DataFrame
        ``participant_id``, ``split``, ``diagnosis``.
    seconds : float
        Time spent preprocessing.
    notices : list of str
    registrations : list of RegisteredScan
        One per row of ``scans`` when the scans were registered, else empty.
    """

    cohort: Cohort
    prep: Preprocessing
    scans: pd.DataFrame
    splits: pd.DataFrame
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    registrations: list = field(default_factory=list)

    def intensity_profile(self):
        """The brain intensity profile of the training scans (all scans when there is no
        training split): :class:`~brainlrp.data.intensity.IntensityProfile`, stored in the
        model card so new scans whose brain departs from it are flagged."""
        from brainlrp.data.grid import brain_mask
        from brainlrp.data.intensity import IntensityProfile

        train = self.scans[self.scans["split"] == "train"]
        arrays = (train if len(train) else self.scans)["array"].tolist()
        return IntensityProfile.fit(arrays, brain_mask(self.prep.grid))


def prepare_cohort(cohort_path: str | os.PathLike, resolution: float = 2.0,
                   test: float = 30, val: float = 18, seed: int = 0,
                   cache_dir: str | os.PathLike | None = None, n_jobs: int = 1,
                   splits: pd.DataFrame | None = None, allow_external_paths: bool = False,
                   progress: bool = True, preprocessing: Preprocessing | None = None,
                   registration: Registration | None = None,
                   normalisation: str = "minmax") -> PreparedCohort:
    """Load and validate a cohort, split it by subject, preprocess every scan.

    Parameters
    ----------
    cohort_path : path-like
        BIDS-like folder or CSV/TSV table.
    resolution : float
        Grid resolution in mm (1 = the paper's 193 x 229 x 193).
    test, val : float
        Per-class counts or fractions (see :func:`~brainlrp.data.splits.make_splits`).
    seed : int
    cache_dir : path-like, optional
    n_jobs : int
        Processes for preprocessing.
    splits : pandas.DataFrame, optional
        An existing split to reuse instead of drawing one.
    preprocessing : Preprocessing, optional
        Overrides ``resolution`` and ``registration`` (e.g. the model card's).
    registration : Registration, optional
        Register native-space scans to the template first (ANTsPy).
    normalisation : str
        How each scan is scaled to [0, 1] (:data:`~brainlrp.data.preprocess.NORMALISATIONS`).
    """
    cohort = load_cohort(cohort_path, allow_external_paths=allow_external_paths)
    prep = preprocessing or Preprocessing(grid=Grid.from_resolution(resolution),
                                          registration=registration,
                                          normalisation=normalisation)
    if splits is None:
        splits = make_splits(cohort.subjects, test=test, val=val, seed=seed)
    else:
        missing = set(cohort.subjects["participant_id"]) - set(splits["participant_id"])
        if missing:
            raise BrainLRPError(
                f"{len(missing)} participant(s) of the cohort are not in splits.tsv "
                f"(e.g. {sorted(missing)[0]})", "run with --overwrite to draw a new split")
    scans = cohort.scans.merge(splits[["participant_id", "split"]], on="participant_id",
                               how="left")
    start = time.perf_counter()
    cache = PreprocessCache(cache_dir)
    with progress_bar(len(scans), "preprocessing", progress) as advance:
        arrays = preprocess_paths(scans["path"], prep, cache=cache, n_jobs=n_jobs,
                                  progress=advance)
    scans["array"] = arrays
    registrations = ([cache.registration(p, prep) for p in scans["path"]]
                     if prep.registration is not None else [])
    return PreparedCohort(cohort=cohort, prep=prep, scans=scans, splits=splits,
                          seconds=time.perf_counter() - start, notices=list(cohort.notices),
                          registrations=registrations)


def record_registration(run: RunDir, prepared: PreparedCohort, stage: str) -> list[str]:
    """Write the registration QC (``RUN/registration/``) and record it in run.json.

    Returns
    -------
    list of str
        Notices naming the flagged scans (empty when all look right or nothing was
        registered).
    """
    if not prepared.registrations:
        return []
    from brainlrp.data.register import write_registration_qc

    table = write_registration_qc(run.root, prepared.scans, prepared.registrations)
    flagged = table[table["flagged"]]
    run.record("registration", {
        "stage": stage, "registration": prepared.prep.registration.to_dict(),
        "qc": "registration/qc.tsv", "n_scans": len(table), "n_flagged": len(flagged),
        "correlation_median": float(table["correlation"].median()),
        "transforms": {sid: [str(p) for p in reg.forward] for sid, reg in
                       zip(table["scan_id"], prepared.registrations, strict=True)}})
    notices = [f"registration outlier {row.scan_id}: {row.reason} (see "
               f"{run.root / row.figure})" for row in flagged.itertuples()]
    return notices


def write_splits(run: RunDir, splits: pd.DataFrame, overwrite: bool) -> None:
    """Write splits.tsv, refusing to replace a different split unless ``overwrite``."""
    if run.splits.is_file() and not overwrite:
        old = read_splits(run.splits)
        a = old.set_index("participant_id")["split"].sort_index()
        b = splits.set_index("participant_id")["split"].sort_index()
        if not a.equals(b):
            raise BrainLRPError(f"{run.splits} already holds a different split",
                                "pass --overwrite to replace it, or use another --out")
    write_table(run.splits, splits)


@dataclass
class PrepareResult:
    """What :func:`prepare` did."""

    run: Path
    n_subjects: int
    n_scans: int
    counts: dict
    split_counts: dict
    seconds: float
    notices: list[str]


def prepare(cohort_path: str | os.PathLike, out: str | os.PathLike, resolution: float = 2.0,
            test: float = 30, val: float = 18, seed: int = 0,
            cache_dir: str | os.PathLike | None = None, n_jobs: int = 1,
            overwrite: bool = False, allow_external_paths: bool = False,
            progress: bool = True, registration: Registration | None = None,
            normalisation: str = "minmax") -> PrepareResult:
    """Validate a cohort, fill the preprocessing cache, write ``splits.tsv`` and run.json.

    With ``registration``, native-space scans are registered to the template first and the
    QC table and figures go to ``RUN/registration/`` (outliers become notices).
    """
    run = RunDir(out)
    prepared = prepare_cohort(cohort_path, resolution=resolution, test=test, val=val,
                              seed=seed, cache_dir=cache_dir, n_jobs=n_jobs,
                              allow_external_paths=allow_external_paths, progress=progress,
                              registration=registration, normalisation=normalisation)
    write_splits(run, prepared.splits, overwrite)
    prepared.notices.extend(record_registration(run, prepared, "prepare"))
    split_counts = (prepared.splits.groupby(["split", "diagnosis"]).size()
                    .unstack(fill_value=0).to_dict(orient="index"))
    run.set_cohort(prepared.cohort.summary())
    run.record("prepare", {"cohort": prepared.cohort.summary(),
                           "preprocessing": prepared.prep.to_dict(),
                           "split": {"test": test, "val": val, "seed": seed,
                                     "counts": split_counts},
                           "seconds": round(prepared.seconds, 2)})
    return PrepareResult(run=run.root, n_subjects=len(prepared.cohort.subjects),
                         n_scans=len(prepared.scans), counts=prepared.cohort.counts(),
                         split_counts=split_counts, seconds=prepared.seconds,
                         notices=prepared.notices)


def run_scan_paths(run: RunDir, scan_ids, cohort: str | os.PathLike | None = None) -> list[Path]:
    """The NIfTI file of each of a run's scans, from its cohort (default: run.json's)."""
    source = cohort or run.cohort_source()
    if source is None:
        raise BrainLRPError(f"{run.run_json} does not name the cohort", "pass --cohort DIR")
    scans = load_cohort(source, allow_external_paths=True).scans.set_index("scan_id")
    missing = [s for s in scan_ids if s not in scans.index]
    if missing:
        raise BrainLRPError(f"scan {missing[0]} of predictions.tsv is not in the cohort {source}",
                            "pass the cohort the model was trained on with --cohort")
    return [Path(scans.loc[s, "path"]) for s in scan_ids]



def load_inputs(run_dir: str | os.PathLike, scan_ids, prep: Preprocessing,
                cohort: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Preprocessed inputs ``(n, 1, X, Y, Z)`` of a run's scans, as the model saw them.

    Parameters
    ----------
    run_dir : path-like
        The run (its cohort is run.json's unless ``cohort`` is given).
    scan_ids : sequence of str
    prep : Preprocessing
        The model's preprocessing: ``brainlrp.card.read_card(run_dir).prep``.
    cohort, cache_dir : path-like, optional

    Returns
    -------
    numpy.ndarray
        Arrays from the cache (computed on a miss).
    """
    from brainlrp.data.preprocess import load_arrays

    cache = PreprocessCache(cache_dir)
    paths = run_scan_paths(RunDir(run_dir), scan_ids, cohort)
    return load_arrays([cache.get(path, prep) for path in paths])
