"""Training: augmentation, a tiny end-to-end run, DDP, refusals and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchio as tio
from typer.testing import CliRunner

from brainlrp.card import read_card
from brainlrp.cli import app
from brainlrp.data.grid import Grid
from brainlrp.errors import BrainLRPError
from brainlrp.training import load_model
from brainlrp.training.data import RandomShift, Shift, paper_augmentation
from tests.conftest import make_bids_cohort, one_line_error

runner = CliRunner()
TINY = ["--resolution", "6", "--arch", "tiny", "--epochs", "2", "--test", "2", "--val", "2",
        "--early-stopping-start", "0", "--quiet"]


def _subject(shape=(7, 8, 9)):
    x = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(1, *shape)
    return tio.Subject(image=tio.ScalarImage(tensor=x, affine=np.diag([6.0, 6, 6, 1]))), x


def test_flip_is_left_right_only():
    subject, x = _subject()
    flip = tio.RandomFlip(axes=("LR",), flip_probability=1.0)
    assert torch.equal(flip(subject)["image"].data, x.flip(1))
    torch.manual_seed(0)
    aug = paper_augmentation(flip=True, shifts=None)
    for _ in range(20):
        out = aug(subject)["image"].data
        assert torch.equal(out, x) or torch.equal(out, x.flip(1))


def test_shift_moves_along_left_right_with_zero_fill():
    subject, x = _subject()
    out = Shift(2)(subject)["image"].data
    assert torch.equal(out[:, 2:], x[:, :-2]) and not out[:, :2].any()
    out = Shift(-1)(subject)["image"].data
    assert torch.equal(out[:, :-1], x[:, 1:]) and not out[:, -1:].any()
    torch.manual_seed(0)
    seen = {RandomShift((-2, 3))(subject).history[0].shift for _ in range(200)}
    assert seen == {-2, -1, 0, 1, 2, 3}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_bids_cohort(tmp_path_factory.mktemp("cohort"), Grid.from_resolution(6), 7, 7)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cohort):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = runner.invoke(app, ["train", str(cohort), "--out", str(out), *TINY,
                                 "--trials", "2"])
    assert result.exit_code == 0, result.output
    return out


def test_training_writes_the_contract(trained):
    pred = pd.read_csv(trained / "predictions.tsv", sep="\t")
    assert list(pred.columns) == ["participant_id", "scan_id", "diagnosis", "label", "p_ad",
                                  "predicted", "outcome", "split"]
    assert len(pred) == 14 and set(pred["split"]) == {"train", "val", "test"}
    assert pred["p_ad"].between(0, 1).all()
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("balanced_accuracy", "sensitivity", "specificity", "roc_auc",
                "confusion_matrix"):
        assert key in metrics["test"]
    assert set(metrics["trials_summary"]["balanced_accuracy"]) == {"mean", "sd"}
    card = json.loads((trained / "model" / "card.json").read_text())
    assert card["grid"]["shape"] == [33, 39, 33]
    assert card["classes"] == ["HC", "AD"] and "torch" in card["libraries"]
    log = pd.read_csv(trained / "training_log.csv")
    assert {"trial", "epoch", "train_loss", "val_loss", "val_bacc"} <= set(log.columns)
    assert sorted(log["trial"].unique()) == [0, 1]
    model, _ = load_model(trained)
    assert isinstance(model, torch.nn.Module) and not model.training


def test_no_subject_in_two_splits(trained):
    splits = pd.read_csv(trained / "splits.tsv", sep="\t")
    assert splits["participant_id"].is_unique
    pred = pd.read_csv(trained / "predictions.tsv", sep="\t")
    assert (pred.groupby("participant_id")["split"].nunique() == 1).all()


def test_rerun_refuses_without_overwrite(trained, cohort):
    before = (trained / "model" / "best.ckpt").read_bytes()
    result = runner.invoke(app, ["train", str(cohort), "--out", str(trained), *TINY])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (trained / "model" / "best.ckpt").read_bytes() == before


def test_finished_trials_are_not_trained_again(tmp_path, cohort):
    """Killed after an early-stopped trial finished but before the run's files were
    written: the rerun evaluates that trial instead of training on past its stop."""
    out = tmp_path / "run"
    args = ["train", str(cohort), "--out", str(out), "--resolution", "6", "--arch", "tiny",
            "--epochs", "12", "--patience", "1", "--early-stopping-start", "0", "--test", "2",
            "--val", "2", "--quiet"]
    assert runner.invoke(app, args).exit_code == 0
    log = (out / "training_log.csv").read_bytes()
    assert pd.read_csv(out / "training_log.csv")["epoch"].max() < 12  # it stopped early
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    last = out / "model" / "lightning" / "trial-0" / "last.ckpt"
    stamp = last.stat().st_mtime_ns
    for name in ("model/best.ckpt", "model/card.json", "predictions.tsv", "metrics.json"):
        (out / name).unlink()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "training_log.csv").read_bytes() == log
    assert last.stat().st_mtime_ns == stamp  # Lightning did not fit the trial again
    pd.testing.assert_frame_equal(pd.read_csv(out / "predictions.tsv", sep="\t"), predictions)


def test_overwrite_retrains(tmp_path, cohort):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", str(cohort), "--out", str(out), *TINY]).exit_code == 0
    result = runner.invoke(app, ["train", str(cohort), "--out", str(out), *TINY,
                                 "--overwrite", "--seed", "3"])
    assert result.exit_code == 0, result.output


def test_one_class_only(tmp_path):
    cohort = make_bids_cohort(tmp_path / "c", Grid.from_resolution(6), 6, 0)
    line = one_line_error(["train", str(cohort), "--out", str(tmp_path / "r"), *TINY])
    assert "no AD subjects" in line


def test_too_few_subjects(tmp_path):
    cohort = make_bids_cohort(tmp_path / "c", Grid.from_resolution(6), 3, 3)
    line = one_line_error(["train", str(cohort), "--out", str(tmp_path / "r"), *TINY])
    assert "too few" in line


def test_checkpoint_from_another_grid(tmp_path, trained):
    with pytest.raises(BrainLRPError, match="model expects 33 x 39 x 33"):
        read_card(trained).check_grid(Grid.from_resolution(7), "the cohort")
    card = json.loads((trained / "model" / "card.json").read_text())
    # A checkpoint trained for another grid dropped into this run is refused.
    other = tmp_path / "other"
    (other / "model").mkdir(parents=True)
    (other / "model" / "best.ckpt").write_bytes((trained / "model" / "best.ckpt").read_bytes())
    card["grid"] = Grid.from_resolution(7).to_dict()
    (other / "model" / "card.json").write_text(json.dumps(card))
    with pytest.raises(BrainLRPError, match="was made for a 33 x 39 x 33 grid"):
        load_model(other)


def test_corrupted_checkpoint(tmp_path, trained):
    broken = tmp_path / "broken"
    (broken / "model").mkdir(parents=True)
    (broken / "model" / "card.json").write_text((trained / "model" / "card.json").read_text())
    data = (trained / "model" / "best.ckpt").read_bytes()
    (broken / "model" / "best.ckpt").write_bytes(data[: len(data) // 3])
    with pytest.raises(BrainLRPError, match="cannot read the checkpoint") as info:
        load_model(broken)
    assert "\n" not in info.value.one_line()


def test_ddp_over_two_cpu_processes(tmp_path, cohort, trained):
    out = tmp_path / "ddp"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "brainlrp.cli", "train", str(cohort), "--out", str(out),
           *TINY, "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "model" / "best.ckpt").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trials"][0]["world_size"] == 2
    single = pd.read_csv(trained / "splits.tsv", sep="\t")
    pd.testing.assert_frame_equal(pd.read_csv(out / "splits.tsv", sep="\t"), single)
    load_model(out)


def test_run_works_from_anywhere_and_after_a_move(tmp_path, monkeypatch):
    """Relative paths given at train time still resolve from another working directory,
    and after the project folder holding cohort and run was moved."""
    project = tmp_path / "project"
    make_bids_cohort(project / "cohort", Grid.from_resolution(6), 5, 5)
    monkeypatch.chdir(project)
    result = runner.invoke(app, ["train", "cohort", "--out", "runs/r1", *TINY])
    assert result.exit_code == 0, result.output
    cohort = json.loads((project / "runs/r1/run.json").read_text())["cohort"]
    assert Path(cohort["source"]).is_absolute()
    assert cohort["source_relative"] == os.path.join("..", "..", "cohort")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = ["explain", str(project / "runs/r1"), "--methods", "gradient", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    moved = tmp_path / "moved"
    project.rename(moved)
    result = runner.invoke(app, ["explain", str(moved / "runs/r1"), "--methods", "lrp-b0",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert any((moved / "runs/r1/heatmaps/lrp-b0").glob("*.nii.gz"))
