"""LRP rules as small configured objects.

Each rule validates its parameters when it is built and names the broken
constraint. Notation for a linear layer (Linear or ConvNd) with input ``x_i``,
weights ``w_ij`` and bias ``b_j``: ``z_ij = x_i w_ij`` is the contribution of input
``i`` to output ``j``; ``x+ = max(x, 0)``, ``x- = min(x, 0)``, likewise ``w+``, ``w-``;
``R_j`` is the relevance of output ``j`` and ``R_i`` that of input ``i``.

Speed: the rules are written so that one backward pass costs little more than an
input gradient. Every layer input after a ReLU or max pooling, and an MRI scaled
to [0, 1], is non-negative; then ``x- = 0`` and half of the general formula
vanishes. Rules test ``x.min() >= 0`` per layer at run time and take the short path
when it holds; the general path stays exact for mixed-sign inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from brainlrp.errors import BrainLRPError
from brainlrp.explain.lrp.core import Layer, LayerOps, LinearRule, Rule, stabilize, stabilize_


def _check_epsilon(epsilon: float, what: str = "epsilon") -> float:
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise BrainLRPError(f"{what} must be a positive number, got {what}={epsilon:g}",
                            f"use a small positive {what} such as 1e-6")
    return epsilon


def _is_nonnegative(x: Tensor) -> bool:
    return bool(x.min() >= 0)


Parts = tuple[Tensor, Tensor] | None


def _split_signs(x: Tensor) -> Parts:
    """``(x+, x-)``, or None when ``x >= 0`` everywhere (the usual case after a ReLU)."""
    return None if _is_nonnegative(x) else (x.clamp(min=0), x.clamp(max=0))


def _signed_forward(ops: LayerOps, x: Tensor, parts: Parts, w1: Tensor, w2: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``z1 = x+ w1 + x- w2`` and ``z2 = x+ w2 + x- w1``, with forward_many's stacked
    output (None unless ``x >= 0``, where z1 and z2 are its views)."""
    if parts is None:
        (z1, z2), stacked = ops.forward_many(x, [w1, w2])
        return z1, z2, stacked
    xp, xn = parts
    (a, b), _ = ops.forward_many(xp, [w1, w2])
    (c, d), _ = ops.forward_many(xn, [w1, w2])
    return a + d, b + c, None


def _signed_transpose(ops: LayerOps, x: Tensor, parts: Parts, s1: Tensor, s2: Tensor,
                      w1: Tensor, w2: Tensor, stacked: Tensor | None = None) -> Tensor:
    """The input relevance of :func:`_signed_forward`'s two maps given their scaled
    relevance ``s1, s2``: ``x+ (w1' s1 + w2' s2) + x- (w2' s1 + w1' s2)``."""
    if parts is None:
        return ops.transpose_many([s1, s2], [w1, w2], x, stacked).mul_(x)
    xp, xn = parts
    if stacked is None and ops.groups == 1:
        stacked = torch.cat([s1, s2], dim=ops.channel_dim)
    return (xp * ops.transpose_many([s1, s2], [w1, w2], x, stacked)
            + xn * ops.transpose_many([s1, s2], [w2, w1], x, stacked))


