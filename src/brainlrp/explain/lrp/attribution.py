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
    prepare_reference,
    resolve_target,
)
from brainlrp.explain.lrp.composites import Composite, get_composite
from brainlrp.explain.lrp.core import check_graph

#: Conservation tolerance: relative to the explained output, plus a share of the
#: relevance's absolute sum for float32 rounding where positive and negative
#: relevance cancel (beta > 0).
CONSERVATION_RTOL = 1e-3
CONSERVATION_MAGNITUDE_RTOL = 1e-4
#: A reference composite explains ``f(x) - f(ref)``, a difference of two outputs that
#: can be far smaller than the outputs themselves; its relevance passes through
#: differences of activations whose float32 rounding and stabilisers scale with the
#: activations, not with their difference. Its tolerance adds this share of
#: ``|f(x)| + |f(ref)|`` (a missing rule still shows as a loss of the order of the
#: difference itself).
CONSERVATION_REFERENCE_RTOL = 1e-3


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
        reference: Tensor | None = None, **params) -> LRPResult:
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
    reference : Tensor, optional
        For a reference composite (``composite.reference``, e.g. ``"reference"``)
        only, and required there: the image each scan is compared with,
        ``(1 or batch, channel, x, y, z)``. The forward pass then runs on the
        stacked batch ``(scans, references)`` and relevance starts at the
        difference of the target's output, ``p_t(x) - p_t(ref)`` or
        ``f_t(x) - f_t(ref)``, placed on the target logit. The probability start is
        the rescale rule of ``p_t`` on the target logit alone, as the other
        composites start at the target logit: it equals the logit start times
        ``dp_t / df_t``.
    **params
        Parameters of a named composite, e.g. ``beta=0.5`` for ``"paper"``.

    Returns
    -------
    LRPResult

    Raises
    ------
    BrainLRPError
        For an unsupported layer, an operation between layers that has no rule
        (such as an addition the fx tracer could not see), an unknown composite or
        parameter, a bad input or a target out of range; and when a composite that
        conserves relevance on this network (see
        :meth:`~brainlrp.explain.lrp.Composite.conserves`) does not.

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
    if reference is not None and not composite.reference:
        raise BrainLRPError(f"the composite {composite.name!r} takes no reference image",
                            "use the 'reference' composite, or leave reference out")
    composite.check(model)  # before touching the model's state
    x = prepare_input(model, x)
    batch = x.shape[0]
    if composite.reference:
        x = torch.cat([x, prepare_reference(model, x, reference)])
    with (eval_mode(model), frozen_parameters(model), exact_float32(x.device),
          torch.enable_grad(), composite.context(model) as rules):
        x = x.requires_grad_(True)
        logits = model(x)
        check_graph(logits, model)
        if logits.ndim != 2:
            raise BrainLRPError(
                f"LRP needs a model that returns (batch, n_classes) logits, got shape "
                f"{tuple(logits.shape)}", "end the model with a Linear layer")
        n_classes = logits.shape[1]
        tgt = resolve_target(target, batch, n_classes, logits.device)
        rows = torch.arange(batch, device=logits.device)
        probabilities = torch.softmax(logits.detach(), dim=1)
        source = probabilities if start == "probability" else logits.detach()
        initial = torch.zeros_like(logits)
        explained = source[rows, tgt]
        scale = None
        if composite.reference:
            scale = explained.abs() + source[rows + batch, tgt].abs()
            explained = explained - source[rows + batch, tgt]
        initial[rows, tgt] = explained
        (relevance,) = torch.autograd.grad(logits, x, initial)
        if composite.conserves(model, rules):
            _check_conservation(relevance[:batch], explained, composite, scale)
    return LRPResult(relevance[:batch].detach(), logits[:batch].detach(),
                     probabilities[:batch], tgt)


def _check_conservation(relevance: Tensor, explained: Tensor, composite: Composite,
                        scale: Tensor | None = None) -> None:
    """Raise unless each sample's input relevance sums to its explained output
    (``scale``: ``|f(x)| + |f(ref)|`` of a reference composite)."""
    dims = tuple(range(1, relevance.ndim))
    total = relevance.double().sum(dims)
    explained = explained.double()
    tolerance = (CONSERVATION_RTOL * explained.abs()
                 + CONSERVATION_MAGNITUDE_RTOL * relevance.double().abs().sum(dims)
                 + torch.finfo(torch.float32).tiny)
    if scale is not None:
        tolerance = tolerance + CONSERVATION_REFERENCE_RTOL * scale.double()
    bad = ((total - explained).abs() > tolerance).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise BrainLRPError(
            f"LRP lost or created relevance: the composite {composite.name!r} conserves it "
            f"on this network, yet the input relevance of sample {i} sums to "
            f"{float(total[i]):.6g} where the explained output is {float(explained[i]):.6g}",
            "the model computes something between its layers that no rule sees; "
            "report it with the model's definition, or explain with a method that "
            "does not rely on conservation (e.g. 'gradient')")


__all__ = ["LRPResult", "lrp"]
