"""Every rule against its slow matrix form (float64 Jacobian, explicit sums over i, j)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain.lrp import (
    AlphaBeta,
    Epsilon,
    Gamma,
    Layer,
    LayerOps,
    ZBox,
    ZPlus,
    attach_rules,
)
from tests.explain.reference import (
    alphabeta_matrix,
    epsilon_matrix,
    gamma_matrix,
    layer_matrix,
    zbox_matrix,
)

# (id, layer factory, input shape without batch); strides, groups and dilation take
# the engine's other code paths (convolution_backward, per-group maps).
LAYERS = [
    ("linear", lambda: nn.Linear(9, 6), (9,)),
    ("conv1d", lambda: nn.Conv1d(2, 4, 3, padding=1), (2, 11)),
    ("conv1d-stride-groups", lambda: nn.Conv1d(2, 4, 3, stride=2, groups=2), (2, 11)),
    ("conv2d", lambda: nn.Conv2d(2, 4, (2, 3), padding=1, dilation=(1, 2)), (2, 7, 8)),
    ("conv2d-stride", lambda: nn.Conv2d(2, 4, 3, stride=(2, 1)), (2, 7, 8)),
    ("conv3d", lambda: nn.Conv3d(2, 4, 3, padding=1), (2, 5, 6, 7)),
    ("conv3d-groups-stride", lambda: nn.Conv3d(2, 4, 3, groups=2, stride=(1, 2, 1)),
     (2, 5, 6, 7)),
    # Input layers (one channel, large kernels) take the transpose by phases.
    ("conv3d-input-k7", lambda: nn.Conv3d(1, 4, 7, padding=3), (1, 8, 7, 9)),
    ("conv3d-input-stride", lambda: nn.Conv3d(1, 4, (5, 3, 4), stride=(2, 3, 1), padding=(2, 1, 0)),
     (1, 9, 8, 7)),
]
LAYER_IDS = [name for name, _, _ in LAYERS]


def make_layer(factory, seed: int = 0) -> nn.Module:
    """A layer whose output channel 0 has only positive and channel 1 only negative
    weights, so that with non-negative inputs both zero-side cases occur."""
    torch.manual_seed(seed)
    layer = factory()
    with torch.no_grad():
        layer.weight[0] = layer.weight[0].abs()
        layer.weight[1] = -layer.weight[1].abs()
        layer.bias.copy_(0.3 * torch.randn_like(layer.bias))
    return layer


def make_input(shape: tuple[int, ...], kind: str, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "nonneg":
        x = torch.rand(1, *shape, generator=gen)
        x[..., : shape[-1] // 3] = 0.0  # a dead region: outputs that see only zeros
    else:
        x = 2 * torch.rand(1, *shape, generator=gen) - 1
    return x


def run_rule(rule, layer: nn.Module, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        y = layer(x)
        return rule.backward(Layer(layer, layer.forward), x, y, r)


def relevance_for(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = layer(x)
    gen = torch.Generator().manual_seed(1)
    return torch.randn(out.shape, generator=gen)


def assert_matches(ours: torch.Tensor, ref: torch.Tensor) -> None:
    ours = ours.double().flatten()
    scale = ref.abs().max()
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * float(scale))


@pytest.mark.parametrize("kind", ["nonneg", "mixed"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=LAYER_IDS)
def test_alphabeta_matches_matrix_form(name, factory, shape, beta, kind):
    layer = make_layer(factory)
    x = make_input(shape, kind)
    r = relevance_for(layer, x)
    w, _ = layer_matrix(layer, shape)
    ref = alphabeta_matrix(w, x.double().flatten(), r.double().flatten(), beta)
    assert_matches(run_rule(AlphaBeta(beta=beta), layer, x, r), ref)


@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=LAYER_IDS)
def test_zero_side_cases_occur_and_conserve(name, factory, shape):
    """Outputs with only positive / only negative contributions keep all relevance."""
    layer = make_layer(factory)
    x = make_input(shape, "nonneg")
    w, _ = layer_matrix(layer, shape)
    z = x.double().flatten()[None, :] * w
    pos, neg = z.clamp(min=0).sum(1), z.clamp(max=0).sum(1)
    assert ((neg == 0) & (pos > 0)).any(), "no positive-only output: the test lost its case"
    assert ((pos == 0) & (neg < 0)).any(), "no negative-only output: the test lost its case"
    r = relevance_for(layer, x).abs()
    live = ((pos != 0) | (neg != 0)).reshape(r.shape)
    out = run_rule(AlphaBeta(beta=0.5), layer, x, r)
    torch.testing.assert_close(out.sum().double(), (r * live).sum().double(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("zero_bias", [False, True])
@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=LAYER_IDS)
def test_epsilon_matches_matrix_form(name, factory, shape, zero_bias):
    layer = make_layer(factory)
    x = make_input(shape, "mixed")
    r = relevance_for(layer, x)
    w, b = layer_matrix(layer, shape)
    ref = epsilon_matrix(w, b * (not zero_bias), x.double().flatten(), r.double().flatten(), 0.1)
    assert_matches(run_rule(Epsilon(0.1, zero_bias=zero_bias), layer, x, r), ref)


@pytest.mark.parametrize(("low", "high", "kind"), [(0.0, 1.0, "nonneg"), (-1.0, 1.0, "mixed")])
@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=LAYER_IDS)
def test_zbox_matches_matrix_form(name, factory, shape, low, high, kind):
    layer = make_layer(factory)
    x = make_input(shape, kind)
    r = relevance_for(layer, x)
    w, _ = layer_matrix(layer, shape)
    ref = zbox_matrix(w, x.double().flatten(), r.double().flatten(), low, high)
    assert_matches(run_rule(ZBox(low, high), layer, x, r), ref)


@pytest.mark.parametrize("kind", ["nonneg", "mixed"])
@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=LAYER_IDS)
def test_gamma_matches_matrix_form(name, factory, shape, kind):
    layer = make_layer(factory)
    x = make_input(shape, kind)
    r = relevance_for(layer, x)
    w, b = layer_matrix(layer, shape)
    ref = gamma_matrix(w, b, x.double().flatten(), r.double().flatten(), 0.25)
    assert_matches(run_rule(Gamma(0.25), layer, x, r), ref)


def test_zplus_is_alphabeta_one_zero():
    layer = make_layer(LAYERS[5][1])
    x = make_input(LAYERS[5][2], "mixed")
    r = relevance_for(layer, x)
    torch.testing.assert_close(run_rule(ZPlus(), layer, x, r),
                               run_rule(AlphaBeta(1.0, 0.0), layer, x, r))


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_rule_through_autograd_equals_direct_call(beta):
    """The custom backward carries exactly the rule (batched, through attach_rules)."""
    layer = make_layer(LAYERS[5][1])
    x = torch.cat([make_input(LAYERS[5][2], "nonneg", s) for s in range(3)])
    r = relevance_for(layer, x)
    rule = AlphaBeta(beta=beta)
    with attach_rules({layer: rule}):
        xx = x.clone().requires_grad_(True)
        (through,) = torch.autograd.grad(layer(xx), xx, r)
    assert "forward" not in layer.__dict__
    per_sample = torch.cat([run_rule(rule, layer, x[i:i + 1], r[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(through, per_sample)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.sampled_from([0.25, 0.5, 1.0, 2.0]),
       n_in=st.integers(2, 12), n_out=st.integers(1, 6))
def test_alphabeta_conserves_relevance(seed, beta, n_in, n_out):
    """For beta > 0 every output with any contribution passes on exactly its relevance."""
    torch.manual_seed(seed)
    layer = nn.Linear(n_in, n_out)
    x = torch.rand(1, n_in) + 0.01  # no dead outputs
    r = torch.rand(1, n_out)
    # A negligible stabiliser: the default 1e-6 itself absorbs eps / |z-| of relevance.
    out = run_rule(AlphaBeta(beta=beta, epsilon=1e-12), layer, x, r)
    torch.testing.assert_close(out.sum(), r.sum(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("factory", "message"), [
    (lambda: AlphaBeta(alpha=2, beta=0.5), "alpha - beta must equal 1, got alpha=2, beta=0.5"),
    (lambda: AlphaBeta(beta=-0.5), "beta must be >= 0, got beta=-0.5"),
    (lambda: AlphaBeta(epsilon=0), "epsilon must be a positive number, got epsilon=0"),
    (lambda: Epsilon(-1), "epsilon must be a positive number"),
    (lambda: ZBox(1.0, 0.0), "low must be below high"),
    (lambda: Gamma(-0.1), "gamma must be >= 0, got gamma=-0.1"),
])
def test_rules_validate_parameters(factory, message):
    with pytest.raises(BrainLRPError, match=message.replace("(", r"\(")):
        factory()


def test_alpha_defaults_to_one_plus_beta():
    rule = AlphaBeta(beta=0.75)
    assert (rule.alpha, rule.beta) == (1.75, 0.75)
    assert "AlphaBeta(alpha=1.75, beta=0.75" in repr(rule)


@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=LAYER_IDS)
def test_constant_input_map_equals_the_convolution_of_a_constant_image(name, factory, shape):
    # ZBox and Flat map constant images; forward_constant does it without convolving.
    layer = make_layer(factory).double()
    ops = LayerOps(layer)
    x = make_input(shape, "mixed").double()
    for value, weight in ((0.7, layer.weight), (-1.5, layer.weight.clamp(max=0)),
                          (1.0, torch.ones_like(layer.weight))):
        expected = ops.forward(torch.full_like(x, value), weight)
        got = ops.forward_constant(value, weight, x)
        torch.testing.assert_close(got.expand_as(expected), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("c_in", "kernel", "stride", "padding", "way"), [
    (1, 7, 1, 3, "shifts"),              # a MONAI ResNet's input layer
    (1, 3, 1, 0, "shifts"),              # the paper's input layer
    (3, (5, 2, 4), 1, (2, 0, 4), "shifts"),
    (2, 7, 1, 3, "phases"),              # the box rule's two maps of that layer
    (1, 7, 2, 3, "phases"),              # DenseNet121's input layer
    (3, (5, 2, 4), (1, 2, 3), (2, 0, 4), "phases"),
    (2, 5, (1, 1, 2), 0, "phases"),
    (8, 3, 1, 1, "flipped"),
    (20, 3, 2, 1, "backward"),
])
def test_transpose_is_the_input_gradient(c_in, kernel, stride, padding, way):
    # Every way of computing the transposed map is the layer's input gradient
    # (float64), for a batch of two and for weights stacked along input channels.
    torch.manual_seed(0)
    layer = nn.Conv3d(c_in, 5, kernel, stride=stride, padding=padding).double()
    ops = LayerOps(layer)
    assert ops.transpose_kernel(layer.weight, torch.device("cpu")) == way
    x = torch.randn(2, c_in, 11, 9, 13, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.conv3d(x, layer.weight, None, layer.stride, layer.padding)
    s = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, s)
    torch.testing.assert_close(ops.transpose(s, layer.weight, x), expected, rtol=1e-12, atol=1e-12)
    both = ops.transpose_inputs(s, [layer.weight, 2 * layer.weight], x)
    torch.testing.assert_close(both[1], 2 * expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch, c_in, c_out, kernel, stride, padding, groups", [
    (1, 1, 16, 3, 1, 0, 1),          # the paper's input layer (PyTorch: im2col)
    (2, 4, 6, (3, 2, 5), (2, 1, 3), (1, 0, 2), 2),
    (1, 3, 5, 7, 2, 3, 1),
    (1, 64, 16, 3, 1, 1, 1),         # a deep layer on a small grid
])
def test_convolve_is_the_convolution(batch, c_in, c_out, kernel, stride, padding, groups):
    # The engine's float32 convolutions (oneDNN on CPU) compute the layer's map:
    # against float64 within float32 rounding (of the largest output), with and
    # without a bias, also for a non-contiguous input; float64 takes PyTorch's own
    # kernel.
    from brainlrp.explain.lrp.core import convolve

    torch.manual_seed(2)
    x = torch.randn(batch, c_in, 13, 10, 11).transpose(2, 4).contiguous().transpose(2, 4)
    k = (kernel,) * 3 if isinstance(kernel, int) else kernel
    w = torch.randn(c_out, c_in // groups, *k)
    b = torch.randn(c_out)
    for bias in (None, b):
        expected = torch.nn.functional.conv3d(
            x.double(), w.double(), None if bias is None else bias.double(), stride, padding,
            1, groups)
        got = convolve(x, w, bias, stride, padding, 1, groups)
        assert got.dtype == torch.float32
        scale = float(expected.abs().max())
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=2e-6 * scale)
        torch.testing.assert_close(convolve(x.double(), w.double(), None if bias is None
                                            else bias.double(), stride, padding, 1, groups),
                                   expected, rtol=1e-12, atol=1e-12)


def test_plain_conv_forward_only_for_plain_conv3d():
    # Only Conv3d's own forward with zero padding is replaced; a subclass that
    # changes the forward, or another padding mode, keeps its own.
    from brainlrp.explain.lrp.core import _plain_conv_forward

    class Standardized(nn.Conv3d):
        def forward(self, x):
            return super().forward(x) * 2

    torch.manual_seed(3)
    x = torch.randn(1, 2, 9, 8, 7)
    plain = nn.Conv3d(2, 3, 3, padding="same")
    torch.testing.assert_close(_plain_conv_forward(plain)(x), plain(x), rtol=1e-5, atol=1e-5)
    assert _plain_conv_forward(Standardized(2, 3, 3)) is None
    assert _plain_conv_forward(nn.Conv3d(2, 3, 3, padding=1, padding_mode="reflect")) is None
    assert _plain_conv_forward(nn.Conv2d(2, 3, 3)) is None


def test_transpose_by_shifts_in_small_blocks(monkeypatch):
    # The shifted additions run block by block of slices; blocks of one or two
    # slices (and a last, shorter block) give the same map.
    from brainlrp.explain.lrp import core

    torch.manual_seed(1)
    layer = nn.Conv3d(2, 3, (3, 2, 4), padding=(1, 0, 2)).double()
    ops = LayerOps(layer)
    x = torch.randn(1, 2, 7, 6, 8, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.conv3d(x, layer.weight, None, 1, layer.padding)
    s = torch.randn_like(y)
    (expected,) = torch.autograd.grad(y, x, s)
    taps_per_slice = 2 * 3 * 2 * 4 * y.shape[3] * y.shape[4]
    for slices in (1, 2):
        monkeypatch.setattr(core, "_SHIFT_BLOCK", slices * taps_per_slice)
        torch.testing.assert_close(ops.transpose(s, layer.weight, x), expected,
                                   rtol=1e-12, atol=1e-12)
