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


def check_grid_fits(name: str, input_shape: Sequence[int], **kwargs) -> None:
    """Refuse a grid the architecture ``name`` cannot take, before any work is done.

    The model is built and run once on PyTorch's meta device (shapes only: no
    memory, no arithmetic), so any architecture is checked the same way.

    Raises
    ------
    BrainLRPError
        Naming the grid, the architecture and the fix.
    """
    import torch

    shape = tuple(int(s) for s in input_shape)
    grid = " x ".join(map(str, shape))
    try:
        with torch.device("meta"):
            model = build_model(name, shape, **kwargs)
            model(torch.empty(1, 1, *shape))
    except BrainLRPError as exc:
        raise BrainLRPError(f"{exc.message} (architecture {name!r})",
                            "use a finer --resolution (2 or 1 mm), or --arch tiny for very "
                            "coarse grids") from None
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[:120]
        raise BrainLRPError(f"the {grid} grid does not fit the {name!r} architecture ({reason})",
                            "use a finer --resolution (2 or 1 mm) or another --arch") from None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODELS", "ConvBlockCNN", "build_model", "check_grid_fits", "count_parameters",
           "register_model"]
