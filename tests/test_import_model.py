"""``brainlrp import-model``: a model trained elsewhere becomes a run that explain,
analyze and report take unchanged; bad input stops with one line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from brainlrp.card import read_card
from brainlrp.cli import app
from brainlrp.data import load_inputs
from brainlrp.data.grid import Grid
from brainlrp.explain import explain
from brainlrp.training import import_model, load_model
from brainlrp.training.importer import parse_classes
from tests.conftest import TINY_NET, make_bids_cohort, one_line_error

runner = CliRunner()
GRID = Grid.from_resolution(6)
STRIDE2 = {"conv1_t_stride": 2}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_bids_cohort(tmp_path_factory.mktemp("cohort"), GRID, 4, 4)


@pytest.fixture(scope="module")
def monai_weights(tmp_path_factory):
    """A MONAI ResNet10 trained a few steps with plain PyTorch, outputs ordered AD, HC,
    saved as a DDP-prefixed state dict under "state_dict"."""
    from monai.networks.nets import resnet10

    torch.manual_seed(0)
    model = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2, **STRIDE2)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(4, 1, *GRID.shape)
    y = torch.tensor([0, 1, 0, 1])  # 0 = AD, 1 = HC
    for _ in range(3):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    path = tmp_path_factory.mktemp("weights") / "resnet10.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v
                                           for k, v in model.state_dict().items()}}, path)
    return path


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(TINY_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "mynets:net"


def test_parse_classes():
    assert parse_classes("HC,AD") == (["HC", "AD"], 1)
    assert parse_classes("CN, AD") == (["HC", "AD"], 1)
    assert parse_classes(["AD", "control"]) == (["AD", "HC"], 0)


def test_monai_model_trained_elsewhere_through_explain_analyze_report(tmp_path, cohort,
                                                                      monai_weights):
    run = tmp_path / "run"
    result = runner.invoke(app, [
        "import-model", str(cohort), "--out", str(run), "--arch", "resnet10",
        "--weights", str(monai_weights), "--classes", "AD,HC", "--resolution", "6",
        "--model-kwargs", json.dumps(STRIDE2), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "AD = output 0" in result.output
    card = read_card(run)
    assert (card.architecture, card.model_kwargs) == ("resnet10", STRIDE2)
    assert card.classes == ["AD", "HC"] and card.target_class == 0
    assert card.training["imported"] and card.prep.mask and card.prep.normalisation == "minmax"
    payload = torch.load(run / "model" / "best.ckpt", weights_only=True)
    assert payload["arch"] == "resnet10" and not any(k.startswith("module.")
                                                     for k in payload["state_dict"])
    pred = pd.read_csv(run / "predictions.tsv", sep="\t", dtype={"scan_id": str})
    assert len(pred) == 8 and set(pred["split"]) == {"test"}
    assert set(pd.read_csv(run / "splits.tsv", sep="\t")["split"]) == {"test"}
    assert json.loads((run / "metrics.json").read_text())["test"]["n"] == 8
    assert json.loads((run / "run.json").read_text())["stages"]["import"]["target_class"] == 0

    # p_ad and heatmaps are AD's output (index 0), not output 1.
    model, _ = load_model(run)
    ids = pred["scan_id"].tolist()[:2]
    x = torch.from_numpy(load_inputs(run, ids, card.prep))
    with torch.no_grad():
        p_ad = torch.softmax(model(x), dim=1)[:, 0].numpy()
    np.testing.assert_allclose(pred["p_ad"].to_numpy()[:2], p_ad, rtol=1e-4, atol=1e-6)
    result = runner.invoke(app, ["explain", str(run), "-m", "gradient,lrp-b0", "--quiet"])
    assert result.exit_code == 0, result.output
    import nibabel as nib

    for method in ("gradient", "lrp-b0"):
        stored = np.asarray(nib.load(run / "heatmaps" / method / f"{ids[0]}.nii.gz").dataobj)
        expected = explain(model, x[:1], method, target=0)[0, 0].detach().numpy()
        np.testing.assert_allclose(stored, expected, rtol=1e-3,
                                   atol=1e-5 * np.abs(expected).max())

    result = runner.invoke(app, ["analyze", str(run), "--no-sanity", "--no-costs",
                                 "--faithfulness-subjects", "1", "--faithfulness-steps", "2"])
    assert result.exit_code == 0, result.output
    curves = pd.read_csv(run / "analysis" / "faithfulness.tsv", sep="\t",
                         dtype={"scan_id": str})
    first = curves[(curves["step"] == 0) & (curves["method"] == "gradient")].iloc[0]
    assert first["p_ad"] == pytest.approx(
        float(pred.set_index("scan_id").loc[first["scan_id"], "p_ad"]), abs=1e-4)
    result = runner.invoke(app, ["report", str(run), "--no-cards", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (run / "report" / "index.html").is_file()


def test_user_factory_with_splits(tmp_path, cohort, tiny_module):
    from mynets import net

    torch.manual_seed(0)
    weights = tmp_path / "net.pt"
    torch.save(net(GRID.shape).state_dict(), weights)
    splits = tmp_path / "splits.tsv"
    pids = sorted(p.name for p in cohort.glob("sub-*"))
    pd.DataFrame({"participant_id": pids,
                  "split": ["train", "train", "test", "test"] * 2}).to_csv(
        splits, sep="\t", index=False)
    result = import_model(cohort, tmp_path / "run", tiny_module, weights, classes="CN,AD",
                          resolution=6, splits=splits, progress=False)
    assert result.target_class == 1 and result.classes == ["HC", "AD"]
    assert result.metrics["test"]["n"] == 4 and "val" not in result.metrics
    card = read_card(tmp_path / "run")
    assert card.architecture == "mynets:net" and "imports mynets" in card.training["code"]
    model, _ = load_model(tmp_path / "run")  # imports the user's module again
    assert type(model).__name__ == "Sequential"
    pred = pd.read_csv(tmp_path / "run" / "predictions.tsv", sep="\t")
    assert (pred["split"] == "test").sum() == 4
    written = pd.read_csv(tmp_path / "run" / "splits.tsv", sep="\t")
    assert set(written["diagnosis"]) == {"HC", "AD"}
    with pytest.raises(Exception, match="already holds a model"):
        import_model(cohort, tmp_path / "run", tiny_module, weights, resolution=6,
                     progress=False)


def _args(cohort, out, *extra):
    return ["import-model", str(cohort), "--out", str(out), "--resolution", "6", *extra]


def test_bad_input_stops_with_one_line(tmp_path, cohort, tiny_module, monai_weights):
    from mynets import net

    weights = tmp_path / "net.pt"
    torch.save(net(GRID.shape).state_dict(), weights)
    out = tmp_path / "run"
    ok = ["--weights", str(weights)]
    line = one_line_error(_args(cohort, out, "--arch", "densenet-9000", *ok))
    assert "unknown architecture 'densenet-9000'" in line
    line = one_line_error(_args(cohort, out, "--arch", "no_such_module_xyz:net", *ok))
    assert "cannot import the architecture 'no_such_module_xyz:net'" in line
    assert "PYTHONPATH" in line
    line = one_line_error(_args(cohort, out, "--arch", "mynets:nothing", *ok))
    assert "has no function 'nothing'" in line
    line = one_line_error(_args(cohort, out, "--arch", "resnet10", *ok))
    assert "do not fit the 'resnet10' architecture" in line
    assert "first 'conv1.weight'" in line and "first '0.weight'" in line
    line = one_line_error(_args(cohort, out, "--arch", tiny_module, "--model-kwargs",
                                '{"width": 3}', *ok))
    assert "'0.weight' has shape (2, 1, 3, 3, 3) in the file but (3, 1, 3, 3, 3)" in line
    line = one_line_error(_args(cohort, out, "--arch", tiny_module, "--classes", "HC,MCI",
                                *ok))
    assert "does not name AD" in line
    line = one_line_error(_args(cohort, out, "--arch", tiny_module, "--classes", "AD,AD",
                                *ok))
    assert "names AD twice" in line
    line = one_line_error(_args(cohort, out, "--arch", tiny_module, "--classes", "AD,MCI",
                                *ok))
    assert "'MCI' is not a healthy-control label" in line
    line = one_line_error(_args(cohort, out, "--arch", "paper", "--weights",
                                str(monai_weights)))
    assert "too small" in line and "resolution" in line
    torch.save(net(GRID.shape), tmp_path / "whole.pt")  # a pickled module, not weights
    line = one_line_error(_args(cohort, out, "--arch", tiny_module, "--weights",
                                str(tmp_path / "whole.pt")))
    assert "cannot read the weights file" in line and "state_dict()" in line
    line = one_line_error(_args(cohort, out, "--arch", tiny_module, "--weights",
                                str(tmp_path / "missing.pt")))
    assert "weights file not found" in line
    assert not out.exists()
