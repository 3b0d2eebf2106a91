"""Modules that make merges of tensors visible to LRP rules.

A residual addition or a concatenation in a model's ``forward`` is an operation,
not a module, so no rule can be attached to it. The canonizer
:class:`~brainlrp.explain.lrp.canonizers.ExposeMerges` routes such operations
through these modules for the duration of an explanation (as zennit's ``Sum``
layer does for ResNets), and composites give them rules
(:class:`~brainlrp.explain.lrp.rules.SumShare`,
:class:`~brainlrp.explain.lrp.rules.Split`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Sum(nn.Module):
    """``y = x_1 + x_2 + ...`` (broadcasting like ``+``)."""

    def forward(self, *xs: Tensor) -> Tensor:
        total = xs[0]
        for term in xs[1:]:
            total = total + term
        return total


class Concat(nn.Module):
    """``y = torch.cat(xs, dim)``.

    Parameters
    ----------
    dim : int
        Dimension along which the inputs are joined.
    """

    def __init__(self, dim: int = 0):
        super().__init__()
        self.dim = int(dim)

    def forward(self, *xs: Tensor) -> Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


__all__ = ["Concat", "Sum"]
