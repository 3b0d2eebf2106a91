"""Fixtures for the explanation tests: seeded models with non-trivial BatchNorm."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from brainlrp.models import build_model

#: Distinct sizes per axis, so a swapped axis fails loudly.
TINY_SHAPE = (24, 28, 26)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random running statistics, scale and shift, as after training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model


def seeded_model(name: str, shape: tuple[int, int, int], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_batchnorm(build_model(name, shape), seed).eval()


def brain_like(shape: tuple[int, ...], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Values in [0, 1] inside an ellipsoid, exact zeros outside (like a masked scan)."""
    gen = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1, 1, n) for n in shape]
    grid = torch.meshgrid(*axes, indexing="ij")
    inside = sum(g ** 2 for g in grid) < 0.8
    x = torch.rand(batch, 1, *shape, generator=gen)
    return (x * inside).float()


@pytest.fixture
def tiny_model() -> nn.Module:
    return seeded_model("tiny", TINY_SHAPE)


@pytest.fixture
def tiny_input() -> torch.Tensor:
    return brain_like(TINY_SHAPE, batch=2)