class AlphaBeta(LinearRule):
    r"""The alpha-beta rule, the paper's "beta rule" (Bach et al. 2015; Böhle et al. 2019).

    .. math::

        R_i = \sum_j \Big(\alpha \frac{z_{ij}^+}{z_j^+} - \beta \frac{z_{ij}^-}{z_j^-}\Big) R_j,
        \quad z_j^+ = \sum_i z_{ij}^+ ,\ z_j^- = \sum_i z_{ij}^-

    with ``z_ij+ = x+ w+ + x- w-`` and ``z_ij- = x+ w- + x- w+`` (biases ignored) and
    the stabiliser ``eps * sign(z)`` on both denominators. A neuron whose negative
    sum is zero sends its whole relevance through the positive side (factor 1, not
    alpha), and for ``beta > 0`` a neuron whose positive sum is zero sends it through
    the negative side, so relevance is conserved. With ``beta = 0`` the negative
    side has weight zero and relevance of a neuron without positive contributions
    is dropped: this is the z+ rule, as in the paper's code and in zennit.

    Parameters
    ----------
    alpha : float, optional
        Weight of positive contributions; ``1 + beta`` when omitted.
    beta : float
        Weight of negative contributions, ``>= 0``.
    epsilon : float
        Stabiliser, ``> 0``.

    Raises
    ------
    BrainLRPError
        If ``beta < 0``, ``alpha - beta != 1`` or ``epsilon <= 0``.
    """

    def __init__(self, alpha: float | None = None, beta: float = 0.0, epsilon: float = 1e-6):
        beta = float(beta)
        alpha = 1.0 + beta if alpha is None else float(alpha)
        if not (math.isfinite(beta) and beta >= 0):
            raise BrainLRPError(f"beta must be >= 0, got beta={beta:g}",
                                "use beta in [0, 1] as in the paper (0 is its main setting)")
        if not math.isclose(alpha - beta, 1.0, rel_tol=0.0, abs_tol=1e-9):
            raise BrainLRPError(f"alpha - beta must equal 1, got alpha={alpha:g}, beta={beta:g}",
                                f"use alpha={1 + beta:g} or leave alpha out")
        self.alpha = alpha
        self.beta = beta
        self.epsilon = _check_epsilon(epsilon)
        # beta = 0 drops the relevance of outputs without positive contributions.
        self.conserving = beta > 0

    def propagate(self, ops: LayerOps, x: Tensor, y: Tensor | None,
                  relevance: Tensor) -> Tensor:
        w = ops.weight
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        parts = _split_signs(x)
        if self.beta == 0:
            return self._zplus(ops, x, relevance, wp, wn, parts)
        pos, neg, stacked = _signed_forward(ops, x, parts, wp, wn)
        pos_only, neg_only = neg == 0, pos == 0
        # From here on pos/neg are overwritten in place with the scaled relevance
        # ratios, and one scratch tensor takes the numerators: for a full-size input
        # layer these are the largest tensors there are, and on CPU every fresh one
        # costs as much in page faults as the arithmetic.
        pos.add_(self.epsilon)
        neg.sub_(self.epsilon)
        scaled = torch.mul(relevance, self.alpha)
        torch.div(torch.where(pos_only, relevance, scaled, out=scaled), pos, out=pos)
        # neg := -beta R / z-, or +R / z- where nothing positive exists (factor 1).
        # Where nothing negative exists (pos_only) its value does not matter: every
        # contribution it weights is zero.
        torch.mul(relevance, -self.beta, out=scaled)
        torch.div(torch.where(neg_only, relevance, scaled, out=scaled), neg, out=neg)
        return _signed_transpose(ops, x, parts, pos, neg, wp, wn, stacked)

    def _zplus(self, ops: LayerOps, x: Tensor, relevance: Tensor, wp: Tensor, wn: Tensor,
               parts: Parts) -> Tensor:
        # beta = 0: only z+ is needed, one extra forward map and one transpose.
        if parts is None:
            pos = ops.forward(x, wp)
        else:
            xp, xn = parts
            pos = ops.forward(xp, wp) + ops.forward(xn, wn)
        ratio = torch.div(relevance, pos.add_(self.epsilon), out=pos)
        if parts is None:
            return ops.transpose(ratio, wp, x).mul_(x)
        return (xp * ops.transpose(ratio, wp, x)
                + xn * ops.transpose(ratio, wn, x))


class ZPlus(AlphaBeta):
    """The z+ rule: :class:`AlphaBeta` with ``alpha = 1, beta = 0``.

    Parameters
    ----------
    epsilon : float
        Stabiliser, ``> 0``.
    """

    def __init__(self, epsilon: float = 1e-6):
        super().__init__(alpha=1.0, beta=0.0, epsilon=epsilon)


