"""Cohort tables: both layouts, diagnosis mapping, exclusions, AD precedence, bad tables."""

from __future__ import annotations

import pandas as pd
import pytest

from brainlrp.data.cohort import load_cohort, normalise_diagnosis
from brainlrp.errors import BrainLRPError
from tests.conftest import make_scan, write_scan


@pytest.mark.parametrize("raw,expected", [
    ("CN", "HC"), ("hc", "HC"), ("Control", "HC"), ("NORMAL", "HC"),
    ("AD", "AD"), ("dementia", "AD"), ("Dementia", "AD"),
    ("MCI", "EXCLUDE"), ("LMCI", "EXCLUDE"), ("banana", None),
])
def test_diagnosis_mapping(raw, expected):
    assert normalise_diagnosis(raw) == expected


def test_bids_folder(bids_cohort):
    cohort = load_cohort(bids_cohort)
    assert cohort.counts() == {"HC": 6, "AD": 6}
    assert list(cohort.scans.columns[:5]) == ["scan_id", "participant_id", "session",
                                              "diagnosis", "label"]
    assert (cohort.scans["scan_id"] == cohort.scans["participant_id"]).all()
    assert cohort.subjects["age"].dtype.kind in "if"
    assert all(p.is_file() for p in cohort.scans["path"])


def test_bids_sessions_and_mci_notice(tmp_path, grid):
    root = tmp_path / "c"
    rows = [("sub-01", "CN"), ("sub-02", "AD"), ("sub-03", "MCI"), ("sub-04", "mci")]
    for pid, _ in rows:
        for ses in ("ses-1", "ses-2"):
            write_scan(root / pid / ses / "anat" / f"{pid}_{ses}_T1w.nii.gz", make_scan(grid),
                       grid.affine_array)
    pd.DataFrame(rows, columns=["participant_id", "diagnosis"]).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    cohort = load_cohort(root)
    assert sorted(cohort.scans["scan_id"]) == ["sub-01_ses-1", "sub-01_ses-2",
                                               "sub-02_ses-1", "sub-02_ses-2"]
    assert len(cohort.notices) == 1 and "excluded 4 scan(s) of 2 participant(s)" in \
        cohort.notices[0]


def test_csv_table_relative_paths_and_ad_precedence(tmp_path, grid):
    root = tmp_path / "t"
    for name in ("a1", "a2", "b1"):
        write_scan(root / "scans" / f"{name}.nii.gz", make_scan(grid), grid.affine_array)
    table = root / "cohort.csv"
    pd.DataFrame({"participant_id": ["A", "A", "B"], "diagnosis": ["CN", "AD", "HC"],
                  "path": ["scans/a1.nii.gz", "scans/a2.nii.gz", "scans/b1.nii.gz"]}
                 ).to_csv(table, index=False)
    cohort = load_cohort(table)
    a = cohort.scans[cohort.scans["participant_id"] == "A"]
    assert (a["diagnosis"] == "AD").all() and (a["label"] == 1).all()
    assert sorted(a["scan_id"]) == ["A_scan-1", "A_scan-2"]
    assert cohort.counts() == {"HC": 1, "AD": 1}
    assert any("count as AD" in n for n in cohort.notices)


def _error(path, **kw) -> str:
    with pytest.raises(BrainLRPError) as info:
        load_cohort(path, **kw)
    text = info.value.one_line()
    assert "\n" not in text
    return text


def test_unknown_diagnoses_are_listed(tmp_path, grid):
    root = tmp_path / "c"
    for pid in ("sub-1", "sub-2", "sub-3"):
        write_scan(root / pid / "anat" / f"{pid}_T1w.nii.gz", make_scan(grid),
                   grid.affine_array)
    pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3"],
                  "diagnosis": ["CN", "FTD", "probable AD"]}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    text = _error(root)
    assert "'FTD'" in text and "'probable AD'" in text


def test_conflicting_duplicate_rows(tmp_path, grid):
    root = tmp_path / "c"
    write_scan(root / "sub-1" / "anat" / "sub-1_T1w.nii.gz", make_scan(grid), grid.affine_array)
    pd.DataFrame({"participant_id": ["sub-1", "sub-1"], "diagnosis": ["CN", "AD"]}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    assert "conflicting diagnoses" in _error(root)


def test_empty_after_exclusions(tmp_path, grid):
    root = tmp_path / "c"
    write_scan(root / "sub-1" / "anat" / "sub-1_T1w.nii.gz", make_scan(grid), grid.affine_array)
    pd.DataFrame({"participant_id": ["sub-1"], "diagnosis": ["MCI"]}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    assert "no HC or AD scans are left" in _error(root)


def test_missing_participants_table(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "participants.tsv" in _error(tmp_path / "empty")


def test_missing_scan_for_participant(bids_cohort):
    table = bids_cohort / "participants.tsv"
    frame = pd.read_csv(table, sep="\t")
    frame.loc[len(frame)] = {"participant_id": "sub-999", "diagnosis": "CN", "age": 70}
    frame.to_csv(table, sep="\t", index=False)
    assert "sub-999" in _error(bids_cohort)


def test_paths_leaving_the_cohort_folder_are_refused(tmp_path, grid):
    outside = write_scan(tmp_path / "outside.nii.gz", make_scan(grid), grid.affine_array)
    root = tmp_path / "t"
    root.mkdir()
    table = root / "c.tsv"
    pd.DataFrame({"participant_id": ["A"], "diagnosis": ["CN"], "path": ["../outside.nii.gz"]}
                 ).to_csv(table, sep="\t", index=False)
    assert "leaves the cohort folder" in _error(table)
    assert load_cohort(table, allow_external_paths=True).scans["path"][0] == outside.resolve()


@pytest.mark.parametrize("pid", ["../evil", "/abs", "a b", ""])
def test_unsafe_participant_ids(tmp_path, pid):
    table = tmp_path / "c.tsv"
    pd.DataFrame({"participant_id": [pid], "diagnosis": ["CN"], "path": ["x.nii"]}).to_csv(
        table, sep="\t", index=False)
    assert "participant_id" in _error(table)
