"""Fixtures for the report tests: the analysis tests' fake run, analysed once per
session and given the training outputs (metrics, log, split) that ``train`` writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainlrp._io import read_json, write_json
from brainlrp.analysis import analyze
from brainlrp.analysis.regions import AtlasRegions
from brainlrp.data.grid import Grid
from brainlrp.run import RunDir
from tests.analysis.conftest import FakeRun, make_run

#: Light analysis settings (as in the analysis tests).
FAST = dict(faithfulness_subjects=2, faithfulness_steps=3, random_orders=1, sanity_subjects=1,
            sanity_voxels=2000, n_permutations=200, progress=False)


def add_training_outputs(root: Path) -> None:
    """metrics.json, training_log.csv, splits.tsv and a fuller model card, as train writes."""
    from brainlrp.training.evaluate import classification_metrics

    rd = RunDir(root)
    pred = pd.read_csv(rd.predictions, sep="\t")
    test = pred[pred["split"] == "test"]
    metrics = classification_metrics(test["label"], test["p_ad"])
    trials = [{"trial": t, "seed": t, "epochs": 20 + t, "best_val_bacc": 0.8 + 0.05 * t,
               "val": {"balanced_accuracy": 0.8 + 0.05 * t},
               "test": {**metrics, "balanced_accuracy": metrics["balanced_accuracy"] - 0.1 * t}}
              for t in range(2)]
    summary = {k: {"mean": metrics[k] - 0.05, "sd": 0.07}
               for k in ("balanced_accuracy", "sensitivity", "specificity", "roc_auc",
                         "accuracy")}
    write_json(rd.metrics, {"test": metrics, "selected_trial": 1, "trials": trials,
                            "trials_summary": summary})
    rng = np.random.default_rng(0)
    rows = [{"trial": t, "epoch": e, "train_loss": 0.7 / e + 0.05 * rng.random(),
             "train_bacc": 1 - 0.5 / e, "val_loss": 0.8 / e + 0.1,
             "val_bacc": 0.9 - 0.4 / e} for t in range(2) for e in range(1, 21 + t)]
    pd.DataFrame(rows).to_csv(root / "training_log.csv", index=False)
    splits = pred.drop_duplicates("participant_id")[["participant_id", "split"]]
    splits.to_csv(rd.splits, sep="\t", index=False)
    card = read_json(rd.card)
    # An empty preprocessing record: the card reads, the subjects' own scans do not load.
    card.setdefault("preprocessing", {})
    card.update(classes=["CN", "AD"], training={"lr": 1e-4, "batch_size": 4, "epochs": 200,
                                                "early_stopping_start": 15, "patience": 8},
                normalisation="template brain mask, then min-max to [0, 1] per scan")
    write_json(rd.card, card)
    rd.record("train", {"status": "done", "seconds": 12.5, "preprocess_seconds": 1.5,
                        "trials": trials})


@pytest.fixture(scope="session")
def analysed(tmp_path_factory) -> FakeRun:
    """A fake run after ``analyze`` (6 mm grid; lrp-b0, lrp-b1, gb; every outcome)."""
    base = tmp_path_factory.mktemp("report-run")
    grid = Grid.from_resolution(6.0)
    atlas = AtlasRegions.fit("neuromorphometrics", grid)
    fr = make_run(base, grid, atlas)
    analyze(fr.root, model=fr.model, inputs_fn=fr.inputs_fn, explain_fn=fr.explain_fn, **FAST)
    add_training_outputs(fr.root)
    return fr


@pytest.fixture(scope="session")
def reported(analysed):
    """The report of :func:`analysed` (with the subjects' own scans)."""
    from brainlrp.report import report

    return report(analysed.root, inputs_fn=analysed.inputs_fn)


@pytest.fixture
def make_ctx():
    """``make_ctx(root, methods=None)``: the context the stage would build (no own scans):
    the benchmark's recommended method in depth when it is analysed."""
    from brainlrp import catalog
    from brainlrp.report.inputs import load_run
    from brainlrp.report.sections import Context

    def make(root, methods=None) -> Context:
        data = load_run(root, methods)
        main, compare = catalog.choose_main_and_comparison(
            data.methods, data.summary.recommended_method)
        return Context(data=data, main=main, compare=compare, inputs_fn=None)

    return make


@pytest.fixture
def run_copy(analysed, tmp_path) -> Path:
    """A private copy of the analysed run (its cohort stays shared, read-only)."""
    dest = tmp_path / "run"
    shutil.copytree(analysed.root, dest, ignore=shutil.ignore_patterns("report"))
    return dest
