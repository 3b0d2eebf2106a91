"""MONAI's 3D networks with one input channel and two classes (HC, AD).

Each factory builds exactly what ``monai.networks.nets`` builds with the arguments
below, so a state dict trained elsewhere with MONAI's defaults loads unchanged
(``brainlrp import-model --arch densenet121``). One difference that changes no
number: ReLUs are not in place, so backward hooks (Captum's guided backprop, the
LRP engine) see every activation. Keyword arguments override the defaults, e.g.
``{"conv1_t_stride": 2}`` for a ResNet that halves the grid in its first layer.

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


__all__ = ["densenet121", "resnet10", "resnet18"]
