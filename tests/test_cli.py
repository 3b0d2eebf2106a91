"""The command line: info, prepare, and one-line errors with exit code 2."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from brainlrp.cli import app
from tests.conftest import one_line_error

runner = CliRunner()


def test_info_lists_atlases_offline():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "neuromorphometrics: 136 labels" in result.output
    assert "193 x 229 x 193" in result.output and "97 x 115 x 97" in result.output


def test_info_atlas_labels():
    result = runner.invoke(app, ["info", "--atlas", "neuromorphometrics"])
    assert result.exit_code == 0, result.output
    assert "Left_Hippocampus" in result.output and "Hippocampus" in result.output


def test_prepare_writes_splits(tmp_path, bids_cohort):
    out = tmp_path / "run"
    args = ["prepare", str(bids_cohort), "--out", str(out), "--resolution", "6",
            "--test", "2", "--val", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    splits = pd.read_csv(out / "splits.tsv", sep="\t")
    assert set(splits.columns) >= {"participant_id", "split"}
    assert (out / "run.json").is_file()
    # Same command again is fine; a different split needs --overwrite.
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, [*args, "--seed", "5"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "splits.tsv", sep="\t"), splits)


def test_prepare_missing_cohort(tmp_path):
    assert "cohort not found" in one_line_error(["prepare", str(tmp_path / "x"), "--out",
                                                  str(tmp_path / "r")])


def test_prepare_too_few_subjects(tmp_path, bids_cohort):
    line = one_line_error(["prepare", str(bids_cohort), "--out", str(tmp_path / "r"),
                            "--resolution", "6"])
    assert "too few CN subjects" in line


def test_prepare_bad_scan_names_the_file(tmp_path, bids_cohort):
    (bids_cohort / "sub-003" / "anat" / "sub-003_T1w.nii.gz").write_bytes(b"not a nifti")
    line = one_line_error(["prepare", str(bids_cohort), "--out", str(tmp_path / "r"),
                            "--resolution", "6", "--test", "2", "--val", "1"])
    assert "sub-003_T1w.nii.gz" in line
    assert not (tmp_path / "r" / "splits.tsv").exists()
