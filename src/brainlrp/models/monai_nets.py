"""MONAI's 3D networks with one input channel and two classes (HC, AD).

Each factory builds exactly what ``monai.networks.nets`` builds with the arguments
below, so a state dict trained elsewhere with MONAI's defaults loads unchanged
(``brainlrp import-model --arch densenet121``). One difference that changes no
number: ReLUs are not in place, so backward hooks (Captum's guided backprop, the
LRP engine) see every activation. Keyword arguments override the defaults, e.g.
``{"conv1_t_stride": 2}`` for a ResNet that halves the grid in its first layer.
:func:`bundle_network` builds a MONAI bundle's own ``network_def``.

MONAI is imported inside the factories: ``import brainlrp.models`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

RELU = ("relu", {"inplace": False})


def _check_shape(input_shape: Sequence[int]) -> None:
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape must have 3 sizes, got {tuple(input_shape)}")


def _not_in_place(model: nn.Module) -> nn.Module:
    # MONAI's residual blocks build their ReLU in place whatever ``act`` says.
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model


def densenet121(input_shape: Sequence[int], **overrides) -> nn.Module:
    """``monai.networks.nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)``.

    It pools globally before its classifier, so any grid from about 32 voxels a side
    fits; ``input_shape`` is checked for three sizes only.
    """
    from monai.networks.nets import DenseNet121

    _check_shape(input_shape)
    params = dict(spatial_dims=3, in_channels=1, out_channels=2, act=RELU)
    params.update(overrides)
    return _not_in_place(DenseNet121(**params))


def _resnet(name: str, input_shape: Sequence[int], overrides: dict) -> nn.Module:
    from monai.networks import nets

    _check_shape(input_shape)
    params = dict(spatial_dims=3, n_input_channels=1, num_classes=2, act=RELU)
    params.update(overrides)
    return _not_in_place(getattr(nets, name)(**params))


def resnet10(input_shape: Sequence[int], **overrides) -> nn.Module:
    """``monai.networks.nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=2)``."""
    return _resnet("resnet10", input_shape, overrides)


def resnet18(input_shape: Sequence[int], **overrides) -> nn.Module:
    """``monai.networks.nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2)``."""
    return _resnet("resnet18", input_shape, overrides)


#: The id of the network in a MONAI bundle's config (the bundle specification's).
BUNDLE_NETWORK_ID = "network_def"


def bundle_network(input_shape: Sequence[int], config: dict,
                   network_id: str = BUNDLE_NETWORK_ID) -> nn.Module:
    """The network of a MONAI bundle: ``config[network_id]`` built by MONAI's bundle
    parser (``ConfigParser(config).get_parsed_content(network_id)``).

    ``config`` holds ``network_def`` and every item it refers to (``@id``), so a run
    rebuilds the network without the bundle's folder (:mod:`brainlrp.training.bundle`
    makes it). Building it imports the classes its ``_target_`` names and runs its
    ``$`` expressions: a config is code. ``input_shape`` is checked for three sizes only;
    whether the network takes the grid is :func:`brainlrp.models.check_grid_fits`'s.

    Raises
    ------
    BrainLRPError
        When the parser cannot build the network or it is not a ``torch.nn.Module``.
    """
    import copy

    from monai.bundle import ConfigParser

    from brainlrp.errors import BrainLRPError

    _check_shape(input_shape)
    try:
        # The parser resolves references in place: keep the caller's config intact.
        model = ConfigParser(copy.deepcopy(config)).get_parsed_content(network_id)
    except Exception as exc:  # any error of the parser, an import or the class itself
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise BrainLRPError(f"MONAI cannot build the bundle's {network_id} ({reason})",
                            f"fix {network_id} in the bundle's configs/inference.json "
                            "(its _target_ and arguments)") from None
    if not isinstance(model, nn.Module):
        raise BrainLRPError(f"the bundle's {network_id} builds {type(model).__name__}, not "
                            "a torch.nn.Module",
                            f"{network_id} must name the network class in _target_")
    return _not_in_place(model)


__all__ = ["BUNDLE_NETWORK_ID", "bundle_network", "densenet121", "resnet10", "resnet18"]
