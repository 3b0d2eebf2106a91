"""The command line: info, prepare, and one-line errors with exit code 2."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from brainlrp import catalog
from brainlrp.cli import app
from brainlrp.data.reference import BASE_KINDS, RESTORE
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
    args = ["prepare", str(bids_cohort), "--out", str(out), "--resolution", "6", "--arch",
            "tiny", "--test", "2", "--val", "1"]
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
                            "--resolution", "6", "--arch", "tiny"])
    assert "too few HC subjects" in line


def test_prepare_bad_scan_names_the_file(tmp_path, bids_cohort):
    (bids_cohort / "sub-003" / "anat" / "sub-003_T1w.nii.gz").write_bytes(b"not a nifti")
    line = one_line_error(["prepare", str(bids_cohort), "--out", str(tmp_path / "r"),
                            "--resolution", "6", "--arch", "tiny", "--test", "2", "--val", "1"])
    assert "sub-003_T1w.nii.gz" in line
    assert not (tmp_path / "r" / "splits.tsv").exists()


@pytest.mark.parametrize("command", ["prepare", "simulate"])
def test_a_grid_too_coarse_for_the_network_is_refused_at_once(tmp_path, bids_cohort, command):
    out = tmp_path / "out"
    args = ([command, str(bids_cohort), "--out", str(out)] if command == "prepare"
            else [command, str(out), "-n", "2"])
    line = one_line_error([*args, "--resolution", "3"])
    assert "65 x 77 x 65" in line and "78 x 78 x 78" in line and "'paper'" in line
    assert "--resolution" in line
    assert not out.exists()


def test_version_help_and_short_options():
    for flag in ("--version", "-V"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0 and result.output.startswith("brainlrp ")
    for command in ("explain", "analyze", "report"):
        result = runner.invoke(app, [command, "-h"])
        assert result.exit_code == 0, result.output
        assert "-m, --methods" in result.output
        assert "<bool>" not in result.output


def test_run_directory_that_does_not_exist(tmp_path):
    for command in ("explain", "analyze", "report"):
        line = one_line_error([command, str(tmp_path / "NOT_A_RUN")])
        assert "NOT_A_RUN does not exist" in line and "RunDir" not in line


def test_bad_atlas_name_prints_nothing_else():
    line = one_line_error(["info", "--atlas", "nope"])
    assert "unknown atlas 'nope'" in line


def _help(command: str) -> str:
    """``brainlrp COMMAND -h`` as one line (click wraps lines, also after hyphens)."""
    result = runner.invoke(app, [command, "-h"])
    assert result.exit_code == 0, result.output
    return " ".join(re.sub(r"-\n\s*", "-", result.output).split())


def test_explain_help_comes_from_the_catalog_and_the_references():
    """The methods, defaults and reference kinds in the help are read, not typed: a
    catalog or reference change shows up in the help."""
    text = _help("explain")
    assert f"Default: {','.join(catalog.default_methods())}" in text
    assert "<method>@<reference>" in text
    for name in catalog.listed():
        assert name in text, name
    for example in catalog.family_examples():
        assert "@" in example or example in text, example
    for kind in BASE_KINDS:
        assert f"{kind}," in text or f"{kind} (" in text, kind
    assert f"any of these with {RESTORE}" in text
    assert f"Default {catalog.DEFAULT_REFERENCE}." in text
    assert "$references" not in text