class Epsilon(LinearRule):
    r"""The epsilon rule: ``R_i = sum_j z_ij / (z_j + eps sign(z_j)) R_j``.

    ``z_j`` is the layer's output, bias included unless ``zero_bias``; the bias
    then absorbs its share of relevance, so relevance is not conserved exactly.

    Parameters
    ----------
    epsilon : float
        Stabiliser, ``> 0``; larger values keep only the stronger contributions.
    zero_bias : bool
        Leave the bias out of ``z_j``.
    """

    def __init__(self, epsilon: float = 1e-6, zero_bias: bool = False):
        self.epsilon = _check_epsilon(epsilon)
        self.zero_bias = bool(zero_bias)
        self.needs_output = not self.zero_bias

    def propagate(self, ops: LayerOps, x: Tensor, y: Tensor | None,
                  relevance: Tensor) -> Tensor:
        z = ops.forward(x, ops.weight) if self.zero_bias else y
        ratio = relevance / stabilize(z, self.epsilon)
        return ops.transpose(ratio, ops.weight, x).mul_(x)


class ZBox(LinearRule):
    r"""The box rule (z^B) for an input layer whose values lie in ``[low, high]``.

    .. math::

        R_i = \sum_j \frac{x_i w_{ij} - l_i w_{ij}^+ - h_i w_{ij}^-}
                         {\sum_i (x_i w_{ij} - l_i w_{ij}^+ - h_i w_{ij}^-)} R_j

    Biases cancel out of this rule. Zero-padded borders contribute nothing.

    Parameters
    ----------
    low, high : float or Tensor
        Smallest and largest possible input value (scalars, or tensors that
        broadcast against the input). The default fits scans scaled to [0, 1].
    epsilon : float
        Stabiliser, ``> 0``.
    """

    def __init__(self, low: float | Tensor = 0.0, high: float | Tensor = 1.0,
                 epsilon: float = 1e-6):
        try:
            ordered = bool((torch.as_tensor(low, dtype=torch.float64)
                            < torch.as_tensor(high, dtype=torch.float64)).all())
        except RuntimeError as err:
            raise BrainLRPError(f"low and high do not broadcast: {err}",
                                "give scalars or tensors of compatible shapes") from err
        if not ordered:
            raise BrainLRPError(f"low must be below high everywhere, got low={low}, high={high}",
                                "give the input range, e.g. low=0, high=1 for scans in [0, 1]")
        self.low = low
        self.high = high
        self.epsilon = _check_epsilon(epsilon)
        self.conserving = True
        # The layer's output gives x w as y - b, one forward map less (as Epsilon).
        self.needs_output = True

    def _bound(self, value: float | Tensor, x: Tensor) -> Tensor | float | None:
        if not isinstance(value, Tensor):
            return None if value == 0 else float(value)
        return torch.as_tensor(value, dtype=x.dtype, device=x.device).expand_as(x)

    def propagate(self, ops: LayerOps, x: Tensor, y: Tensor | None,
                  relevance: Tensor) -> Tensor:
        w = ops.weight
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        low, high = self._bound(self.low, x), self._bound(self.high, x)
        # One full-size buffer for z, the stabiliser and the ratio: at an input layer
        # of 64 channels at full resolution each fresh tensor costs ~0.2 s.
        z = y.clone() if ops.bias is None else ops.add_bias(y, -ops.bias)
        for bound, wb in ((low, wp), (high, wn)):
            if isinstance(bound, float):  # a constant image: no full convolution
                z.sub_(ops.forward_constant(bound, wb, x))
            elif bound is not None:
                z.sub_(ops.forward(bound.contiguous(), wb))
        ratio = torch.div(relevance, stabilize_(z, self.epsilon), out=z)
        # The three transposed maps in one call (an input layer has one channel, so
        # three cost about as much as one).
        terms = [(bound, wb) for bound, wb in ((low, wp), (high, wn)) if bound is not None]
        first, *rest = ops.transpose_inputs(ratio, [w, *[wb for _, wb in terms]], x)
        out = first.mul_(x)
        for (bound, _), part in zip(terms, rest, strict=True):
            if isinstance(bound, float):
                out.sub_(part, alpha=bound)
            else:
                out.sub_(bound * part)
        return out


