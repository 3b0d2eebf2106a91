"""Cohorts written by other pipelines: Clinica CAPS and fMRIPrep/sMRIPrep derivatives.

Both are read without a hand-made table: the participants (and diagnoses) come from
the layout's own ``participants.tsv``, the scans from the file names, and the space
from the file's ``space-`` entity.

* **CAPS** (Clinica ``t1-linear``): ``subjects/sub-X/ses-Y/t1_linear/
  sub-X_ses-Y_space-MNI152NLin2009cSym[_desc-Crop]_res-1x1x1_T1w.nii.gz``. The
  participants table is ``participants.tsv`` (BIDS, one row per participant) or a
  ClinicaDL-style table with ``session_id`` (diagnosis per session), in the CAPS
  folder or up to two folders above it.
* **fMRIPrep / sMRIPrep**: ``sub-X/[ses-Y/]anat/sub-X[_ses-Y]_space-
  MNI152NLin2009cAsym[_res-R]_desc-preproc_T1w.nii.gz``, with the brain mask
  ``..._desc-brain_mask.nii.gz`` next to it applied when present; participants
  from the derivatives folder's ``participants.tsv`` or the BIDS dataset's above it
  (``bids/derivatives/fmriprep``).

The accepted spaces are ICBM 2009c, asymmetric (the template brainlrp uses) or
symmetric (CAPS); the real affine is kept and resampling onto the model grid
handles crops and voxel sizes. Any other space (``MNI152NLin6Asym``, ``T1w``, ...)
is refused in one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp.errors import BrainLRPError

#: Template spaces whose coordinates are the model's (preferred first).
ACCEPTED_SPACES = ("MNI152NLin2009cAsym", "MNI152NLin2009cSym")
DERIVATIVE_PIPELINES = ("fmriprep", "smriprep")
_NIFTI = (".nii.gz", ".nii")


def entities(name: str) -> dict[str, str]:
    """BIDS entities of a file name, plus ``suffix`` (``sub-1_space-X_T1w.nii.gz`` ->
    ``{"sub": "1", "space": "X", "suffix": "T1w"}``)."""
    stem = name
    for ext in _NIFTI:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    parts = stem.split("_")
    out = {k: v for k, _, v in (p.partition("-") for p in parts[:-1])}
    out["suffix"] = parts[-1]
    return out


def sidecar_brain_mask(path: str | Path) -> Path | None:
    """The fMRIPrep brain mask written next to a ``desc-preproc_T1w`` scan, if any."""
    path = Path(path)
    for ext in _NIFTI:
        if path.name.endswith("_desc-preproc_T1w" + ext):
            stem = path.name[: -len("_desc-preproc_T1w" + ext)]
            for mask_ext in _NIFTI:
                mask = path.with_name(f"{stem}_desc-brain_mask{mask_ext}")
                if mask.is_file():
                    return mask
    return None


def apply_sidecar_mask(path: str | Path, img):
    """``img`` (the loaded scan) multiplied by its sidecar brain mask, when there is one."""
    mask_path = sidecar_brain_mask(path)
    if mask_path is None:
        return img
    import nibabel as nib
    from nilearn.image import resample_to_img

    mask = nib.load(mask_path)
    mask = nib.Nifti1Image(np.asarray(mask.dataobj, np.float32), mask.affine)
    if mask.shape[:3] != img.shape or not np.allclose(mask.affine, img.affine, atol=1e-3):
        mask = resample_to_img(mask, img, interpolation="nearest", force_resample=True,
                               copy_header=True)
    data = np.asarray(img.dataobj, np.float32) * (np.asarray(mask.dataobj) > 0.5)
    return nib.Nifti1Image(data.astype(np.float32), img.affine)


def detect_layout(root: Path) -> str:
    """``"caps"``, ``"fmriprep"`` or ``"bids"`` for a cohort folder."""
    if (root / "subjects").is_dir() and any((root / "subjects").glob("sub-*/ses-*")):
        return "caps"
    description = root / "dataset_description.json"
    if description.is_file():
        try:
            generated = json.loads(description.read_text()).get("GeneratedBy", [])
            names = {str(g.get("Name", "")).lower() for g in generated if isinstance(g, dict)}
        except (ValueError, AttributeError):
            names = set()
        if names & set(DERIVATIVE_PIPELINES):
            return "fmriprep"
    if any(root.glob("sub-*/anat/*_desc-preproc_T1w.nii*")) or any(
            root.glob("sub-*/ses-*/anat/*_desc-preproc_T1w.nii*")):
        return "fmriprep"
    return "bids"


def find_participants(root: Path, layout: str) -> Path:
    """The layout's participants table: in ``root`` or up to two folders above."""
    looked = [root, root.parent, root.parent.parent]
    for folder in looked:
        if (folder / "participants.tsv").is_file():
            return folder / "participants.tsv"
    raise BrainLRPError(
        f"the {layout} folder {root} has no participants.tsv (looked in "
        + ", ".join(str(f) for f in looked) + ")",
        "put the BIDS dataset's participants.tsv (participant_id, diagnosis), or a "
        "ClinicaDL table with participant_id, session_id, diagnosis, in that folder")


