"""``brainlrp simulate`` on the command line: output, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from brainlrp.cli import app

from .conftest import TEST_RESOLUTION

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["simulate", "--arch", "tiny", *map(str, args)])


def _error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_simulate_writes_a_cohort(tmp_path):
    out = tmp_path / "cohort"
    result = _run(out, "--n-subjects", 4, "--resolution", TEST_RESOLUTION, "--seed", 3,
                  "--jobs", 1, "--ad-fraction", 0.25)
    assert result.exit_code == 0, result.output
    assert "4 subjects (HC 3, AD 1)" in result.output
    assert (out / "participants.tsv").is_file()
    again = _run(out, "--n-subjects", 4, "--resolution", TEST_RESOLUTION, "--seed", 3,
                 "--jobs", 1, "--ad-fraction", 0.25)
    assert again.exit_code == 0 and "0 simulated" in again.output
    assert "4 kept from an earlier run" in again.output
    clash = _run(out, "--n-subjects", 4, "--resolution", TEST_RESOLUTION, "--seed", 4,
                 "--jobs", 1)
    assert clash.exit_code == 2
    assert "other settings" in _error_line(clash) and "--overwrite" in clash.output


@pytest.mark.parametrize("model, needle", [
    ({"severity": [0.3, 0.9], "subtypes": {"a": {"weight": 1, "regions": {
        "Hipocampus": 0.4}}}}, "unknown region 'Hipocampus'; close matches: Hippocampus"),
    ({"severity": [0.3, 0.9], "subtypes": {"a": {"weight": 1, "regions": {
        "Hippocampus": -0.4}}}}, "has weight -0.4"),
    ({"severity": [0.3, 0.9], "subtypes": {}}, "has no subtypes"),
    ({"severity": [0.3, 1.2], "subtypes": {"a": {"weight": 1, "regions": {
        "Hippocampus": 0.4}}}}, "outside [0, 1)"),
])
def test_bad_disease_models_stop_with_exit_2(tmp_path, model, needle):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    result = _run(tmp_path / "out", "-n", 2, "-r", TEST_RESOLUTION, "--disease-model", path)
    assert result.exit_code == 2
    line = _error_line(result)
    assert needle in line and str(path) in line
    assert not (tmp_path / "out").exists()  # nothing written before the model is valid


def test_bad_options_stop_with_exit_2(tmp_path):
    assert _error_line(_run(tmp_path / "o", "--ad-fraction", 1.5))
    assert "unknown disease model" in _error_line(
        _run(tmp_path / "o", "--disease-model", "nonexistent"))
    assert "--n-subjects" in _error_line(_run(tmp_path / "o", "-n", 0))
