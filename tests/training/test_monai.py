"""MONAI architectures: registry, sizes, grids, and a tiny train -> explain -> analyze ->
report run for each."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from brainlrp.cli import app
from brainlrp.data.grid import Grid
from brainlrp.errors import BrainLRPError
from brainlrp.models import MODELS, build_model, check_grid_fits, count_parameters
from brainlrp.training import load_model
from tests.conftest import make_bids_cohort, one_line_error

runner = CliRunner()
# 7 + 7 subjects, 2 + 2 test, 2 + 2 val: 6 training scans, so no batch of 4 holds one
# scan (DenseNet121's last block is 1 x 1 x 1 at 6 mm: BatchNorm needs two values).
TINY = ["--resolution", "6", "--epochs", "1", "--test", "2", "--val", "2",
        "--early-stopping-start", "0", "--quiet"]


def test_monai_architectures_are_registered_with_their_exact_sizes():
    from monai.networks.nets import DenseNet121, resnet10

    sizes = {"densenet121": 11_244_674, "resnet10": 14_357_442, "resnet18": 33_161_922}
    assert set(sizes) <= set(MODELS)
    for name, n in sizes.items():
        model = build_model(name, (33, 39, 33))
        assert count_parameters(model) == n
    # The same state dict keys and shapes as MONAI's own network: weights trained with
    # MONAI load unchanged.
    ours = build_model("resnet10", (33, 39, 33)).state_dict()
    theirs = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    ours = build_model("densenet121", (33, 39, 33)).state_dict()
    theirs = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert not any(getattr(m, "inplace", False) for m in build_model("resnet10", (8, 8, 8))
                   .modules())


def test_model_kwargs_reach_monai():
    model = build_model("resnet10", (33, 39, 33), conv1_t_stride=2)
    assert model.conv1.stride == (2, 2, 2)
    with pytest.raises(BrainLRPError, match="cannot build the 'resnet10' architecture"):
        check_grid_fits("resnet10", (33, 39, 33), no_such_argument=1)


def test_grids_the_monai_networks_take():
    for name in ("densenet121", "resnet10", "resnet18"):
        check_grid_fits(name, Grid.from_resolution(6).shape)
    with pytest.raises(BrainLRPError, match="8 x 8 x 8 grid does not fit the 'densenet121'"):
        check_grid_fits("densenet121", (8, 8, 8))


def test_unknown_architecture_is_not_called_a_grid_problem(tmp_path):
    line = one_line_error(["train", str(tmp_path), "--out", str(tmp_path / "run"),
                           "--arch", "densenet-9000", "--resolution", "6"])
    assert "unknown architecture 'densenet-9000'" in line and "resolution" not in line
    line = one_line_error(["train", str(tmp_path), "--out", str(tmp_path / "run"),
                           "--arch", "resnet10", "--model-kwargs", "[1]"])
    assert "--model-kwargs" in line


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_bids_cohort(tmp_path_factory.mktemp("cohort"), Grid.from_resolution(6), 7, 7)


@pytest.mark.parametrize("arch", ["densenet121", "resnet10"])
def test_train_explain_analyze_report(tmp_path, cohort, arch):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(cohort), "--out", str(run), "--arch", arch,
                                 *TINY])
    assert result.exit_code == 0, result.output
    model, card = load_model(run)
    assert card.architecture == arch and card.target_class == 1
    assert type(model).__module__.startswith("monai.")
    pred = pd.read_csv(run / "predictions.tsv", sep="\t")
    assert len(pred) == 14 and pred["p_ad"].between(0, 1).all()
    for args in (["explain", str(run), "-m", "gradient,lrp-b0", "--quiet"],
                 ["analyze", str(run), "--no-faithfulness", "--no-sanity", "--no-costs"],
                 ["report", str(run), "--no-cards", "--quiet"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    for method in ("gradient", "lrp-b0"):
        assert len(list((run / "heatmaps" / method).glob("*.nii.gz"))) == 4
    assert (run / "report" / "index.html").is_file()
    assert json.loads((run / "run.json").read_text())["stages"]["train"]["config"]["arch"] \
        == arch


def test_channels_last_forward_and_backward_for_monai():
    from brainlrp.training.module import ADClassifier

    module = ADClassifier("resnet10", (33, 39, 33))  # channels-last 3D weights
    x = torch.rand(2, 1, 33, 39, 33)
    expected = build_model("resnet10", (33, 39, 33))
    expected.load_state_dict(module.model.state_dict())
    torch.testing.assert_close(module(x), expected(x), rtol=1e-4, atol=1e-5)
    module.loss(module(x), torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in module.parameters() if p.requires_grad)
