"""Cohorts: a participants table plus T1 scans, with diagnoses mapped to labels.

Two layouts are read:

* a BIDS-like folder: ``participants.tsv`` (``participant_id``, ``diagnosis``, any
  covariates) and ``sub-<id>/[ses-<s>/]anat/sub-<id>[_ses-<s>]_T1w.nii[.gz]``;
* a CSV/TSV file with ``participant_id``, ``diagnosis`` and ``path`` columns
  (relative paths are resolved against the table's folder);
* a Clinica CAPS folder or fMRIPrep/sMRIPrep derivatives
  (:mod:`brainlrp.data.layouts`).

Diagnoses CN/HC/control/normal map to 0 and AD/dementia to 1 (case-insensitive);
MCI and its variants are excluded with a notice; anything else is an error that
lists the unknown labels. A subject with both HC (CN) and AD scans counts as AD (the
paper's rule).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from brainlrp.errors import BrainLRPError

CLASS_NAMES = ("HC", "AD")
HC_LABELS = {"cn", "hc", "nc", "control", "controls", "normal", "healthy", "healthy control",
             "healthy_control", "cognitively normal"}
AD_LABELS = {"ad", "dementia", "alzheimer", "alzheimers", "alzheimer's disease",
             "alzheimer's", "alzheimers disease"}
EXCLUDED_LABELS = {"mci", "emci", "lmci", "smci", "pmci", "smc", "scd", "mci-ad",
                   "mci to ad", "mci-cn"}
DIAGNOSIS_ALIASES = ("diagnosis", "dx", "dx_bl", "group", "label", "diagnostic_group")
ID_ALIASES = ("participant_id", "subject_id", "subject", "ptid", "rid", "id")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class Cohort:
    """A validated cohort.

    Attributes
    ----------
    scans : pandas.DataFrame
        One row per scan: ``scan_id``, ``participant_id``, ``session``, ``diagnosis``
        (``CN`` or ``AD`` after the subject-level rule), ``label`` (0/1), ``path``.
    subjects : pandas.DataFrame
        One row per subject: ``participant_id``, ``diagnosis``, ``label``,
        ``n_scans`` and the covariates of the participants table.
    source : Path
        The folder or table the cohort was read from.
    notices : list of str
        One-line notices for the user (exclusions, merged diagnoses).
    """

    scans: pd.DataFrame
    subjects: pd.DataFrame
    source: Path
    notices: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The cohort folder (the table's folder for a CSV/TSV cohort)."""
        return self.source if self.source.is_dir() else self.source.parent

    def counts(self) -> dict[str, int]:
        """Number of subjects per diagnosis."""
        return {name: int((self.subjects["label"] == i).sum())
                for i, name in enumerate(CLASS_NAMES)}

    def summary(self) -> dict:
        """Small JSON-friendly description for run.json and the model card."""
        return {"source": str(self.source), "n_subjects": len(self.subjects),
                "n_scans": len(self.scans), "subjects_per_class": self.counts()}


def normalise_diagnosis(value) -> str | None:
    """Map a raw diagnosis to ``"HC"``, ``"AD"``, ``"EXCLUDE"`` or ``None`` (unknown).

    Healthy controls are written HC everywhere brainlrp writes or shows them; CN, HC,
    control(s), normal and cognitively normal are accepted on input.
    """
    text = " ".join(str(value).strip().lower().split())
    if text in HC_LABELS:
        return "HC"
    if text in AD_LABELS:
        return "AD"
    if text in EXCLUDED_LABELS:
        return "EXCLUDE"
    return None


def load_cohort(path: str | os.PathLike, allow_external_paths: bool = False) -> Cohort:
    """Read and validate a cohort from a BIDS-like folder or a CSV/TSV table.

    Parameters
    ----------
    path : path-like
        A folder with ``participants.tsv``, or a ``.csv``/``.tsv`` table with a
        ``path`` column.
    allow_external_paths : bool
        Accept scan paths that lie outside the cohort folder (absolute paths or
        ``..``). Off by default so a table cannot make brainlrp read arbitrary files.

    Returns
    -------
    Cohort
    """
    path = Path(path)
    if not path.exists():
        raise BrainLRPError(f"cohort not found: {path}",
                            "pass a BIDS-like folder with participants.tsv or a CSV/TSV table")
    if path.is_dir():
        from brainlrp.data.layouts import detect_layout, read_layout

        layout = detect_layout(path)
        if layout != "bids":
            raw, rows, _ = read_layout(path, layout)
            return _finish(path, raw, rows)
        table = path / "participants.tsv"
        if not table.is_file():
            raise BrainLRPError(f"{path} has no participants.tsv",
                                "add participants.tsv (participant_id, diagnosis) or pass a "
                                "CSV/TSV with participant_id, diagnosis and path columns")
        raw = _read_table(table)
        rows = _bids_scans(path, raw, table)
    else:
        raw = _read_table(path)
        rows = _table_scans(path, raw, allow_external_paths)
    return _finish(path, raw, rows)


