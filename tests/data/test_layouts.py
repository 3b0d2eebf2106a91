"""CAPS and fMRIPrep folders read as cohorts, without hand-made tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainlrp.data.cohort import load_cohort
from brainlrp.data.grid import Grid
from brainlrp.data.layouts import entities, sidecar_brain_mask
from brainlrp.data.preprocess import PreprocessCache, Preprocessing
from tests.conftest import make_scan, one_line_error, write_scan

GRID = Grid.from_resolution(6)
CAPS_NAME = "{sub}_{ses}_space-MNI152NLin2009cSym_desc-Crop_res-1x1x1_T1w.nii.gz"
FMRIPREP = "{sub}_{ses}_space-{space}_desc-preproc_T1w.nii.gz"


def crop(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A cropped copy of a grid volume with its real (shifted) affine, like CAPS'."""
    affine = GRID.affine_array.copy()
    affine[:3, 3] += affine[:3, :3] @ np.array([2, 3, 1])
    return data[2:-2, 3:-2, 1:-1], affine


def make_caps(root: Path, session_table: bool = False) -> Path:
    rows = []
    for k, dx in enumerate(["CN", "AD", "CN", "AD"], start=1):
        sub = f"sub-{k:02d}"
        for ses in ("ses-M000", "ses-M024") if k == 1 else ("ses-M000",):
            data, affine = crop(make_scan(GRID, seed=k))
            write_scan(root / "subjects" / sub / ses / "t1_linear"
                       / CAPS_NAME.format(sub=sub, ses=ses), data, affine)
            rows.append({"participant_id": sub, "session_id": ses, "diagnosis": dx,
                         "age": 70 + k})
    table = pd.DataFrame(rows)
    if not session_table:
        table = table.drop(columns="session_id").drop_duplicates("participant_id")
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def make_fmriprep(bids: Path, space: str = "MNI152NLin2009cAsym", mask: bool = True) -> Path:
    root = bids / "derivatives" / "fmriprep"
    rows = []
    for k, dx in enumerate(["CN", "AD", "CN", "AD"], start=1):
        sub, ses = f"sub-{k:02d}", "ses-01"
        anat = root / sub / ses / "anat"
        write_scan(anat / FMRIPREP.format(sub=sub, ses=ses, space=space),
                   make_scan(GRID, seed=k) + 50, GRID.affine_array)
        # fMRIPrep also writes the native-space T1w; it must not be picked
        write_scan(anat / f"{sub}_{ses}_desc-preproc_T1w.nii.gz", make_scan(GRID, seed=k),
                   GRID.affine_array)
        if mask:
            m = np.zeros(GRID.shape, np.float32)
            m[:, : GRID.shape[1] // 2] = 1  # posterior half only: visible in the output
            write_scan(anat / f"{sub}_{ses}_space-{space}_desc-brain_mask.nii.gz", m,
                       GRID.affine_array)
        rows.append({"participant_id": sub, "diagnosis": dx})
    bids.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(bids / "participants.tsv", sep="\t", index=False)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "fMRIPrep", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.0"}]}))
    return root


def test_entities():
    assert entities("sub-01_ses-M000_space-X_desc-Crop_res-1x1x1_T1w.nii.gz") == {
        "sub": "01", "ses": "M000", "space": "X", "desc": "Crop", "res": "1x1x1",
        "suffix": "T1w"}


def test_caps_folder_loads_and_preprocesses(tmp_path):
    cohort = load_cohort(make_caps(tmp_path / "caps"))
    scans = cohort.scans.set_index("scan_id")
    assert set(scans.index) == {"sub-01_ses-M000", "sub-01_ses-M024", "sub-02", "sub-03",
                                "sub-04"}
    assert scans.loc["sub-02", "diagnosis"] == "AD" and "t1_linear" in str(
        scans.loc["sub-02", "path"])
    assert "age" in cohort.subjects.columns
    # the crop's real affine puts it back where it belongs on the model grid
    arr = PreprocessCache(tmp_path / "cache").load(scans.loc["sub-02", "path"],
                                                   Preprocessing(GRID))
    full = PreprocessCache(tmp_path / "cache").load(
        write_scan(tmp_path / "full.nii.gz", make_scan(GRID, seed=2), GRID.affine_array),
        Preprocessing(GRID))
    inner = (slice(3, -3), slice(4, -3), slice(2, -2))
    np.testing.assert_allclose(arr[inner], full[inner], atol=1e-5)


def test_caps_session_table_gives_per_session_diagnosis(tmp_path):
    root = make_caps(tmp_path / "caps", session_table=True)
    table = pd.read_csv(root / "participants.tsv", sep="\t")
    table.loc[1, "diagnosis"] = "AD"  # sub-01 converts at M024: counts as AD
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    cohort = load_cohort(root)
    assert cohort.subjects.set_index("participant_id").loc["sub-01", "diagnosis"] == "AD"
    assert len(cohort.scans) == 5


def test_fmriprep_derivatives_load_with_brain_mask(tmp_path):
    root = make_fmriprep(tmp_path / "bids")
    cohort = load_cohort(root)
    assert len(cohort.scans) == 4 and cohort.counts() == {"HC": 2, "AD": 2}
    path = Path(cohort.scans.loc[0, "path"])
    assert "space-MNI152NLin2009cAsym" in path.name
    assert sidecar_brain_mask(path).name.endswith("_desc-brain_mask.nii.gz")
    arr = PreprocessCache(tmp_path / "cache").load(path, Preprocessing(GRID))
    assert not arr[:, GRID.shape[1] // 2 + 1:].any() and arr[:, : GRID.shape[1] // 2].any()


def test_wrong_space_is_one_line(tmp_path):
    root = make_fmriprep(tmp_path / "bids", space="MNI152NLin6Asym")
    line = one_line_error(["prepare", str(root), "--out", str(tmp_path / "run"),
                           "--resolution", "6", "--arch", "tiny"])
    assert "MNI152NLin6Asym" in line and "MNI152NLin2009cAsym" in line


def test_missing_scan_is_one_line(tmp_path):
    root = make_caps(tmp_path / "caps")
    for f in (root / "subjects" / "sub-03").rglob("*.nii.gz"):
        f.unlink()
    line = one_line_error(["prepare", str(root), "--out", str(tmp_path / "run"),
                           "--resolution", "6", "--arch", "tiny"])
    assert "sub-03" in line and "t1_linear" in line


def test_missing_participants_table_is_one_line(tmp_path):
    root = make_caps(tmp_path / "a" / "b" / "caps")
    (root / "participants.tsv").unlink()
    line = one_line_error(["prepare", str(root), "--out", str(tmp_path / "run")])
    assert "participants.tsv" in line


@pytest.mark.parametrize("name", ["sub-1_T1w.nii.gz", "sub-1_space-X_desc-preproc_T1w.nii"])
def test_no_sidecar_mask(tmp_path, name):
    path = write_scan(tmp_path / name, make_scan(GRID), GRID.affine_array)
    assert sidecar_brain_mask(path) is None
