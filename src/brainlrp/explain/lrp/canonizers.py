"""Canonizers: temporary rewrites of a model into an LRP-friendly equivalent.

A canonizer changes how the model computes, not what it computes: the outputs
stay the same (up to float rounding). Each one works as a ``with`` block that
puts the original parameter objects back on exit, even when the block raises,
so the user's model (and any optimizer holding its parameters) is never changed
for good.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator

import torch
from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain.lrp.core import BATCHNORM_TYPES, CONV_TYPES


class Canonizer(ABC):
    """A model rewrite applied for the duration of a ``with`` block."""

    @abstractmethod
    def apply(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        """Rewrite ``model`` on entry, restore it on exit (even on error)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _channels_out(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


class MergeBatchNorm(Canonizer):
    """Merge each BatchNorm into the Linear/ConvNd layer right before it.

    In eval mode BatchNorm is an affine map per channel,
    ``y = gamma (x - mean) / sqrt(var + eps) + beta``, so it folds into the
    preceding layer's weights and bias. Rules on the merged layer then see the
    network as it really computes, where the paper's mode simply passes relevance
    through BatchNorm. The BatchNorm itself becomes the identity while merged.

    Pairs are found as consecutive children of ``nn.Sequential`` containers, the
    only place where "right before" is certain without tracing the forward.

    Parameters
    ----------
    strict : bool
        Raise if a BatchNorm cannot be merged (rather than leave it unchanged).
    """

    def __init__(self, strict: bool = True):
        self.strict = bool(strict)

    @staticmethod
    def pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
        """``(layer, batchnorm)`` pairs that can be merged."""
        found = []
        for container in model.modules():
            if not isinstance(container, nn.Sequential):
                continue
            children = list(container.children())
            for layer, norm in zip(children, children[1:], strict=False):
                if (isinstance(layer, (nn.Linear, *CONV_TYPES))
                        and isinstance(norm, BATCHNORM_TYPES)
                        and _channels_out(layer) == norm.num_features):
                    found.append((layer, norm))
        return found

    def _check(self, model: nn.Module, pairs: list[tuple[nn.Module, nn.Module]]) -> None:
        merged = {id(norm) for _, norm in pairs}
        for name, norm in model.named_modules():
            if not isinstance(norm, BATCHNORM_TYPES):
                continue
            if id(norm) not in merged and self.strict:
                raise BrainLRPError(
                    f"cannot merge the BatchNorm {name!r}: it does not directly follow a "
                    "Linear/Conv layer with as many channels inside an nn.Sequential",
                    "use the 'paper' composite, which passes relevance through BatchNorm")
            if id(norm) in merged and norm.training:
                raise BrainLRPError(
                    f"cannot merge the BatchNorm {name!r} in training mode: it then uses "
                    "batch statistics", "call model.eval() first (explain() does this)")
            if id(norm) in merged and norm.running_mean is None:
                raise BrainLRPError(
                    f"cannot merge the BatchNorm {name!r}: it keeps no running statistics "
                    "(track_running_stats=False)", "use the 'paper' composite instead")

    @contextlib.contextmanager
    def apply(self, model: nn.Module) -> Iterator[None]:
        """Merge every pair on entry; put the original parameters back on exit."""
        pairs = self.pairs(model)
        self._check(model, pairs)
        saved: list[tuple[nn.Module, dict[str, object]]] = []
        try:
            for layer, norm in pairs:
                saved.append((layer, {"weight": layer.weight, "bias": layer.bias}))
                saved.append((norm, {k: getattr(norm, k) for k in
                                     ("weight", "bias", "running_mean", "running_var", "eps")}))
                weight, bias = _merged(layer, norm)
                layer.weight = nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
                layer.bias = nn.Parameter(bias, requires_grad=layer.weight.requires_grad)
                _make_identity(norm)
            yield
        finally:
            for module, attributes in reversed(saved):
                for key, value in attributes.items():
                    setattr(module, key, value)


@torch.no_grad()
def _merged(layer: nn.Module, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``norm(layer(x))`` as one layer."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    weight = layer.weight * scale.reshape(-1, *([1] * (layer.weight.ndim - 1)))
    bias = shift if layer.bias is None else layer.bias * scale + shift
    return weight.detach().clone(), bias.detach().clone()


@torch.no_grad()
def _make_identity(norm: nn.Module) -> None:
    """Make an eval-mode BatchNorm compute ``y = x`` (new tensors, originals kept).

    ``eps`` keeps its positive value (CUDA's batch_norm rejects 0) and the variance
    becomes ``1 - eps``, so ``var + eps`` rounds to 1 (at most one float32 ulp off).
    """
    ref = norm.running_mean
    norm.running_mean = torch.zeros_like(ref)
    norm.running_var = torch.full_like(ref, 1.0 - norm.eps)
    if norm.weight is not None:
        norm.weight = nn.Parameter(torch.ones_like(ref), requires_grad=False)
    if norm.bias is not None:
        norm.bias = nn.Parameter(torch.zeros_like(ref), requires_grad=False)


__all__ = ["Canonizer", "MergeBatchNorm"]