def _read_table(path: Path) -> pd.DataFrame:
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise BrainLRPError(f"cannot read the table {path} ({' '.join(str(exc).split())[:120]})",
                            "write it as tab-separated (.tsv) or comma-separated (.csv) text "
                            "with a header row") from None
    if frame.empty:
        raise BrainLRPError(f"{path} has no rows", "add one row per participant")
    frame.columns = [str(c).strip() for c in frame.columns]
    id_col = _find_column(frame, ID_ALIASES, path, "participant_id")
    dx_col = _find_column(frame, DIAGNOSIS_ALIASES, path, "diagnosis")
    frame = frame.rename(columns={id_col: "participant_id", dx_col: "diagnosis_raw"})
    frame["participant_id"] = frame["participant_id"].str.strip()
    bad = [(i + 2, pid) for i, pid in enumerate(frame["participant_id"])
           if not SAFE_ID.match(pid) or ".." in pid]
    if bad:
        line, pid = bad[0]
        raise BrainLRPError(
            f"{path} line {line}: participant_id {pid!r} is empty or has characters other than "
            f"letters, digits, '-', '_' and '.'" + (f" ({len(bad)} such rows)" if len(bad) > 1
                                                   else ""),
            "use ids like sub-001")
    return frame


def _find_column(frame: pd.DataFrame, aliases, path: Path, what: str) -> str:
    lower = {c.lower(): c for c in frame.columns}
    for alias in aliases:
        if alias in lower:
            return lower[alias]
    raise BrainLRPError(f"{path} has no {what} column (columns: {', '.join(frame.columns)})",
                        f"add a '{what}' column")


def _folder_name(pid: str) -> str:
    return pid if pid.startswith("sub-") else f"sub-{pid}"


def _bids_scans(root: Path, raw: pd.DataFrame, table: Path) -> pd.DataFrame:
    _check_duplicates(raw, ["participant_id"], table)
    raw = raw.drop_duplicates(subset=["participant_id"])
    rows = []
    missing = []
    for pid, dx in zip(raw["participant_id"], raw["diagnosis_raw"], strict=True):
        sub = _folder_name(pid)
        found = sorted(set((root / sub).glob("anat/*_T1w.nii*"))
                       | set((root / sub).glob("ses-*/anat/*_T1w.nii*")))
        found = [f for f in found if f.name.endswith((".nii", ".nii.gz"))
                 and f.name.startswith(sub)]
        if not found:
            missing.append(pid)
            continue
        for f in found:
            name = f.name[: -len(".nii.gz")] if f.name.endswith(".gz") else f.name[:-4]
            scan_id = name[: -len("_T1w")]
            ses = re.search(r"_(ses-[A-Za-z0-9]+)", name)
            rows.append({"participant_id": pid, "session": ses.group(1) if ses else "",
                         "diagnosis_raw": dx, "path": f, "scan_id": scan_id})
    if missing:
        raise BrainLRPError(
            f"no T1w scan found for {len(missing)} participant(s) of {table}, e.g. "
            f"{missing[0]} (looked for {_folder_name(missing[0])}/[ses-*/]anat/*_T1w.nii.gz)",
            "add the scans or remove those rows from participants.tsv")
    frame = pd.DataFrame(rows)
    # A single-session subject's scan is named after the subject (the contract's
    # heatmaps/<method>/<participant_id>.nii.gz); several scans keep their entities.
    single = frame.groupby("participant_id")["scan_id"].transform("size") == 1
    frame.loc[single, "scan_id"] = frame.loc[single, "participant_id"]
    return frame


def _table_scans(table: Path, raw: pd.DataFrame, allow_external: bool) -> pd.DataFrame:
    if "path" not in {c.lower() for c in raw.columns}:
        raise BrainLRPError(f"{table} has no 'path' column",
                            "add a path column with each scan's NIfTI file, or pass a "
                            "BIDS-like folder with participants.tsv")
    path_col = next(c for c in raw.columns if c.lower() == "path")
    raw = raw.rename(columns={path_col: "path"})
    root = table.parent.resolve()
    paths = []
    for i, p in enumerate(raw["path"]):
        p = str(p).strip()
        if not p:
            raise BrainLRPError(f"{table} line {i + 2}: empty path", "fill in the scan's file")
        resolved = (root / p).resolve() if not os.path.isabs(p) else Path(p).resolve()
        if not allow_external and not resolved.is_relative_to(root):
            raise BrainLRPError(
                f"{table} line {i + 2}: path {p!r} leaves the cohort folder {root}",
                "move the scans under the table's folder or pass --allow-external-paths")
        paths.append(resolved)
    raw["path"] = paths
    raw["path_key"] = [str(p) for p in paths]
    _check_duplicates(raw, ["participant_id", "path_key"], table)
    raw = raw.drop_duplicates(subset=["participant_id", "path_key"]).drop(columns="path_key")
    session_col = next((c for c in raw.columns if c.lower() in ("session", "session_id", "ses")),
                       None)
    frame = raw[["participant_id", "diagnosis_raw", "path"]].copy()
    frame["session"] = raw[session_col].astype(str) if session_col else ""
    n = frame.groupby("participant_id")["path"].transform("size")
    order = frame.groupby("participant_id").cumcount() + 1
    scan_ids = []
    for pid, ses, k, count in zip(frame["participant_id"], frame["session"], order, n,
                                  strict=True):
        if count == 1:
            scan_ids.append(pid)
        elif ses:
            scan_ids.append(f"{pid}_{ses if ses.startswith('ses-') else 'ses-' + ses}")
        else:
            scan_ids.append(f"{pid}_scan-{k}")
    frame["scan_id"] = scan_ids
    dup = frame["scan_id"].duplicated()
    if dup.any():
        raise BrainLRPError(f"{table}: scan id {frame['scan_id'][dup].iloc[0]} occurs twice",
                            "give each of a participant's scans a distinct session")
    bad = [s for s in frame["scan_id"] if not SAFE_ID.match(s)]
    if bad:
        raise BrainLRPError(f"{table}: session {bad[0]!r} has unsafe characters",
                            "use letters, digits, '-', '_' and '.'")
    return frame


