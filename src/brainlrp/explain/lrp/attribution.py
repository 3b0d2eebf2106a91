"""One call from a model and a batch of scans to input relevance: :func:`lrp`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain._state import (
    check_start,
    eval_mode,
    exact_float32,
    frozen_parameters,
    prepare_input,
    resolve_target,
)
from brainlrp.explain.lrp.composites import Composite, get_composite
from brainlrp.explain.lrp.core import check_supported


@dataclass(frozen=True)
class LRPResult:
    """Relevance of a batch and the forward pass it came from.

    Attributes
    ----------
    relevance : Tensor
        Input relevance, shaped like the input, on the model's device.
    logits : Tensor
        ``(batch, n_classes)`` model outputs.
    probabilities : Tensor
        ``softmax(logits)``, e.g. ``probabilities[:, 1]`` is the AD probability.
    target : Tensor
        ``(batch,)`` class explained per sample.
    """

    relevance: Tensor
    logits: Tensor
    probabilities: Tensor
    target: Tensor


def lrp(model: nn.Module, x: Tensor, composite: str | Composite = "paper",
        target: int | Sequence[int] | Tensor = 1, start: str = "probability",
        **params) -> LRPResult:
    """Layer-wise relevance propagation of ``model``'s decision for ``target``.

    Relevance starts at the target class only: at its softmax probability (the
    paper's choice) or at its logit, and flows back to the input in one backward
    pass. The model is run in eval mode and comes back exactly as it was (modes,
    parameters, ``requires_grad`` flags, forward methods), even on error.

    Parameters
    ----------
    model : nn.Module
        A network of supported layers returning ``(batch, n_classes)`` logits.
    x : Tensor
        ``(batch, channel, x, y, z)`` input; moved to the model's device and dtype.
    composite : str or Composite
        A registered composite name (see
        :func:`~brainlrp.explain.lrp.available_composites`) or a built composite.
    target : int or sequence of int or Tensor
        Class to explain, for all samples or one per sample (1 = AD).
    start : {"probability", "logit"}
        Where relevance starts.
    **params
        Parameters of a named composite, e.g. ``beta=0.5`` for ``"paper"``.

    Returns
    -------
    LRPResult

    Raises
    ------
    BrainLRPError
        For an unsupported layer, an unknown composite or parameter, a bad input
        or a target out of range.

    Examples
    --------
    >>> result = lrp(model, scans, "paper", target=1, beta=0.0)  # doctest: +SKIP
    >>> heatmap, p_ad = result.relevance, result.probabilities[:, 1]  # doctest: +SKIP
    """
    check_start(start)
    if isinstance(composite, Composite):
        if params:
            raise BrainLRPError(
                f"parameters {', '.join(sorted(params))} apply to a composite name only",
                "build the Composite with them instead")
    else:
        composite = get_composite(composite, **params)
    check_supported(model)  # before touching the model's state
    x = prepare_input(model, x)
    with (eval_mode(model), frozen_parameters(model), exact_float32(x.device),
          torch.enable_grad(), composite.context(model)):
        x = x.requires_grad_(True)
        logits = model(x)
        if logits.ndim != 2:
            raise BrainLRPError(
                f"LRP needs a model that returns (batch, n_classes) logits, got shape "
                f"{tuple(logits.shape)}", "end the model with a Linear layer")
        batch, n_classes = logits.shape
        tgt = resolve_target(target, batch, n_classes, logits.device)
        rows = torch.arange(batch, device=logits.device)
        probabilities = torch.softmax(logits.detach(), dim=1)
        source = probabilities if start == "probability" else logits.detach()
        initial = torch.zeros_like(logits)
        initial[rows, tgt] = source[rows, tgt]
        (relevance,) = torch.autograd.grad(logits, x, initial)
    return LRPResult(relevance.detach(), logits.detach(), probabilities, tgt)


__all__ = ["LRPResult", "lrp"]