class Gamma(LinearRule):
    r"""The generalised gamma rule (Montavon et al. 2019; zennit's form).

    Positive outputs (``y_j > 0``) share their relevance in proportion to
    ``x+ (w + gamma w+) + x- (w + gamma w-)`` (plus ``b + gamma b+``), negative
    outputs in proportion to ``x+ (w + gamma w-) + x- (w + gamma w+)`` (plus
    ``b + gamma b-``). ``gamma = 0`` is the epsilon rule without epsilon; large
    ``gamma`` approaches z+.

    Parameters
    ----------
    gamma : float
        Extra weight of the positive contributions, ``>= 0``.
    epsilon : float
        Stabiliser, ``> 0``.
    zero_bias : bool
        Leave the bias out.
    """

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6, zero_bias: bool = False):
        gamma = float(gamma)
        if not (math.isfinite(gamma) and gamma >= 0):
            raise BrainLRPError(f"gamma must be >= 0, got gamma={gamma:g}",
                                "use a gamma such as 0.25")
        self.gamma = gamma
        self.epsilon = _check_epsilon(epsilon)
        self.zero_bias = bool(zero_bias)
        self.needs_output = not self.zero_bias

    def propagate(self, ops: LayerOps, x: Tensor, y: Tensor | None,
                  relevance: Tensor) -> Tensor:
        w, g = ops.weight, self.gamma
        w_up, w_down = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        b = None if self.zero_bias else ops.bias
        b_up = None if b is None else b + g * b.clamp(min=0)
        b_down = None if b is None else b + g * b.clamp(max=0)
        sign_of = ops.forward(x, w) if self.zero_bias else y
        parts = _split_signs(x)
        z_up, z_down, _ = _signed_forward(ops, x, parts, w_up, w_down)
        s_up = (sign_of > 0) * relevance / stabilize(ops.add_bias(z_up, b_up), self.epsilon)
        s_down = (sign_of < 0) * relevance / stabilize(ops.add_bias(z_down, b_down), self.epsilon)
        return _signed_transpose(ops, x, parts, s_up, s_down, w_up, w_down)


class Flat(LinearRule):
    r"""The flat rule: every input in an output's receptive field gets an equal share.

    .. math::

        R_i = \sum_j \frac{1}{n_j} R_j, \quad n_j = \sum_i 1[w_{ij} \text{ connects } i, j]

    The weights and the input are replaced by ones (zennit's ``Flat``), so the
    share ignores both; zero-padded borders are not inputs and take none.
    Conserving; meant for the input layer, where pixel values say little.

    Parameters
    ----------
    epsilon : float
        Stabiliser, ``> 0``.
    """

    needs_input = True
    conserving = True

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = _check_epsilon(epsilon)

    def propagate(self, ops: LayerOps, x: Tensor, y: Tensor | None,
                  relevance: Tensor) -> Tensor:
        ones_w = torch.ones_like(ops.weight)
        count = ops.forward_constant(1.0, ones_w, x)  # broadcasts over the batch
        return ops.transpose(relevance / stabilize(count, self.epsilon), ones_w, x)


class Pass(Rule):
    """Pass relevance through unchanged (ReLU, and BatchNorm in the paper's mode).

    For an elementwise layer each output depends on one input, so that input
    inherits the output's relevance whole.
    """

    needs_input = False
    conserving = True

    def backward(self, layer: Layer, x: Tensor | None, y: Tensor | None,
                 relevance: Tensor) -> Tensor:
        return relevance


class Proportional(Rule):
    """Share relevance in proportion to each input's share of the output (average pooling).

    ``R_i = sum_j x_i w_ij / (z_j + eps sign(z_j)) R_j`` for a fixed positive linear
    map such as average pooling, through the map's own gradient.

    Parameters
    ----------
    epsilon : float
        Stabiliser, ``> 0``.
    """

    needs_output = True
    conserving = True

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = _check_epsilon(epsilon)

    def backward(self, layer: Layer, x: Tensor | None, y: Tensor | None,
                 relevance: Tensor) -> Tensor:
        ratio = relevance / stabilize(y, self.epsilon)
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(layer.forward(xx), xx, ratio)
        return x * grad


