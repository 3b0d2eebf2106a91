"""Model registry: architectures by name, built for a given input grid.

An architecture is a registered name (``paper``, ``tiny``, MONAI's ``densenet121``,
``resnet10``, ``resnet18``; ``monai-bundle``, a MONAI bundle's ``network_def`` given as
its config; ``clinicadl``, a ClinicaDL network class by name) or ``module:factory``, a
function the user points at. A
``module:factory`` name imports that module, i.e. runs code the user named; model
cards store the name, so loading such a run imports it again (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.models.clinicadl_nets import clinicadl_network
from brainlrp.models.monai_nets import bundle_network, densenet121, resnet10, resnet18
from brainlrp.models.paper import ConvBlockCNN, paper_cnn, tiny_cnn

MODELS: dict[str, Callable[..., nn.Module]] = {
    "paper": paper_cnn,
    "tiny": tiny_cnn,
    "densenet121": densenet121,
    "resnet10": resnet10,
    "resnet18": resnet18,
    # A MONAI bundle's network_def, kwargs {"config": {...}} (brainlrp.training.bundle).
    "monai-bundle": bundle_network,
    # ClinicaDL's own network class, kwargs {"network": "Conv5_FC3", ...}
    # (brainlrp.training.maps; needs ClinicaDL installed).
    "clinicadl": clinicadl_network,
}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add an architecture: ``factory(input_shape, **kwargs) -> nn.Module``."""
    MODELS[name] = factory


def get_factory(name: str) -> Callable[..., nn.Module]:
    """The factory of a registered name, or of ``module:factory`` (imported now).

    Raises
    ------
    BrainLRPError
        For an unknown name, a module that cannot be imported or a factory that is
        not in it or not callable.
    """
    if name in MODELS:
        return MODELS[name]
    if ":" not in name:
        raise BrainLRPError(f"unknown architecture {name!r}",
                            f"choose one of {', '.join(MODELS)}, or name your own as "
                            "module:factory")
    import importlib

    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing the user's module
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise BrainLRPError(f"cannot import the architecture {name!r} ({reason})",
                            f"make {module_name!r} importable: put its folder on PYTHONPATH "
                            "or install it") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
    if not callable(factory):
        raise BrainLRPError(f"{module_name} has no function {attr!r} (architecture {name!r})",
                            "name a function factory(input_shape, **kwargs) -> nn.Module")
    return factory


def build_model(name: str, input_shape: Sequence[int], **kwargs) -> nn.Module:
    """Build the architecture ``name`` (registered or ``module:factory``) for a grid of
    ``input_shape``."""
    model = get_factory(name)(tuple(input_shape), **kwargs)
    if not isinstance(model, nn.Module):
        raise BrainLRPError(f"the architecture {name!r} returned {type(model).__name__}, "
                            "not a torch.nn.Module",
                            "the factory must return the network")
    return model


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
    factory = get_factory(name)  # an unknown name or failed import is not a grid problem
    with torch.device("meta"):
        try:
            model = factory(shape, **kwargs)
        except BrainLRPError as exc:
            raise BrainLRPError(f"{exc.message} (architecture {name!r})",
                                "use a finer --resolution (2 or 1 mm), or --arch tiny for "
                                "very coarse grids") from None
        except (TypeError, ValueError) as exc:
            raise BrainLRPError(f"cannot build the {name!r} architecture with arguments "
                                f"{kwargs} ({' '.join(str(exc).split())[:120]})",
                                "check the architecture's keyword arguments") from None
        if not isinstance(model, nn.Module):
            raise BrainLRPError(f"the architecture {name!r} returned {type(model).__name__}, "
                                "not a torch.nn.Module", "the factory must return the network")
        try:
            # Two scans, as in training: BatchNorm cannot take one value per channel.
            out = model(torch.empty(2, 1, *shape))
        except (RuntimeError, ValueError, IndexError) as exc:
            reason = " ".join(str(exc).split())[:120]
            raise BrainLRPError(f"the {grid} grid does not fit the {name!r} architecture "
                                f"({reason})",
                                "use a finer --resolution (2 or 1 mm) or another --arch"
                                ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 2):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BrainLRPError(f"the {name!r} architecture gives outputs of shape {got} for "
                            "two scans, not (2, 2)",
                            "brainlrp needs one logit per class (HC, AD)")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MODELS", "ConvBlockCNN", "build_model", "check_grid_fits", "count_parameters",
           "get_factory", "register_model"]
