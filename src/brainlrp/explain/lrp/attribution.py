"""One call from a model and a batch of scans to input relevance: :func:`lrp`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from brainlrp.explain.lrp.core import Rule, check_graph, first_linear_layer

# Conservation. Where a composite conserves relevance on the network, each scan's
# input relevance sums to the explained quantity f (the target's probability or
# logit; with a reference, f(x) - f(ref)) up to a tolerance, all of it relative to
# the scan's own numbers, so a rule that loses all relevance is caught however
# small f is:
#
# - CONSERVATION_RTOL * |f|. Without a reference, relevance is linear in f: every
#   rule scales it by ratios that do not depend on f, so float32 rounding and the
#   stabilisers (divisions by sums of same-signed contributions, far above the
#   stabiliser in a trained network) lose a share of f, never an amount of their
#   own.
# - CONSERVATION_MAGNITUDE_RTOL * sum |R|: rounding where positive and negative
#   relevance cancel (beta > 0, differences from a reference).
# - tiny + CONSERVATION_SUBNORMAL_ULPS * n * 2^-149 (n input values per scan; tiny,
#   1.2e-38, is the smallest normal float32 and 2^-149, 1.4e-45, the smallest
#   subnormal): relevance below float32's normal range (a p(AD) of 1e-35 spread
#   over 10^6 voxels) is held to a multiple of 2^-149, so each input value may be
#   off by a few of those, rounded along the way; and an f that is itself
#   subnormal may vanish. Below 4e-38 for a 2 mm scan: noise only.
# - With a reference, the share of f that the stabilisers absorb (see
#   :func:`stabiliser_share`): the rules divide by differences of activations,
#   which can be as small as the stabiliser epsilon or as float32 rounding of the
#   activations themselves, whatever f is.
CONSERVATION_RTOL = 1e-3
CONSERVATION_MAGNITUDE_RTOL = 1e-4
#: Roundings of a subnormal relevance value allowed per input value.
CONSERVATION_SUBNORMAL_ULPS = 16
#: ``C`` in :func:`stabiliser_share`.
CONSERVATION_STABILISER_FACTOR = 16.0


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
    explained : Tensor or None
        ``(batch,)`` the quantity relevance starts from: the target's probability
        or logit, or with a reference its difference ``f_t(x) - f_t(ref)``.
    gap : Tensor or None
        ``(batch,)`` float64 conservation gap, ``relevance.sum() - explained`` per
        scan (as Captum's ``return_convergence_delta``). Near zero where
        ``conserves``; otherwise the relevance the rules absorb by design
        (epsilon, z+, biases).
    conserves : bool
        Whether the composite conserves relevance on this network, so that the
        gap was checked (see :meth:`~brainlrp.explain.lrp.Composite.conserves`).
    """

    relevance: Tensor
    logits: Tensor
    probabilities: Tensor
    target: Tensor
    explained: Tensor | None = None
    gap: Tensor | None = None
    conserves: bool = False


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
        With the conservation gap of every scan (``result.gap``).

    Raises
    ------
    BrainLRPError
        For an unsupported layer, an operation between layers that has no rule
        (such as an addition the fx tracer could not see), an unknown composite or
        parameter, a bad input or a target out of range; for a composite with an
        input-layer rule (the box rule of ``"epsilon-gamma-box"``) when not one
        layer reads the input; and when a composite that conserves relevance on
        this network (see :meth:`~brainlrp.explain.lrp.Composite.conserves`) does
        not (see :func:`conservation_tolerance`).

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
          torch.enable_grad()):
        x = x.requires_grad_(True)
        # The input layer is read from the autograd graph of the forward pass; the
        # first layer in registration order is only a guess, right for most models.
        layer = first_linear_layer(model) if composite.first_layer is not None else None
        for _ in range(2):
            with composite.context(model, input_layer=layer) as rules:
                logits = model(x)
                check_graph(logits, model)
                found = composite.graph_input_layer(logits, x, model)
                if found is layer:
                    return _propagate(model, x, logits, batch, composite, rules, target, start)
            # The model reads its input with another layer than the guess: run again
            # with the input-layer rule there.
            layer = found
    raise BrainLRPError(  # pragma: no cover - a model whose input layer changes per call
        "the layer that reads the input changed between two forward passes",
        "use a model whose forward does the same on every call")


def _propagate(model: nn.Module, x: Tensor, logits: Tensor, batch: int, composite: Composite,
               rules: Mapping[nn.Module, Rule], target: int | Sequence[int] | Tensor,
               start: str) -> LRPResult:
    """The backward pass from ``logits`` (inside the composite's context) and its check."""
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
    if composite.reference:
        explained = explained - source[rows + batch, tgt]
    initial[rows, tgt] = explained
    (relevance,) = torch.autograd.grad(logits, x, initial)
    relevance = relevance[:batch].detach()
    gap = conservation_gap(relevance, explained)
    conserves = composite.conserves(model, rules)
    if conserves:
        share = None
        if composite.reference:
            share = stabiliser_share(logits[:batch], logits[batch:], tgt, _stabiliser(rules))
        tolerance = conservation_tolerance(relevance, explained, share)
        _check_conservation(gap, tolerance, explained, composite)
    return LRPResult(relevance, logits[:batch].detach(), probabilities[:batch], tgt,
                     explained.detach(), gap, conserves)