def read_layout(root: Path, layout: str) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """Participants and scans of a CAPS or fMRIPrep folder.

    Returns
    -------
    raw : pandas.DataFrame
        The participants table (``participant_id``, ``diagnosis_raw``, covariates).
    rows : pandas.DataFrame
        One row per scan: ``participant_id``, ``session``, ``diagnosis_raw``,
        ``path``, ``scan_id``.
    table : Path
        The participants table read.
    """
    from brainlrp.data.cohort import _check_duplicates, _folder_name, _read_table

    table = find_participants(root, layout)
    raw = _read_table(table)
    session_col = next((c for c in raw.columns if c.lower() in ("session_id", "session")),
                       None)
    keys = ["participant_id"] + ([session_col] if session_col else [])
    _check_duplicates(raw, keys, table)
    listed = raw.drop_duplicates(subset=keys)
    rows, missing, wrong = [], [], []
    for row in listed.itertuples(index=False):
        pid = row.participant_id
        sub = _folder_name(pid)
        session = getattr(row, session_col) if session_col else None
        if session is not None and session and not str(session).startswith("ses-"):
            session = f"ses-{session}"
        candidates = _candidates(root, layout, sub, session)
        chosen, spaces = _choose(candidates)
        if not chosen:
            (wrong if spaces else missing).append((pid, spaces))
            continue
        for path in chosen:
            ent = entities(path.name)
            ses = f"ses-{ent['ses']}" if "ses" in ent else ""
            rows.append({"participant_id": pid, "session": ses,
                         "diagnosis_raw": row.diagnosis_raw, "path": path,
                         "scan_id": f"{sub}_{ses}" if ses else sub})
    where = ("subjects/sub-*/ses-*/t1_linear/" if layout == "caps"
             else "sub-*/[ses-*/]anat/*_desc-preproc_T1w")
    if wrong:
        pid, spaces = wrong[0]
        raise BrainLRPError(
            f"{root}: {len(wrong)} participant(s) have T1w scans only in space(s) "
            f"{', '.join(sorted(spaces))}, not {' or '.join(ACCEPTED_SPACES)} (e.g. {pid})",
            "write them in MNI152NLin2009cAsym (fMRIPrep: --output-spaces "
            "MNI152NLin2009cAsym), or list the native scans in a table and pass --register")
    if missing:
        raise BrainLRPError(
            f"no T1w scan found for {len(missing)} participant(s) of {table}, e.g. "
            f"{missing[0][0]} (looked for {root / where})",
            "add the scans or remove those rows from the participants table")
    frame = pd.DataFrame(rows).drop_duplicates(subset=["path"])
    dup = frame["scan_id"].duplicated(keep=False)
    if dup.any():  # several runs/acquisitions in one session: keep their entities
        frame.loc[dup, "scan_id"] = [_scan_name(p) for p in frame.loc[dup, "path"]]
    single = frame.groupby("participant_id")["scan_id"].transform("size") == 1
    frame.loc[single, "scan_id"] = frame.loc[single, "participant_id"]
    raw = raw.drop(columns=[session_col]) if session_col else raw
    return raw, frame.reset_index(drop=True), table


def _scan_name(path: Path) -> str:
    ent = entities(path.name)
    return "_".join(f"{k}-{v}" for k, v in ent.items()
                    if k not in ("space", "desc", "res", "suffix"))


def _candidates(root: Path, layout: str, sub: str, session: str | None) -> list[Path]:
    ses = session or "ses-*"
    if layout == "caps":
        patterns = [f"subjects/{sub}/{ses}/t1_linear/{sub}_*T1w.nii*"]
    else:
        patterns = [f"{sub}/anat/{sub}_*T1w.nii*"] if session is None else []
        patterns.append(f"{sub}/{ses}/anat/{sub}_*T1w.nii*")
    found = sorted({p for pat in patterns for p in root.glob(pat)
                    if p.name.endswith(_NIFTI)})
    if layout == "fmriprep":
        found = [p for p in found if entities(p.name).get("desc") == "preproc"]
    return found


def _choose(candidates: list[Path]) -> tuple[list[Path], set[str]]:
    """Per session, the scan in the preferred accepted space (full field of view
    before a crop); also every space seen."""
    spaces = {entities(p.name).get("space", "native (no space entity)") for p in candidates}
    by_session: dict[str, list[Path]] = {}
    for p in candidates:
        by_session.setdefault(entities(p.name).get("ses", ""), []).append(p)
    chosen = []
    for files in by_session.values():
        ranked = sorted(
            (p for p in files if entities(p.name).get("space") in ACCEPTED_SPACES),
            key=lambda p: (ACCEPTED_SPACES.index(entities(p.name)["space"]),
                           entities(p.name).get("desc") == "Crop",
                           _res_rank(entities(p.name).get("res"))))
        if ranked:
            chosen.append(ranked[0])
    return chosen, spaces


def _res_rank(res: str | None) -> float:
    # fMRIPrep's res-1 / CAPS's res-1x1x1 are finest first; an unknown label last.
    if res is None:
        return 0.0
    match = re.match(r"^(\d+(?:\.\d+)?)", res)
    return float(match.group(1)) if match else 99.0


__all__ = ["ACCEPTED_SPACES", "apply_sidecar_mask", "detect_layout", "entities",
           "find_participants", "read_layout", "sidecar_brain_mask"]