class SumShare(Rule):
    r"""Share a sum's relevance among its summands by their values (a residual addition).

    ``R_k = x_k / (y + eps sign(y)) R`` for ``y = sum_k x_k``, elementwise: the
    epsilon rule on a sum with unit weights (zennit's ``Norm`` rule on its ``Sum``
    layer). Conserving up to the stabiliser; summands of opposite sign share
    relevance of opposite signs.

    Parameters
    ----------
    epsilon : float
        Stabiliser, ``> 0``; larger values absorb the relevance of small sums.
    """

    conserving = True

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = _check_epsilon(epsilon)

    def backward(self, layer: Layer, x: tuple[Tensor, ...] | Tensor | None, y: Tensor | None,
                 relevance: Tensor) -> tuple[Tensor, ...] | Tensor:
        xs = x if isinstance(x, tuple) else (x,)
        total = xs[0]
        for term in xs[1:]:
            total = total + term
        ratio = relevance / stabilize(total, self.epsilon)
        # A broadcast summand takes the relevance of every output it reached.
        shares = tuple((term * ratio).sum_to_size(term.shape) for term in xs)
        return shares if isinstance(x, tuple) else shares[0]


class Split(Rule):
    """Give each input of a concatenation the relevance of its own slice.

    Every output element is a copy of one input element, so this is exact and
    conserving; it is the concatenation's gradient. The layer needs a ``dim``
    attribute (:class:`~brainlrp.explain.lrp.layers.Concat` has one).
    """

    conserving = True

    def backward(self, layer: Layer, x: tuple[Tensor, ...] | Tensor | None, y: Tensor | None,
                 relevance: Tensor) -> tuple[Tensor, ...] | Tensor:
        if not isinstance(x, tuple):
            return relevance
        dim = layer.module.dim
        return tuple(relevance.split([part.shape[dim] for part in x], dim=dim))


# -- reference rules: DeepLIFT's rescale rule as LRP on differences ----------------------
#
# With a reference, the forward pass runs on the stacked batch ``(scans, references)``
# (:func:`~brainlrp.explain.lrp.lrp` with ``reference=``): every layer sees its
# activations for both, so a rule reads the difference ``dx = x - x_ref`` of its
# input and ``dy`` of its output. Relevance lives on the scans' half; the
# references' half carries zeros. DeepLIFT's rescale rule is LRP on these
# differences (Ancona et al. 2018): a linear map shares ``R_j`` in proportion to
# ``w_ij dx_i / dz_j`` (biases and BatchNorm shifts cancel in differences), an
# elementwise nonlinearity passes ``R`` unchanged (its multiplier ``dy / dx``
# cancels against the next linear layer's ``dz``), a sum shares by ``dx_k / dy``.


def _halves(t: Tensor) -> tuple[Tensor, Tensor]:
    """``(scans, references)`` halves of a stacked batch."""
    n = t.shape[0] // 2
    return t[:n], t[n:]


def _scans_only(r: Tensor) -> Tensor:
    """Relevance of the scans' half, with zeros for the references' half."""
    return torch.cat([r, torch.zeros_like(r)])


class RescaleLinear(LinearRule):
    r"""DeepLIFT's rescale rule on a Linear/ConvNd layer (the epsilon rule on differences).

    .. math::

        R_i = \sum_j \frac{w_{ij} (x_i - \bar x_i)}{z_j - \bar z_j + \epsilon\,
              \mathrm{sign}(z_j - \bar z_j)} R_j

    with bars for the reference's activations. ``z_j - z̄_j`` is the difference of
    the layer's two outputs, so the bias cancels and no extra map is computed.
    Conserving up to the stabiliser, biases or not.

    Parameters
    ----------
    epsilon : float
        Stabiliser, ``> 0``.
    """

    needs_output = True
    conserving = True

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = _check_epsilon(epsilon)

    def propagate(self, ops: LayerOps, x: Tensor, y: Tensor | None,
                  relevance: Tensor) -> Tensor:
        xa, xr = _halves(x)
        ya, yr = _halves(y)
        ratio = _halves(relevance)[0] / stabilize(ya - yr, self.epsilon)
        dx = xa - xr
        return _scans_only(ops.transpose(ratio, ops.weight, dx).mul_(dx))