def conservation_gap(relevance: Tensor, explained: Tensor) -> Tensor:
    """``relevance.sum() - explained`` per scan, in float64: ``(batch,)``."""
    dims = tuple(range(1, relevance.ndim))
    return relevance.double().sum(dims) - explained.double()


def stabiliser_share(logits: Tensor, reference_logits: Tensor, target: Tensor,
                     epsilon: float) -> Tensor:
    r"""The share of ``f(x) - f(ref)`` that a reference composite's stabilisers may absorb.

    The reference rules divide relevance by differences of activations,
    ``dz + eps sign(dz)``, and keep the share ``dz / (dz + eps)`` of it. At the
    target's logit this share is plain to see; inside the network the differences
    shrink with the logits' difference, so the share lost there grows like
    ``eps / |dz_t|`` too, with a factor of the network's. float32 rounding of the
    activations acts like one more stabiliser, an ulp of the activations' size;
    the logits of all classes stand for that size (the target's logit alone can
    be near zero by chance). So the share is

    .. math::

        C \, \frac{\epsilon + \epsilon_{32} (\lVert z \rVert_1
                     + \lVert \bar z \rVert_1)}{|z_t - \bar z_t|}

    with ``z``, ``z̄`` the logits of scan and reference, ``t`` the target and
    ``C`` = :data:`CONSERVATION_STABILISER_FACTOR`. Measured on MONAI's
    DenseNet121 and ResNet10 and brainlrp's tiny network (random weights, four
    seeds, references 1e-1 to 1e-6 from the scan, both starts) the losses needed
    ``C`` = 2.6 at most with the default ``epsilon`` = 1e-6 and 2.8 with 1e-12;
    ``C`` = 16 leaves a margin of six. The share is the same for the probability
    start, whose relevance is the logit start's times ``dp_t / dz_t``. A share of 1
    or more (logits less than ``C`` stabilisers apart) checks nothing: all of ``f``
    may be absorbed. A p(AD) difference of 1e-4 at p = 0.5 (target logits about
    4e-4 apart) may lose some 5 % of it (logits of size 1; 14 % at size 5), so
    losing all of it is caught.

    Parameters
    ----------
    logits, reference_logits : Tensor
        ``(batch, n_classes)`` logits of the scans and of their references.
    target : Tensor
        ``(batch,)`` class explained per scan.
    epsilon : float
        The largest stabiliser of the composite's rules.

    Returns
    -------
    Tensor
        ``(batch,)`` float64, ``inf`` where the target logits are equal.
    """
    z, z_ref = logits.detach().double(), reference_logits.detach().double()
    rows = torch.arange(len(z), device=z.device)
    scale = z.abs().sum(1) + z_ref.abs().sum(1)
    noise = epsilon + torch.finfo(torch.float32).eps * scale
    return CONSERVATION_STABILISER_FACTOR * noise / (z[rows, target] - z_ref[rows, target]).abs()


def conservation_tolerance(relevance: Tensor, explained: Tensor,
                           share: Tensor | None = None) -> Tensor:
    """How far each scan's relevance sum may be from ``explained``: ``(batch,)`` float64.

    ``CONSERVATION_RTOL |f| + CONSERVATION_MAGNITUDE_RTOL sum |R|`` plus a floor for
    subnormal relevance (see the comments at the top of this module), plus
    ``share * |f|`` for a reference composite (``share`` from :func:`stabiliser_share`).
    """
    dims = tuple(range(1, relevance.ndim))
    size = relevance[0].numel() if relevance.ndim > 0 and len(relevance) else 1
    magnitude = explained.double().abs()
    tiny = torch.finfo(torch.float32).tiny
    subnormal = tiny * torch.finfo(torch.float32).eps  # 2^-149
    tolerance = (CONSERVATION_RTOL * magnitude
                 + CONSERVATION_MAGNITUDE_RTOL * relevance.double().abs().sum(dims)
                 + (tiny + CONSERVATION_SUBNORMAL_ULPS * size * subnormal))
    if share is not None:
        # inf where the logits are equal: nothing to check but a zero f.
        tolerance = tolerance + torch.where(magnitude > 0, share.double() * magnitude, 0.0)
    return tolerance


def _stabiliser(rules: Mapping[nn.Module, Rule]) -> float:
    """The largest ``epsilon`` among the rules (0 where none has one)."""
    values = [getattr(rule, "epsilon", 0.0) for rule in rules.values()]
    return max((float(v) for v in values if isinstance(v, (int, float))), default=0.0)


def _check_conservation(gap: Tensor, tolerance: Tensor, explained: Tensor,
                        composite: Composite) -> None:
    """Raise unless each scan's gap is within its tolerance."""
    bad = (gap.abs() > tolerance).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        total = float(gap[i] + explained[i].double())
        raise BrainLRPError(
            f"LRP lost or created relevance: the composite {composite.name!r} conserves it "
            f"on this network, yet the input relevance of sample {i} sums to "
            f"{total:.6g} where the explained output is {float(explained[i]):.6g} "
            f"(gap {float(gap[i]):.3g}, tolerance {float(tolerance[i]):.3g})",
            "the model computes something between its layers that no rule sees; "
            "report it with the model's definition, or explain with a method that "
            "does not rely on conservation (e.g. 'gradient')")


__all__ = ["LRPResult", "conservation_gap", "conservation_tolerance", "lrp",
           "stabiliser_share"]
