"""Model registry: architectures by name, built for a given input grid."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.models.paper import ConvBlockCNN, paper_cnn, tiny_cnn

MODELS: dict[str, Callable[..., nn.Module]] = {
    "paper": paper_cnn,
    "tiny": tiny_cnn,
}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add an architecture: ``factory(input_shape, **kwargs) -> nn.Module``."""
    MODELS[name] = factory


def build_model(name: str, input_shape: Sequence[int], **kwargs) -> nn.Module:
    """Build the architecture ``name`` for a grid of ``input_shape``."""
    if name not in MODELS:
        raise BrainLRPError(f"unknown architecture {name!r}",
                            f"choose one of {', '.join(MODELS)}")
    return MODELS[name](input_shape, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODELS", "ConvBlockCNN", "build_model", "count_parameters", "register_model"]
