"""The LRP machinery: relevance propagated as a custom backward pass.

Inside :func:`attach_rules`, every layer that has a rule gets its ``forward``
replaced by a custom autograd function whose forward is the layer's own forward
and whose backward is the rule: it maps the relevance of the layer's output to
the relevance of its input. One ordinary ``torch.autograd.grad`` call then
carries relevance from the output to the input through the whole network,
reusing the activations the forward pass saved: no second forward pass and no
parameter gradients. Layers whose gradient already *is* their LRP rule keep plain
autograd: max pooling (the gradient goes to the winning voxel), zero padding (the
padded zeros hold no relevance, so dropping theirs loses none), Flatten and tensor
reshapes (MONAI's ``Reshape`` and ``Flatten`` too), Identity, and Dropout in eval mode.

Relevance must not bypass the rules: :func:`check_graph` walks the autograd
graph of the output and refuses any operation between layers whose gradient is
not its LRP rule (a residual addition's gradient would double relevance), and
:func:`has_offset` tells which layers keep a network from conserving relevance.
:func:`graph_input_layers` reads from the same graph which layer takes the
model's input (where an input-layer rule such as the box rule belongs).

This module knows nothing about particular rules; they live in
:mod:`brainlrp.explain.lrp.rules` and implement :class:`Rule`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainlrp.errors import BrainLRPError

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Layers with weights that rules such as alpha-beta or epsilon act on.
LINEAR_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, *CONV_TYPES)
BATCHNORM_TYPES: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Normalisations by statistics of the sample itself; they cannot be merged into a
#: layer, so relevance passes through them as through BatchNorm in the paper's mode.
SAMPLE_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)
NORM_TYPES: tuple[type[nn.Module], ...] = BATCHNORM_TYPES + SAMPLE_NORM_TYPES
#: Elementwise activations: each output depends on one input, which inherits its relevance.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.PReLU)
AVGPOOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
MAXPOOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
#: Constant padding; only zeros (ClinicaDL's ``PadMaxPool3d``) pass :func:`check_supported`.
PAD_TYPES: tuple[type[nn.Module], ...] = (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)
#: Layers whose autograd backward is already the LRP rule, so they get no rule.
AUTOGRAD_TYPES: tuple[type[nn.Module], ...] = (
    *MAXPOOL_TYPES, *PAD_TYPES,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.Flatten, nn.Unflatten, nn.Identity)
#: Layers of other libraries that only reshape (MONAI's ``Reshape`` and ``Flatten``, e.g.
#: in ``monai.networks.nets.Classifier``): with no parameters or buffers their gradient is
#: their rule, as for ``nn.Flatten``. Named, not imported, so the engine needs no MONAI;
#: the graph check still refuses any operation they might hide.
RESHAPE_LAYERS: frozenset[str] = frozenset({"monai.networks.layers.simplelayers.Reshape",
                                            "monai.networks.layers.simplelayers.Flatten"})
SUPPORTED_TYPES: tuple[type[nn.Module], ...] = (
    LINEAR_LAYER_TYPES + NORM_TYPES + ACTIVATION_TYPES + AVGPOOL_TYPES + AUTOGRAD_TYPES)

#: Autograd nodes (names without the trailing version digit) whose backward is the
#: LRP rule of what they compute in the forward: reshapes, slicing, copies, max
#: pooling and (zero) padding move relevance without changing it. Any other node between
#: the output and the input is an operation without a rule (see :func:`check_graph`).
GRADIENT_IS_RULE_NODES: frozenset[str] = frozenset({
    "ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward", "CloneBackward",
    "ToCopyBackward", "SliceBackward", "SelectBackward", "SqueezeBackward",
    "UnsqueezeBackward", "PermuteBackward", "TransposeBackward", "TBackward",
    "AliasBackward", "MaxPool1DWithIndicesBackward", "MaxPool2DWithIndicesBackward",
    "MaxPool3DWithIndicesBackward", "AdaptiveMaxPool1DBackward", "AdaptiveMaxPool2DBackward",
    "AdaptiveMaxPool3DBackward", "ConstantPadNdBackward", "AccumulateGrad"})

_CONV_FUNCTIONS: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def convolve(x: Tensor, weight: Tensor, bias: Tensor | None = None,
             stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
             dilation: int | Sequence[int] = 1, groups: int = 1) -> Tensor:
    """``F.conv1d/2d/3d`` (zero padding), with oneDNN for every 3-D convolution on CPU
    in float32.

    PyTorch chooses its CPU kernel by a rule written for 2-D images: a convolution
    whose ``batch * channels * first two axes`` is below 20480 and whose kernel is
    at most 3 wide, such as a 3-D input layer on one scan at 2 mm, goes to its
    im2col kernel (``slow_conv3d``). oneDNN computes the same map 1.5-2x faster
    there (the paper's input layer on 97 x 115 x 97 with two threads: 0.065 s
    against 0.10 s), and gives the same values in these tests. Dilated maps,
    other dtypes and devices take PyTorch's own choice.
    """
    d = weight.dim() - 2
    if (d == 3 and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled):
        stride, padding, dilation = (_triple(v) for v in (stride, padding, dilation))
        if dilation == [1, 1, 1]:
            return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride,
                                                     dilation, int(groups))
    return _CONV_FUNCTIONS[d](x, weight, bias, stride, padding, dilation, groups)


def _triple(value: int | Sequence[int]) -> list[int]:
    return [int(value)] * 3 if isinstance(value, int) else [int(v) for v in value]


def _plain_conv_forward(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The forward of a Conv3d that PyTorch's own ``Conv3d.forward`` computes with zero
    padding, through :func:`convolve`; None for anything else (a subclass with its
    own forward, other padding modes), which keeps its own forward."""
    if not (isinstance(module, nn.Conv3d) and type(module).forward is nn.Conv3d.forward
            and module.padding_mode == "zeros"):
        return None
    stride, dilation, groups = module.stride, module.dilation, module.groups
    padding = _conv_padding(module)

    def forward(x: Tensor) -> Tensor:
        return convolve(x, module.weight, module.bias, stride, padding, dilation, groups)
    return forward


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = +1``, so the result is never zero."""
    return z + torch.where(z >= 0, epsilon, -epsilon)


def stabilize_(z: Tensor, epsilon: float) -> Tensor:
    """:func:`stabilize` in place (saves a full-size tensor)."""
    return z.add_(torch.where(z >= 0, epsilon, -epsilon))


def _module_label(name: str, module: nn.Module) -> str:
    return f"{name or 'model'} ({type(module).__name__})"


def _conv_padding(module: nn.Module) -> tuple[int, ...]:
    """The conv's zero padding as integers (``'same'``/``'valid'`` resolved)."""
    padding = module.padding
    if padding == "valid":
        return (0,) * len(module.kernel_size)
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size, strict=True)]
        if any(t % 2 for t in total):
            raise BrainLRPError(
                f"{type(module).__name__} with padding='same' and an even kernel pads "
                "asymmetrically, which LRP does not support", "use an odd kernel size")
        return tuple(t // 2 for t in total)
    return tuple(int(p) for p in padding)


def _phase_plan(kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int]
                ) -> list[tuple[int, int, int, int]]:
    """Per axis ``(F, G, lo, hi)`` for :func:`_transpose_by_phases`.

    The transposed map writes input position ``i = F m + phi`` from output
    ``o = G n + psi`` through tap ``t = F (m - n) + phi + p - psi * stride``: with
    ``F`` a multiple of the stride (the stride, or 2 at stride 1) and ``G = F /
    stride``, the tap depends on ``m - n`` only, so every phase ``phi`` is a plain
    convolution over the coarse grid. ``lo..hi`` are the offsets ``m - n`` that
    reach some tap.
    """
    plan = []
    for k, st, p in zip(kernel_size, stride, padding, strict=True):
        f = st if st > 1 else (2 if k > 1 else 1)
        g = f // st
        pairs = [(phi, psi) for phi in range(f) for psi in range(g)]
        lo = min(-((phi + p - psi * st) // f) for phi, psi in pairs)
        hi = max((k - 1 + psi * st - phi - p) // f for phi, psi in pairs)
        plan.append((f, g, lo, hi))
    return plan


def _transpose_by_phases(s: Tensor, weight: Tensor, size: Sequence[int], stride: Sequence[int],
                         padding: Sequence[int]) -> Tensor:
    """The transposed convolution of ``s`` (groups 1, dilation 1) as one forward
    convolution over phases.

    Input positions are split into ``F`` phases per axis (and the output ``s`` into
    ``G``, see :func:`_phase_plan`); each pair of phases is a convolution over the
    coarse grid with a sub-kernel of the layer's kernel, so the whole map is a
    single convolution from ``C_out * prod(G)`` to ``C_in * prod(F)`` channels,
    followed by interleaving the phases (exact: the same products, summed in
    another order).

    Parameters
    ----------
    s : Tensor
        ``(N, C_out, *output size)``.
    weight : Tensor
        ``(C_out, C_in, *kernel)``.
    size : sequence of int
        The layer input's spatial size.
    """
    d = len(size)
    n_batch, c_out = s.shape[:2]
    c_in, kernel = weight.shape[1], weight.shape[2:]
    plan = _phase_plan(kernel, stride, padding)
    # The phase kernel K[c_in, phi, c_out, psi, j] = W[c_out, c_in, F (hi - j) + phi + p - psi st]
    # (zero where that tap does not exist), j = 0..hi-lo in correlation order.
    k = weight
    for a, ((f, g, lo, hi), st, p) in enumerate(zip(plan, stride, padding, strict=True)):
        dim = 2 + 3 * a
        taps = (f * (hi - torch.arange(hi - lo + 1, device=s.device))[None, None, :]
                + torch.arange(f, device=s.device)[:, None, None] + p
                - torch.arange(g, device=s.device)[None, :, None] * st)
        valid = (taps >= 0) & (taps < kernel[a])
        k = k.index_select(dim, taps.clamp(0, kernel[a] - 1).reshape(-1))
        k = k.reshape(*k.shape[:dim], *taps.shape, *k.shape[dim + 1:])
        k = k * valid.to(k.dtype).reshape(*taps.shape, *[1] * (k.ndim - dim - 3))
    k = k.permute(1, *range(2, 2 + 3 * d, 3), 0, *range(3, 3 + 3 * d, 3),
                  *range(4, 4 + 3 * d, 3))
    k = k.reshape(c_in * math.prod(f for f, *_ in plan), c_out * math.prod(g for _, g, *_ in plan),
                  *[hi - lo + 1 for *_, lo, hi in plan])
    # Output phases to channels (space to depth), on a grid padded to whole blocks.
    coarse_in = [-(-n // g) for n, (_, g, *_) in zip(s.shape[2:], plan, strict=True)]
    coarse_out = [-(-n // f) for n, (f, *_) in zip(size, plan, strict=True)]
    pad: list[int] = []
    for a in reversed(range(d)):
        pad += [0, coarse_in[a] * plan[a][1] - s.shape[2 + a]]
    s = F.pad(s, pad) if any(pad) else s
    if any(g > 1 for _, g, *_ in plan):
        s = s.reshape(n_batch, c_out, *[v for a in range(d) for v in (coarse_in[a], plan[a][1])])
        s = s.permute(0, 1, *range(3, 3 + 2 * d, 2), *range(2, 2 + 2 * d, 2))
        s = s.reshape(n_batch, -1, *coarse_in)
    # r'[m] = sum_j s'[m - hi + j] K[j]: pad (or crop) so the output is the coarse grid.
    sides = [(hi, coarse_out[a] - lo - coarse_in[a]) for a, (_, _, lo, hi) in enumerate(plan)]
    if all(left == right >= 0 for left, right in sides):  # the convolution pads, no copy
        r = convolve(s, k, None, 1, [left for left, _ in sides])
    else:
        r = convolve(F.pad(s, [v for side in reversed(sides) for v in side]), k)
    # Phases back to positions (depth to space), cropped to the input size.
    r = r.reshape(n_batch, c_in, *[f for f, *_ in plan], *coarse_out)
    r = r.permute(0, 1, *[v for a in range(d) for v in (2 + d + a, 2 + a)])
    r = r.reshape(n_batch, c_in, *[c * f for c, (f, *_) in zip(coarse_out, plan, strict=True)])
    if tuple(r.shape[2:]) != tuple(size):
        r = r[(slice(None), slice(None), *[slice(0, n) for n in size])].contiguous()
    return r


#: Floats per block of :func:`_transpose_by_shifts` (4 MiB): the tap contributions of
#: one block stay in cache while they are added into place.
_SHIFT_BLOCK = 2 ** 20


def _transpose_by_shifts(s: Tensor, weight: Tensor, size: Sequence[int],
                         padding: Sequence[int]) -> Tensor:
    """The transposed convolution of ``s`` (stride 1, groups 1, dilation 1) by
    shifted additions.

    For a block of slices along the first spatial axis, one matrix product gives
    every tap's contribution ``u[c, t] = sum_o W[o, c, t] s[o]``; the transposed map
    is the sum over taps of ``u[c, t]`` shifted by the tap's offset. Blocks are
    sized to stay in cache (:data:`_SHIFT_BLOCK`).
    """
    n_batch, c_out = s.shape[:2]
    c_in, kernel = weight.shape[1], tuple(weight.shape[2:])
    taps = math.prod(kernel)
    matrix = weight.reshape(c_out, c_in * taps).t()
    inner = tuple(s.shape[3:])
    block = max(1, round(_SHIFT_BLOCK / (c_in * taps * math.prod(inner))))
    # Output o of the layer reads input i = o - padding + offset. Per tap: its shift
    # along the first axis, and the (target, source) slices of the other axes, the
    # same for every block; taps that land outside the input are left out.
    placements = []
    for t, offset in enumerate(itertools.product(*[range(k) for k in kernel])):
        target, source = [], []
        for n_o, n_i, p, k in zip(inner, size[1:], padding[1:], offset[1:], strict=True):
            i0 = k - p
            lo, hi = max(0, i0), min(n_i, i0 + n_o)
            if lo >= hi:
                break
            target.append(slice(lo, hi))
            source.append(slice(lo - i0, hi - i0))
        else:
            placements.append((t, offset[0] - padding[0], target, source))
    out = s.new_zeros((n_batch, c_in, *size))
    for b in range(n_batch):
        for start in range(0, s.shape[2], block):
            stop = min(s.shape[2], start + block)
            u = torch.matmul(matrix, s[b, :, start:stop].reshape(c_out, -1))
            u = u.reshape(c_in, taps, stop - start, *inner)
            for t, shift, target, source in placements:
                i0 = start + shift
                lo, hi = max(0, i0), min(size[0], i0 + stop - start)
                if lo < hi:
                    out[(b, slice(None), slice(lo, hi), *target)] += (
                        u[(slice(None), t, slice(lo - i0, hi - i0), *source)])
    return out


class LayerOps:
    """A Linear or ConvNd layer seen as a linear map, for rules to build on.

    Rules need the layer's map with modified weights (``w+``, ``w-``, ...) and its
    transpose. This class gives both for Linear and Conv1d/2d/3d alike, so every
    rule is written once, and it stacks several weight sets into one call where
    that is exact (``groups == 1``), because one convolution with twice the
    channels is cheaper than two.

    Parameters
    ----------
    module : nn.Linear or nn.Conv1d/2d/3d
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self.weight: Tensor = module.weight
        self.bias: Tensor | None = module.bias
        if isinstance(module, nn.Linear):
            self.spatial_dims = 0
            self.channel_dim = -1
            self.groups = 1
        else:
            self.spatial_dims = len(module.kernel_size)
            self.channel_dim = 1
            self.kernel_size = tuple(module.kernel_size)
            self.stride = tuple(module.stride)
            self.dilation = tuple(module.dilation)
            self.padding = _conv_padding(module)
            self.groups = int(module.groups)

    # -- the map and its transpose -------------------------------------------------
    def forward(self, x: Tensor, weight: Tensor) -> Tensor:
        """The layer's map of ``x`` with ``weight`` and no bias."""
        if self.spatial_dims == 0:
            return F.linear(x, weight)
        return convolve(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def transpose(self, s: Tensor, weight: Tensor, x: Tensor) -> Tensor:
        """The transposed map (the input gradient of :meth:`forward`) applied to ``s``.

        ``x`` is the layer's input; only its shape (and device) is used.
        """
        if self.spatial_dims == 0:
            return torch.matmul(s, weight)
        size = tuple(x.shape[2:])
        kernel = self.transpose_kernel(weight, s.device)
        if kernel == "shifts":
            return _transpose_by_shifts(s, weight, size, self.padding)
        if kernel == "phases":
            return _transpose_by_phases(s, weight, size, self.stride, self.padding)
        if kernel == "flipped":
            g = self.groups
            c_out, c_in_g = weight.shape[:2]
            flipped = (weight.reshape(g, c_out // g, c_in_g, *self.kernel_size)
                       .transpose(1, 2).reshape(g * c_in_g, c_out // g, *self.kernel_size)
                       .flip(tuple(range(2, 2 + self.spatial_dims))))
            pad = [d * (k - 1) - p for d, k, p in
                   zip(self.dilation, self.kernel_size, self.padding, strict=True)]
            return convolve(s, flipped, None, 1, pad, self.dilation, g)
        if x.shape[1] != weight.shape[1] * self.groups:  # stacked weights: x gives the size only
            x = x.new_empty((x.shape[0], weight.shape[1] * self.groups, *size))
        return torch.ops.aten.convolution_backward(
            s, x, weight, None, list(self.stride), list(self.padding), list(self.dilation),
            False, [0] * self.spatial_dims, self.groups, [True, False, False])[0]

    def transpose_kernel(self, weight: Tensor, device: torch.device) -> str:
        """How :meth:`transpose` computes the transposed map of a convolution.

        All four ways are exact (the same products, summed in another order); on CPU
        the fastest depends on the shape, because oneDNN's transposed convolution
        into few channels (an input layer has one) uses its vector units poorly:
        7 x 7 x 7 into one channel runs ~8x slower than the forward map.

        - ``"shifts"`` (CPU, stride 1, up to 4 channels and 512 channel-taps): one
          matrix product maps a few slices of ``s`` to every tap's contribution, and
          shifted additions place them, block by block of slices so that they stay
          in cache. The paper's 3 x 3 x 3 input layer from 8 channels at 1 mm:
          0.24 s against 1.1 s (flipped) and 2.1 s (oneDNN's backward kernel).
        - ``"phases"`` (CPU, strided with up to 16 channels, or stride 1 with up
          to 4): input positions split into ``prod(stride)`` phases (8 at stride
          1) make it one forward convolution with that many times the channels.
          DenseNet121's 7 x 7 x 7 input layer at stride 2, 2 mm: 0.19 s against
          0.70 s; the box rule's two stacked maps of a MONAI ResNet's 7 x 7 x 7
          input layer at stride 1 (two threads): 1.45 s, shifts 2.0 s, oneDNN 2.3 s.
        - ``"flipped"`` (CPU, stride 1): a forward convolution with the flipped,
          transposed kernel, ~1.5-2x faster than oneDNN's backward kernel for
          wide layers.
        - ``"backward"``: the convolution's own input gradient (GPU, and the rest).

        Times: one thread of the 2-core benchmark machine (AVX-512) unless noted.
        """
        c_in = weight.shape[1]
        if device.type != "cpu":
            return "backward"
        plain = self.groups == 1 and all(d == 1 for d in self.dilation)
        unit_stride = all(st == 1 for st in self.stride)
        taps = math.prod(self.kernel_size)
        if plain and unit_stride and c_in <= 4 and c_in * taps <= 512:
            return "shifts"
        if plain and ((not unit_stride and c_in <= 16) or (unit_stride and c_in <= 4)):
            return "phases"
        if unit_stride and all(d * (k - 1) >= p for d, k, p in
                               zip(self.dilation, self.kernel_size, self.padding, strict=True)):
            return "flipped"
        return "backward"

    def forward_constant(self, value: float, weight: Tensor, x: Tensor) -> Tensor:
        """:meth:`forward` of an input that equals ``value`` everywhere (shaped like
        ``x``), without convolving a constant image.

        With zero padding, output ``o`` of a convolution sees the taps whose input
        position is inside the image; that is a product of one indicator per axis, so
        the map is ``value * sum_t W(t) I_1(t_1, o_1) I_2(t_2, o_2) ...`` with ``W`` the
        kernel summed over its input channels. Along each axis only the outputs
        within a kernel of the border see a different set of taps; the sum is
        computed once per such set (a few small contractions) and then copied out
        to the full grid (exact up to float rounding; for a 7 x 7 x 7 input layer
        ~50x cheaper than convolving). Returns a tensor that broadcasts against the
        layer's output for ``x``.
        """
        if self.spatial_dims == 0:
            return value * weight.sum(dim=1)
        summed = weight.sum(dim=1)  # (C_out, k_1, ..., k_d)
        operands: list = [summed, [0, *range(1, 1 + self.spatial_dims)]]
        out_axes = [0]
        expand: list[Tensor] = []
        for a in range(self.spatial_dims):
            n = x.shape[2 + a]
            k, st, p, d = self.kernel_size[a], self.stride[a], self.padding[a], self.dilation[a]
            size = (n + 2 * p - d * (k - 1) - 1) // st + 1
            pos = (torch.arange(size, device=x.device)[None, :] * st - p
                   + torch.arange(k, device=x.device)[:, None] * d)
            inside = (pos >= 0) & (pos < n)  # (k, size): tap in the image
            sets, which = torch.unique(inside, dim=1, return_inverse=True)
            operands += [sets.to(weight.dtype), [1 + a, 1 + self.spatial_dims + a]]
            out_axes.append(1 + self.spatial_dims + a)
            expand.append(which)
        out = value * torch.einsum(*operands, out_axes)  # (C_out, sets_1, ..., sets_d)
        for a, which in enumerate(expand):
            out = out.index_select(1 + a, which)
        return out[None]

    # -- several weight sets at once -------------------------------------------------
    def forward_many(self, x: Tensor, weights: Sequence[Tensor]
                     ) -> tuple[list[Tensor], Tensor | None]:
        """The map of ``x`` with each of ``weights``: ``(outputs, stacked)``.

        With ``groups == 1`` the outputs are computed by one call and returned as
        views into ``stacked``, the output with all channels; a rule may overwrite
        the views in place and pass ``stacked`` to :meth:`transpose_many`.
        Otherwise ``stacked`` is None.
        """
        if self.groups != 1 or len(weights) == 1:
            return [self.forward(x, w) for w in weights], None
        stacked = self.forward(x, torch.cat(list(weights), dim=0))
        n = weights[0].shape[0]
        return list(stacked.split(n, dim=self.channel_dim)), stacked

    def transpose_many(self, ss: Sequence[Tensor], weights: Sequence[Tensor], x: Tensor,
                       stacked: Tensor | None = None) -> Tensor:
        """``sum_k transpose(ss[k], weights[k])``, as one call when ``groups == 1``.

        Pass ``stacked`` when ``ss`` are the views :meth:`forward_many` returned, to
        save concatenating them again.
        """
        if self.groups != 1 or len(weights) == 1:
            total = self.transpose(ss[0], weights[0], x)
            for s, w in zip(ss[1:], weights[1:], strict=True):
                total = total + self.transpose(s, w, x)
            return total
        if stacked is None:
            stacked = torch.cat(list(ss), dim=self.channel_dim)
        return self.transpose(stacked, torch.cat(list(weights), dim=0), x)

    def transpose_inputs(self, s: Tensor, weights: Sequence[Tensor], x: Tensor) -> list[Tensor]:
        """``[transpose(s, w, x) for w in weights]``, as one call when ``groups == 1``.

        The weights are stacked along their input channels, so the transposed map
        fills ``len(weights)`` times the channels at once: for an input layer with
        one channel this costs about as much as a single transpose.
        """
        if self.groups != 1 or len(weights) == 1:
            return [self.transpose(s, w, x) for w in weights]
        n = weights[0].shape[1]
        stacked = self.transpose(s, torch.cat(list(weights), dim=1), x)
        return list(stacked.split(n, dim=self.channel_dim))

    def add_bias(self, z: Tensor, bias: Tensor | None) -> Tensor:
        """``z`` plus a per-output-channel ``bias`` (unchanged when ``bias`` is None)."""
        if bias is None:
            return z
        if self.spatial_dims == 0:
            return z + bias
        return z + bias.reshape(-1, *([1] * self.spatial_dims))


@dataclass(frozen=True)
class Layer:
    """A module as a rule sees it during the backward pass.

    Attributes
    ----------
    module : nn.Module
    forward : callable
        The module's own forward, unaffected by the patch that routes calls
        through the rule (calling ``module(x)`` inside a rule would recurse).
    """

    module: nn.Module
    forward: Callable[..., Tensor]


class Rule(ABC):
    """How relevance passes one layer: ``R_in = rule(layer, x, y, R_out)``.

    Subclasses declare which forward tensors they need (``needs_input``,
    ``needs_output``), so the forward pass keeps nothing that is not used, and
    whether they conserve relevance (``conserving``; see :func:`conserves`).
    """

    needs_input: bool = True
    needs_output: bool = False
    #: The input relevance of every output with some contribution sums to that
    #: output's relevance (up to the stabiliser). Rules that absorb relevance by
    #: design (epsilon, gamma with biases) or drop it (z+) say False.
    conserving: bool = False

    @abstractmethod
    def backward(self, layer: Layer, x: Tensor | tuple[Tensor, ...] | None, y: Tensor | None,
                 relevance: Tensor) -> Tensor | tuple[Tensor, ...]:
        """Relevance of the layer's input from the relevance of its output.

        Parameters
        ----------
        layer : Layer
        x, y : Tensor or None
            The layer's input and output from the forward pass (None unless needed).
            For a layer with several inputs (:class:`~brainlrp.explain.lrp.layers.Sum`,
            :class:`~brainlrp.explain.lrp.layers.Concat`) ``x`` is their tuple and
            the rule returns one relevance per input.
        relevance : Tensor
            Relevance of the output, shaped like ``y``.
        """

    def __repr__(self) -> str:
        hidden = {"needs_input", "needs_output", "conserving"}
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if not k.startswith("_") and k not in hidden)
        return f"{type(self).__name__}({params})"


class LinearRule(Rule):
    """A rule for Linear and ConvNd layers, written against :class:`LayerOps`."""

    def backward(self, layer: Layer, x: Tensor | None, y: Tensor | None,
                 relevance: Tensor) -> Tensor:
        return self.propagate(LayerOps(layer.module), x, y, relevance)

    @abstractmethod
    def propagate(self, ops: LayerOps, x: Tensor, y: Tensor | None,
                  relevance: Tensor) -> Tensor:
        """Input relevance of a linear layer; see :meth:`Rule.backward`."""


class _RuleFunction(torch.autograd.Function):
    """Forward: the layer's own forward. Backward: the layer's rule."""

    @staticmethod
    def forward(ctx, layer: Layer, rule: Rule, *xs: Tensor) -> Tensor:
        y = layer.forward(*xs)
        if any(y is x for x in xs):
            # autograd needs a fresh output tensor from a custom function.
            y = y.clone()
        ctx.layer, ctx.rule, ctx.n_inputs = layer, rule, len(xs)
        kept = xs if rule.needs_input else (None,) * len(xs)
        ctx.save_for_backward(*kept, y if rule.needs_output else None)
        return y

    @staticmethod
    def backward(ctx, relevance: Tensor) -> tuple[Tensor | None, ...]:
        *xs, y = ctx.saved_tensors
        x = xs[0] if ctx.n_inputs == 1 else tuple(xs)
        out = ctx.rule.backward(ctx.layer, x, y, relevance)
        return (None, None, *(out if ctx.n_inputs > 1 else (out,)))


def check_supported(model: nn.Module, supported: tuple[type[nn.Module], ...] = SUPPORTED_TYPES
                    ) -> list[tuple[str, nn.Module]]:
    """The model's leaf modules, after checking that LRP can handle each of them.

    Parameters
    ----------
    model : nn.Module
    supported : tuple of module types
        Leaf types with a rule or a gradient that is their rule; a composite passes
        the types of its layer map, so a rule for a new layer type makes it supported.

    Returns
    -------
    list of (name, module)
        Leaf modules in registration order.

    Raises
    ------
    BrainLRPError
        Naming the first unsupported leaf module, a container that uses parameters
        of its own in its forward, a convolution with non-zero padding mode, or
        padding with a constant other than zero.
    """
    leaves = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            own = [n for n, p in module.named_parameters(recurse=False) if p is not None]
            if own:
                raise BrainLRPError(
                    f"LRP does not support {_module_label(name, module)}: it uses its own "
                    f"parameters ({', '.join(own)}) in its forward, where rules cannot see them",
                    "move the computation into a supported layer "
                    "(Conv1d/2d/3d, Linear, BatchNorm, ...)")
            continue
        if not isinstance(module, supported) and not _only_reshapes(module):
            names = ", ".join(sorted({t.__name__ for t in supported}))
            raise BrainLRPError(
                f"LRP does not support the layer {_module_label(name, module)}",
                f"use a model built from {names}, or give the layer a rule in the "
                "composite's layer map")
        if isinstance(module, PAD_TYPES) and module.value != 0:
            raise BrainLRPError(
                f"LRP does not support {_module_label(name, module)} with "
                f"value={module.value}: the padded voxels would take relevance from the "
                "layers above and give it to nothing", "pad with zeros")
        if isinstance(module, CONV_TYPES):
            if module.padding_mode != "zeros":
                raise BrainLRPError(
                    f"LRP does not support {_module_label(name, module)} with "
                    f"padding_mode={module.padding_mode!r}", "use padding_mode='zeros'")
            _conv_padding(module)
        leaves.append((name, module))
    return leaves


def _only_reshapes(module: nn.Module) -> bool:
    """Whether ``module`` is one of :data:`RESHAPE_LAYERS`, holding no tensors."""
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    return (kind in RESHAPE_LAYERS and next(module.parameters(), None) is None
            and next(module.buffers(), None) is None)


def _node_kind(node: object) -> str:
    return type(node).__name__.rstrip("0123456789")


def _producers(node: object, labels: Mapping[int, str], limit: int = 3) -> list[str]:
    """Labels of the nearest rule layers below ``node`` (towards the input)."""
    found: list[str] = []
    stack, seen = [node], set()
    while stack and len(found) < limit:
        current = stack.pop()
        for child, _ in reversed(current.next_functions):
            if child is None or id(child) in seen:
                continue
            seen.add(id(child))
            layer = getattr(child, "layer", None)
            if isinstance(layer, Layer):
                found.append(labels.get(id(layer.module), type(layer.module).__name__))
            elif _node_kind(child) == "AccumulateGrad":
                found.append("the input")
            else:
                stack.append(child)
    return found


def check_graph(output: Tensor, model: nn.Module) -> None:
    """Check that relevance from ``output`` reaches the input only through rules.

    Walks the autograd graph of ``output`` (computed inside :func:`attach_rules`):
    every node must be a layer's rule or an operation whose gradient is its LRP
    rule (:data:`GRADIENT_IS_RULE_NODES`). Anything else, such as a residual
    addition, a concatenation or an arithmetic call in a ``forward``, would change
    relevance without a rule (a residual ``x + f(x)`` doubles it) and is refused.

    Raises
    ------
    BrainLRPError
        Naming the operation and the layers that feed it.
    """
    if output.grad_fn is None:
        return
    labels = {id(m): _module_label(name, m) for name, m in model.named_modules()}
    stack, seen = [(output.grad_fn, "the output")], {id(output.grad_fn)}
    while stack:
        node, consumer = stack.pop()
        layer = getattr(node, "layer", None)
        if isinstance(layer, Layer):
            consumer = labels.get(id(layer.module), type(layer.module).__name__)
        elif _node_kind(node) not in GRADIENT_IS_RULE_NODES:
            operation = _node_kind(node).removesuffix("Backward").lower()
            inputs = " and ".join(_producers(node, labels)) or "constants"
            raise BrainLRPError(
                f"LRP has no rule for the operation {operation!r} ({type(node).__name__}) "
                f"that combines the output of {inputs} before {consumer}; its gradient "
                "would change relevance silently (a residual x + f(x) doubles it)",
                "write the block's forward so torch.fx can trace it (no Python control "
                "flow on tensor values; additions and concatenations are then routed "
                "through Sum/Concat layers), or do the operation in a module the "
                "composite has a rule for")
        for child, _ in node.next_functions:
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                stack.append((child, consumer))


@torch.no_grad()
def batchnorm_affine(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` of an eval-mode BatchNorm: ``norm(x) = x * scale + shift``."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


def has_offset(module: nn.Module) -> bool:
    """Whether ``module`` adds something independent of its input (a bias or shift).

    An output with no contributions from its input is then non-zero and may carry
    relevance that no input can take, so a network with offsets does not conserve
    relevance even under conserving rules. Normalisations by the sample's own
    statistics shift by its mean and count as offsets.
    """
    if isinstance(module, SAMPLE_NORM_TYPES):
        return True
    if isinstance(module, BATCHNORM_TYPES):
        if module.running_mean is None:
            return True
        _, shift = batchnorm_affine(module)
        return bool(shift.abs().max() > 0)
    bias = getattr(module, "bias", None)
    return isinstance(bias, Tensor) and bool(bias.detach().abs().max() > 0)


def first_linear_layer(model: nn.Module) -> nn.Module | None:
    """The first Linear/ConvNd layer in registration order, if any.

    Only a guess at the input layer: a model may register its classifier before
    its convolutions. :func:`graph_input_layers` reads the input layer from a
    forward pass instead.
    """
    for module in model.modules():
        if isinstance(module, LINEAR_LAYER_TYPES):
            return module
    return None


@dataclass(frozen=True)
class InputLayers:
    """The Linear/ConvNd layers that read a model's input, from one of its graphs.

    Attributes
    ----------
    layers : tuple of nn.Module
        Layers whose input is the model input, or computed from it without
        another Linear/ConvNd layer between (activations, normalisations,
        pooling, reshapes and merges do not count).
    shared : tuple of nn.Module
        Those of ``layers`` that the model also calls on other tensors: a rule
        for the input layer would act on those calls too.
    direct : bool
        The input reaches the output past every Linear/ConvNd layer.
    """

    layers: tuple[nn.Module, ...]
    shared: tuple[nn.Module, ...] = ()
    direct: bool = False

    @property
    def single(self) -> nn.Module | None:
        """The input layer when there is exactly one and nothing else reads the input."""
        if len(self.layers) == 1 and not self.shared and not self.direct:
            return self.layers[0]
        return None


def graph_input_layers(output: Tensor, x: Tensor) -> InputLayers:
    """The layers that read ``x`` in the autograd graph of ``output``.

    ``output`` must come from a forward pass inside :func:`attach_rules` with
    every Linear/ConvNd layer routed through a rule (so each call is a node that
    names its module) and ``x`` a leaf tensor that requires grad. This is the
    graph the backward pass runs on, so it shows which layer really gets the
    input, whatever order the model registers its layers in.
    """
    root = output.grad_fn
    if root is None:
        return InputLayers(())
    # reaches[id(node)]: x is below the node with no Linear/ConvNd call between.
    reaches: dict[int, bool] = {}
    expanded: set[int] = set()
    readers: dict[int, nn.Module] = {}
    others: set[int] = set()
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = [child for child, _ in node.next_functions if child is not None]
        if done:
            hit = any(reaches.get(id(child), False) for child in children)
            layer = getattr(node, "layer", None)
            if isinstance(layer, Layer) and isinstance(layer.module, LINEAR_LAYER_TYPES):
                if hit:
                    readers[id(layer.module)] = layer.module
                else:
                    others.add(id(layer.module))
                hit = False
            reaches[key] = hit
        elif key not in reaches and key not in expanded:
            if _node_kind(node) == "AccumulateGrad":
                reaches[key] = node.variable is x
                continue
            expanded.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in reaches)
    return InputLayers(tuple(readers.values()),
                       tuple(m for k, m in readers.items() if k in others),
                       reaches.get(id(root), False))


_MISSING = object()


@contextlib.contextmanager
def attach_rules(rules: Mapping[nn.Module, Rule]) -> Iterator[None]:
    """Route each module's forward through its rule; undo it on exit, even on error.

    Parameters
    ----------
    rules : mapping of nn.Module to Rule
        Modules not in the mapping keep their forward (and their plain gradient).
    """
    patched: list[tuple[nn.Module, object]] = []
    try:
        for module, rule in rules.items():
            previous = module.__dict__.get("forward", _MISSING)
            layer = Layer(module, _plain_conv_forward(module) or module.forward)

            def forward(*xs: Tensor, _layer: Layer = layer, _rule: Rule = rule,
                        **kwargs) -> Tensor:
                if kwargs or not xs or not all(isinstance(x, Tensor) for x in xs):
                    raise BrainLRPError(
                        f"LRP expects {type(_layer.module).__name__} to take tensors only, "
                        "as positional arguments", "call the layer with its input tensor(s)")
                return _RuleFunction.apply(_layer, _rule, *xs)

            # An instance attribute shadows the class's forward without touching
            # the class, so other instances and the user's code are unaffected.
            module.forward = forward
            patched.append((module, previous))
        yield
    finally:
        for module, previous in reversed(patched):
            if previous is _MISSING:
                del module.forward
            else:
                module.forward = previous
