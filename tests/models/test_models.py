"""The paper's network: shapes and parameter count, registry, grids too small."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.models import MODELS, build_model, count_parameters, register_model


def test_paper_network_at_the_papers_grid():
    model = build_model("paper", (193, 229, 193))
    assert model.n_flat == 5120
    assert count_parameters(model) == 728_898
    convs = [m for m in model.features if isinstance(m, nn.Conv3d)]
    assert [tuple(c.weight.shape) for c in convs] == [
        (8, 1, 3, 3, 3), (16, 8, 3, 3, 3), (32, 16, 3, 3, 3), (64, 32, 3, 3, 3)]
    assert all(c.padding == (0, 0, 0) for c in convs)
    pools = [m.kernel_size for m in model.features if isinstance(m, nn.MaxPool3d)]
    assert pools == [2, 3, 2, 3]
    assert sum(isinstance(m, nn.BatchNorm3d) for m in model.features) == 4
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [tuple(lin.weight.shape) for lin in linears] == [(128, 5120), (2, 128)]
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.4, 0.4]


def test_flattened_size_follows_the_grid():
    model = build_model("paper", (97, 115, 97)).eval()
    assert model.n_flat == 64 * 1 * 2 * 1
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 97, 115, 97)).shape == (1, 2)


def test_grid_too_small_names_the_smallest_shape():
    with pytest.raises(BrainLRPError, match="at least 78 x 78 x 78"):
        build_model("paper", (60, 90, 80))
    build_model("paper", (78, 78, 78))


def test_registry():
    assert {"paper", "tiny"} <= set(MODELS)
    register_model("linear-test", lambda shape: nn.Sequential(nn.Flatten(),
                                                             nn.Linear(shape[0], 2)))
    try:
        assert isinstance(build_model("linear-test", (3, 1, 1)), nn.Sequential)
    finally:
        MODELS.pop("linear-test")
    with pytest.raises(BrainLRPError, match="unknown architecture"):
        build_model("resnet-9000", (8, 8, 8))
