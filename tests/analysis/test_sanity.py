"""Cascading randomisation: stages, determinism, and the given model left untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainlrp.analysis.sanity import SANITY_COLUMNS, cascading_randomization, weight_layers
from brainlrp.models import build_model
from tests.analysis.conftest import grad_explain


@pytest.fixture(scope="module")
def tiny(grid6):
    torch.manual_seed(0)
    model = build_model("tiny", grid6.shape).eval()
    x = np.random.default_rng(0).random((1, 1, *grid6.shape)).astype(np.float32)
    return model, x


def test_cascade_randomises_from_the_top(tiny, grid6):
    model, x = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_state = torch.random.get_rng_state()
    table = cascading_randomization(model, x, grad_explain, ["gradient"], n_voxels=3000,
                                    scan_ids=["s"], seed=0)
    assert tuple(table.columns) == SANITY_COLUMNS
    layers = [name for name, _ in weight_layers(model)]
    assert len(layers) == 5  # three convolutions, two linear layers
    assert table["stage"].tolist() == [1, 2, 3, 4, 5]
    assert table["layer"].tolist() == layers[::-1]  # classifier's last layer first
    assert table["spearman"].between(-1, 1).all()
    # Randomising everything destroys the gradient's structure.
    assert table["spearman"].iloc[-1] < 0.9
    # The caller's model and the global random stream are untouched.
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert not model.training
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    again = cascading_randomization(model, x, grad_explain, ["gradient"], n_voxels=3000,
                                    scan_ids=["s"], seed=0)
    np.testing.assert_array_equal(table["spearman"], again["spearman"])


def test_model_independent_map_fails_the_check(tiny):
    model, x = tiny

    def edge_detector(model, x, method):  # ignores the model, like a poor saliency method
        return x * 2

    table = cascading_randomization(model, x, edge_detector, ["edges"], relevance={
        "edges": "signed"}, n_voxels=2000)
    np.testing.assert_allclose(table["spearman"], 1.0)
