"""``brainlrp benchmark``: planted ground truth on a run whose cohort has none."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from brainlrp.benchmark import BenchmarkConfig, benchmark, held_out_controls
from brainlrp.cli import app
from brainlrp.run import RunDir
from brainlrp.simulate import simulate
from brainlrp.training import TrainConfig, train
from tests.conftest import one_line_error

METHODS = ("lrp-b0", "gradient", "lrp-ref@knn-restore", "edges", "noise")


@pytest.fixture(scope="module")
def real_like_run(tmp_path_factory):
    """A tiny run trained on simulated scans whose ground truth was removed: to brainlrp
    it is a real cohort (no derivatives/, no twins)."""
    root = tmp_path_factory.mktemp("bench")
    simulate(root / "cohort", n_subjects=20, resolution=6, seed=3, n_jobs=1, progress=False)
    shutil.rmtree(root / "cohort" / "derivatives")
    config = TrainConfig(arch="tiny", resolution=6, epochs=4, test=3, val=2,
                         early_stopping_start=0, patience=4, seed=0)
    train(root / "cohort", root / "run", config, progress=False)
    return root / "run"


def test_held_out_controls_never_include_training_scans(real_like_run):
    rd = RunDir(real_like_run)
    chosen = held_out_controls(rd, n=10, seed=0)
    pred = pd.read_csv(rd.predictions, sep="\t", dtype=str).set_index("scan_id")
    for split, pairs in chosen.items():
        assert pairs, split
        for _, scan in pairs:
            assert pred.loc[scan, "split"] == split and pred.loc[scan, "label"] == "0"
    assert held_out_controls(rd, n=1, seed=0)["test"] == held_out_controls(rd, 1, 0)["test"]


def test_benchmark_fills_a_run_without_ground_truth(real_like_run):
    from brainlrp.analysis import analyze
    from brainlrp.analysis.summary import read_summary
    from brainlrp.explain.stage import explain_run
    from brainlrp.report import report

    # The run as a user has it: explained and analysed, but nothing could be scored.
    explain_run(real_like_run, methods=["lrp-b0", "lrp-ref@knn-restore"], progress=False)
    analyze(real_like_run, progress=False, faithfulness=False, sanity=False, costs=False)
    own = pd.read_csv(real_like_run / "analysis" / "method_benchmark.tsv", sep="\t")
    assert (own["truth"] == "none").all()
    assert read_summary(real_like_run / "analysis" / "summary.json").recommended_method is None
    lines: list[str] = []
    # min_response -1: the tiny model's response is whatever 4 epochs give; this test is
    # about the pipeline (the next one about the guard).
    result = benchmark(real_like_run, BenchmarkConfig(n=2, methods=METHODS, min_response=-1),
                       progress=False, say=lines.append)
    folder = real_like_run / "benchmark"
    table = pd.read_csv(folder / "method_benchmark.tsv", sep="\t")
    assert set(table["method"]) == set(METHODS)
    assert (table["truth"] == "planted").all()
    assert table["mass_accuracy"].notna().all() and table["auc_abs"].notna().all()
    assert table["rank"].notna().all()
    # Chosen on the validation plants, never a floor or a twin method.
    val = pd.read_csv(folder / "method_benchmark_val.tsv", sep="\t")
    assert result.recommended == val.loc[val["recommended"], "method"].iloc[0]
    assert table.loc[table["recommended"], "method"].tolist() == [result.recommended]
    assert result.recommended not in ("edges", "noise")
    # The planted truth is where the disease model put it, and p(AD) is recorded.
    response = pd.read_csv(folder / "response.tsv", sep="\t")
    assert len(response) == 4 and set(response["split"]) == {"val", "test"}
    assert (response["atrophied_fraction"] > 0).all()
    np.testing.assert_allclose(response["rise"],
                               response["p_ad_planted"] - response["p_ad_original"], atol=1e-6)
    assert any("planting" in line for line in lines)
    # The original cohort was not touched: still no ground truth there.
    assert not (real_like_run.parent / "cohort" / "derivatives").exists()
    # The run's own analysis now carries the planted rows and their recommendation, and
    # the report's benchmark section shows them.
    merged = pd.read_csv(real_like_run / "analysis" / "method_benchmark.tsv", sep="\t")
    assert set(merged["truth"]) == {"planted"} and set(merged["method"]) == set(METHODS)
    summary = read_summary(real_like_run / "analysis" / "summary.json")
    assert summary.recommended_method == result.recommended
    page = report(real_like_run, progress=False).index.read_text()
    section = page[page.index('id="benchmark"'):page.index('id="training"')]
    assert "atrophy planted into the run" in section
    assert "Recommended:" in section and result.recommended in section


def test_a_model_that_does_not_respond_ranks_nothing(real_like_run):
    config = BenchmarkConfig(n=2, methods=METHODS, min_response=2.0)
    benchmark(real_like_run, config, progress=False, say=lambda _: None)
    heatmaps = sorted((real_like_run / "benchmark").rglob("heatmaps/**/*.nii*"))
    assert heatmaps
    before = [p.stat().st_mtime_ns for p in heatmaps]
    lines: list[str] = []
    result = benchmark(real_like_run, config, progress=False, say=lines.append)
    # The same plants again: nothing planted or explained a second time.
    assert sum("reusing" in line for line in lines) == 2
    assert [p.stat().st_mtime_ns for p in heatmaps] == before
    assert result.recommended is None
    assert result.table["rank"].isna().all()
    assert any("cannot judge" in n for n in result.notices)


def test_cli_benchmark_bad_input_is_one_line(tmp_path, real_like_run):
    message = one_line_error(["benchmark", str(tmp_path / "nope")])
    assert "does not exist" in message
    message = one_line_error(["benchmark", str(real_like_run), "--disease-model", "frontl"])
    assert "frontal" in message
    result = CliRunner().invoke(app, ["benchmark", "--help"])
    assert "--disease-model" in result.output