def _check_duplicates(raw: pd.DataFrame, keys: list[str], table: Path) -> None:
    norm = raw["diagnosis_raw"].map(lambda v: normalise_diagnosis(v) or str(v).strip().lower())
    conflicts = (pd.DataFrame({k: raw[k] for k in keys} | {"dx": norm})
                 .groupby(keys)["dx"].nunique())
    conflicts = conflicts[conflicts > 1]
    if len(conflicts):
        key = conflicts.index[0]
        key = key if isinstance(key, str) else key[0]
        raise BrainLRPError(
            f"{table}: participant {key} has duplicate rows with conflicting diagnoses "
            f"({len(conflicts)} such)", "keep one row per participant (or per scan)")


def _finish(source: Path, raw: pd.DataFrame, rows: pd.DataFrame) -> Cohort:
    table = source / "participants.tsv" if source.is_dir() else source
    rows = rows.copy()
    rows["diagnosis"] = rows["diagnosis_raw"].map(normalise_diagnosis)
    unknown = sorted({str(v) for v, d in zip(rows["diagnosis_raw"], rows["diagnosis"],
                                             strict=True) if pd.isna(d)})
    if unknown:
        raise BrainLRPError(
            f"{table}: unknown diagnosis label(s) {', '.join(repr(u) for u in unknown)}",
            "use CN/HC/control/normal for controls, AD/dementia for Alzheimer's disease "
            "or MCI (excluded)")
    notices = []
    excluded = rows["diagnosis"] == "EXCLUDE"
    if excluded.any():
        kinds = rows.loc[excluded, "diagnosis_raw"].str.strip().value_counts()
        notices.append(
            f"excluded {int(excluded.sum())} scan(s) of "
            f"{rows.loc[excluded, 'participant_id'].nunique()} participant(s) with "
            + ", ".join(f"{k} ({v})" for k, v in kinds.items()) + " (only HC and AD are used)")
        rows = rows[~excluded]
    if rows.empty:
        raise BrainLRPError(f"{table}: no HC or AD scans are left after exclusions",
                            "the cohort needs both controls and AD patients")
    # The paper's rule: a subject with an AD scan counts as AD, all scans included.
    subject_dx = rows.groupby("participant_id")["diagnosis"].agg(
        lambda d: "AD" if (d == "AD").any() else "HC")
    mixed = rows.groupby("participant_id")["diagnosis"].nunique()
    n_mixed = int((mixed > 1).sum())
    if n_mixed:
        notices.append(f"{n_mixed} participant(s) with both HC and AD scans count as AD")
    rows["diagnosis"] = rows["participant_id"].map(subject_dx)
    rows["label"] = (rows["diagnosis"] == "AD").astype(int)
    scans = rows[["scan_id", "participant_id", "session", "diagnosis", "label", "path"]]
    scans = scans.reset_index(drop=True)
    covariates = raw.drop(columns=[c for c in ("diagnosis_raw", "path", "path_key")
                                   if c in raw.columns])
    covariates = covariates.drop_duplicates(subset="participant_id")
    subjects = (scans.groupby("participant_id", sort=False)
                .agg(diagnosis=("diagnosis", "first"), label=("label", "first"),
                     n_scans=("scan_id", "size")).reset_index())
    subjects = subjects.merge(covariates, on="participant_id", how="left")
    for col in subjects.columns[4:]:
        converted = pd.to_numeric(subjects[col], errors="coerce")
        if converted.notna().sum() == (subjects[col].astype(str).str.strip() != "").sum():
            subjects[col] = converted
    return Cohort(scans=scans, subjects=subjects.reset_index(drop=True),
                  source=source, notices=notices)


def subject_labels(cohort: Cohort) -> dict[str, int]:
    """Participant id -> label (0 CN, 1 AD)."""
    return dict(zip(cohort.subjects["participant_id"], cohort.subjects["label"].astype(int),
                    strict=True))


__all__ = ["CLASS_NAMES", "Cohort", "load_cohort", "normalise_diagnosis", "subject_labels"]