class RescaleSum(Rule):
    """Share a sum's relevance among its summands by their differences from the reference.

    ``R_k = dx_k / (dy + eps sign(dy)) R``: :class:`SumShare` on differences, so a
    residual block conserves relevance when the scan and the reference differ.
    A summand broadcast over the batch (a constant) is the same for both and takes none.

    Parameters
    ----------
    epsilon : float
        Stabiliser, ``> 0``.
    """

    conserving = True

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = _check_epsilon(epsilon)

    def backward(self, layer: Layer, x: tuple[Tensor, ...] | Tensor | None, y: Tensor | None,
                 relevance: Tensor) -> tuple[Tensor, ...] | Tensor:
        xs = x if isinstance(x, tuple) else (x,)
        batch = relevance.shape[0]
        deltas = [(a - r) if term.ndim == relevance.ndim and term.shape[0] == batch else None
                  for term in xs for a, r in [_halves(term)]]
        total = sum(d for d in deltas if d is not None)
        ratio = _halves(relevance)[0] / stabilize(total, self.epsilon)
        shares = tuple(torch.zeros_like(term) if d is None
                       else _scans_only((d * ratio).sum_to_size(d.shape))
                       for term, d in zip(xs, deltas, strict=True))
        return shares if isinstance(x, tuple) else shares[0]


class RescaleProportional(Rule):
    """DeepLIFT's rescale rule on a fixed linear map such as average pooling.

    ``R_i = sum_j w_ij dx_i / (dy_j + eps sign(dy_j)) R_j`` through the map's gradient.

    Parameters
    ----------
    epsilon : float
        Stabiliser, ``> 0``.
    """

    needs_output = True
    conserving = True

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = _check_epsilon(epsilon)

    def backward(self, layer: Layer, x: Tensor | None, y: Tensor | None,
                 relevance: Tensor) -> Tensor:
        xa, xr = _halves(x)
        ya, yr = _halves(y)
        ratio = _halves(relevance)[0] / stabilize(ya - yr, self.epsilon)
        dx = xa - xr
        with torch.enable_grad():
            xx = dx.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(layer.forward(xx), xx, ratio)
        return _scans_only(dx * grad)


class RescaleMaxPool(Rule):
    """Max pooling against a reference, as Captum's ``DeepLift`` does it.

    The scan's and the reference's winners may differ. A pooled output that did
    not fall (``y >= y_ref``) sends its relevance to the scan's winner; one that
    fell (``y < y_ref``) to the reference's winner, the position where the
    reference's maximum was lost. Captum splits ``dy`` into ``max(y, y_ref) - y_ref``
    (scan's winner) and ``y - max(y, y_ref)`` (reference's winner), which is the
    same; the sum of both is conserved.
    """

    needs_output = True
    conserving = True

    def backward(self, layer: Layer, x: Tensor | None, y: Tensor | None,
                 relevance: Tensor) -> Tensor:
        ya, yr = _halves(y)
        ra = _halves(relevance)[0]
        rose = ya >= yr
        routed = torch.cat([torch.where(rose, ra, 0.0), torch.where(rose, 0.0, ra)])
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(layer.forward(xx), xx, routed)
        scans, refs = _halves(grad)
        return _scans_only(scans + refs)


__all__ = ["AlphaBeta", "Epsilon", "Flat", "Gamma", "Pass", "Proportional", "RescaleLinear",
           "RescaleMaxPool", "RescaleProportional", "RescaleSum", "Rule", "Split", "SumShare",
           "ZBox", "ZPlus"]
