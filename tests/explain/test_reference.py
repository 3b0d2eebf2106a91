"""Methods against a reference image (lrp-ref, ig-ref, occlusion-ref), the flat rule,
the best-practice composites and the model-free floors (edges, noise)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain import explain
from brainlrp.explain.lrp import Flat, Layer, RescaleLinear, lrp
from tests.explain.conftest import TINY_SHAPE, brain_like, randomize_batchnorm, seeded_model
from tests.explain.reference import (
    EPS,
    alphabeta_matrix,
    epsilon_matrix,
    flat_matrix,
    gamma_matrix,
    layer_matrix,
    rescale_matrix,
    zbox_matrix,
)
from tests.explain.test_rules import LAYER_IDS, LAYERS, make_input, make_layer, relevance_for

PAPER_GRID = (80, 84, 88)


def total(r: torch.Tensor) -> torch.Tensor:
    return r.double().sum(tuple(range(1, r.ndim)))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double().flatten(), b.double().flatten()]))[0, 1])


def output_difference(model, x, ref, start, target=1):
    with torch.no_grad():
        f, g = model(x), model(ref)
    if start == "probability":
        f, g = f.softmax(1), g.softmax(1)
    return (f[:, target] - g[:, target]).double()


# -- single rules in matrix form ----------------------------------------------------

@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=LAYER_IDS)
def test_rescale_linear_matches_matrix_form(name, factory, shape):
    layer = make_layer(factory).double()
    x, ref = make_input(shape, "mixed", 0).double(), make_input(shape, "mixed", 1).double()
    stacked = torch.cat([x, ref])
    with torch.no_grad():
        y = layer(stacked)
    r = relevance_for(layer, x).double()
    out = RescaleLinear().backward(Layer(layer, layer.forward), stacked, y,
                                   torch.cat([r, torch.zeros_like(r)]))
    w, _ = layer_matrix(layer, shape)
    dx = (x - ref).flatten()
    expected = rescale_matrix(w, dx, w @ dx, r.flatten())
    torch.testing.assert_close(out[:1].flatten(), expected, rtol=1e-9, atol=1e-12)
    assert (out[1:] == 0).all()  # the reference's half carries no relevance
    # Biases cancel: the input relevance sums to the output relevance.
    exact = RescaleLinear(epsilon=1e-14).backward(Layer(layer, layer.forward), stacked, y,
                                                  torch.cat([r, torch.zeros_like(r)]))
    torch.testing.assert_close(exact.sum(), r.sum(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=LAYER_IDS)
def test_flat_matches_matrix_form(name, factory, shape):
    layer = make_layer(factory).double()
    x = make_input(shape, "mixed").double()
    r = relevance_for(layer, x).double()
    out = Flat().backward(Layer(layer, layer.forward), x, None, r)
    ones = copy.deepcopy(layer)
    with torch.no_grad():
        ones.weight.fill_(1.0)
    connected, _ = layer_matrix(ones, shape)
    torch.testing.assert_close(out.flatten(), flat_matrix(connected, r.flatten()),
                               rtol=1e-9, atol=1e-12)


# -- lrp-ref: conservation ----------------------------------------------------------

class Residual(nn.Module):
    """Conv, then a residual block with BatchNorm, average pooling, a dense head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv = nn.Conv3d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool3d(2)
        self.mpool = nn.MaxPool3d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 3 * 3 * 4, 8), nn.ReLU(),
                                  nn.Linear(8, 2))

    def forward(self, x):
        h = self.relu(self.stem(x))
        h = self.relu2(self.bn(self.conv(h)) + h)
        return self.head(self.mpool(self.pool(h)))


@pytest.mark.parametrize("start", ["logit", "probability"])
def test_lrp_ref_conserves_the_output_difference(start):
    model = seeded_model("tiny", TINY_SHAPE).double()
    x = brain_like(TINY_SHAPE, batch=2).double()
    ref = brain_like(TINY_SHAPE, batch=1, seed=7).double()
    result = lrp(model, x, "reference", reference=ref, start=start, epsilon=1e-12)
    explained = output_difference(model, x, ref, start)
    torch.testing.assert_close(total(result.relevance), explained, rtol=1e-8, atol=1e-14)
    assert (result.relevance[x == ref.expand_as(x)] == 0).all()  # no difference, no relevance


@pytest.mark.parametrize("start", ["logit", "probability"])
def test_lrp_ref_conserves_through_a_residual_block(start):
    torch.manual_seed(2)
    model = Residual().double().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    shape = (12, 13, 16)
    x = brain_like(shape, batch=2, seed=1).double()
    ref = brain_like(shape, batch=2, seed=2).double()  # one reference per scan
    result = lrp(model, x, "reference", reference=ref, start=start, epsilon=1e-12)
    torch.testing.assert_close(total(result.relevance), output_difference(model, x, ref, start),
                               rtol=1e-8, atol=1e-14)


def test_probability_start_is_the_logit_start_rescaled():
    """The probability start is the rescale rule of p_t on the target logit alone."""
    model = seeded_model("tiny", TINY_SHAPE).double()
    x = brain_like(TINY_SHAPE, batch=2).double()
    ref = brain_like(TINY_SHAPE, batch=1, seed=7).double()
    logit = lrp(model, x, "reference", reference=ref, start="logit").relevance.double()
    prob = lrp(model, x, "reference", reference=ref, start="probability").relevance.double()
    factor = (output_difference(model, x, ref, "probability")
              / output_difference(model, x, ref, "logit"))
    torch.testing.assert_close(prob, logit * factor[:, None, None, None, None])


def test_reference_is_required_and_checked(tiny_model, tiny_input):
    with pytest.raises(BrainLRPError, match="needs? .*reference|none was given"):
        explain(tiny_model, tiny_input, "lrp-ref")
    with pytest.raises(BrainLRPError, match="does not fit scans"):
        explain(tiny_model, tiny_input, "lrp-ref", reference=tiny_input[:, :, :-1])
    with pytest.raises(BrainLRPError, match="'ig' explains against its own baseline.*lrp-ref"):
        explain(tiny_model, tiny_input, "ig", reference=tiny_input[:1])
    with pytest.raises(BrainLRPError, match="takes no reference"):
        lrp(tiny_model, tiny_input, "paper", reference=tiny_input[:1])


# -- lrp-ref equals Captum's DeepLift on the paper's network -------------------------

class _Copy(nn.Module):
    def forward(self, x):
        return x.clone()


def captum_ready(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with a copying module after each ReLU.

    Captum 0.9's DeepLift mishandles a MaxPool fed directly by a hooked ReLU (its
    attributions then do not sum to the output difference, while Captum's own rules
    for ReLU and MaxPool do); a module in between whose gradient is the identity
    restores them.
    """
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Sequential(nn.ReLU(), _Copy()))
    return model


@pytest.mark.parametrize("start", ["logit"])
def test_lrp_ref_equals_captum_deeplift_on_the_paper_network(start):
    from captum.attr import DeepLift

    model = seeded_model("paper", PAPER_GRID, seed=3).double()
    x = brain_like(PAPER_GRID, batch=1, seed=4).double()
    ref = brain_like(PAPER_GRID, batch=1, seed=5).double() * 0.8
    ours = explain(model, x, "lrp-ref", reference=ref, start=start).double()
    with pytest.warns(UserWarning, match="Setting forward, backward hooks"):
        theirs = DeepLift(captum_ready(model)).attribute(
            x.clone().requires_grad_(True), baselines=ref, target=1).detach()
    explained = output_difference(model, x, ref, start)
    torch.testing.assert_close(total(theirs), explained, rtol=1e-6, atol=1e-12)
    assert correlation(ours, theirs) >= 0.9999
    # explain returns float32 and the default stabiliser absorbs a little.
    torch.testing.assert_close(total(ours), explained, rtol=1e-3, atol=1e-9)


# -- ig-ref and occlusion-ref ---------------------------------------------------------

def test_ig_ref_is_complete_from_the_reference(tiny_model, tiny_input):
    ref = brain_like(TINY_SHAPE, batch=1, seed=9)
    heatmap = explain(tiny_model, tiny_input, "ig-ref", reference=ref, steps=64, batch_size=16)
    gain = output_difference(tiny_model, tiny_input, ref, "probability").float()
    torch.testing.assert_close(heatmap.sum((1, 2, 3, 4)), gain, rtol=0.02,
                               atol=0.02 * float(gain.abs().max()))
    same = explain(tiny_model, tiny_input, "ig-ref", reference=tiny_input, steps=4)
    assert (same == 0).all()


class OneArea(nn.Module):
    """A classifier that reads only the voxels of one area: logit_AD = sum over it."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.float())
        self.scale = nn.Linear(1, 1)  # a parameter, so the model has a device and dtype

    def forward(self, x):
        evidence = (x * self.mask).flatten(1).sum(1, keepdim=True)
        return torch.cat([torch.zeros_like(evidence), self.scale(evidence)], dim=1)


@pytest.mark.parametrize("dilate", [0, 2])
def test_occlusion_ref_finds_the_only_area_the_model_reads(dilate):
    areas = torch.zeros(TINY_SHAPE, dtype=torch.int64)
    areas[2:10, 3:12, 4:11] = 1
    areas[12:20, 14:24, 12:22] = 2
    areas[3:8, 15:22, 2:8] = 3
    torch.manual_seed(0)
    model = OneArea(areas == 2)
    with torch.no_grad():
        model.scale.weight.fill_(0.05)
        model.scale.bias.fill_(-1.0)
    x = brain_like(TINY_SHAPE, batch=2) + 0.1
    ref = brain_like(TINY_SHAPE, batch=1, seed=3) * 0.5
    heatmap = explain(model, x, "occlusion-ref", reference=ref, areas=areas, dilate=dilate,
                      batch_size=2)
    grown = torch.as_tensor(ndimage.distance_transform_edt(areas.numpy() == 0) <= dilate)
    reach = (areas == 2) if dilate == 0 else ((areas == 2) | ((areas == 0) & grown))
    assert (heatmap[:, 0][:, ~reach] == 0).all()
    assert (heatmap[:, 0][:, areas == 2] > 0).all()
    # The area's relevance sums to the drop of p(AD) when it takes the reference's values.
    occluded = torch.where((areas == 2)[None, None], ref, x)
    with torch.no_grad():
        drop = model(x).softmax(1)[:, 1] - model(occluded).softmax(1)[:, 1]
    torch.testing.assert_close(heatmap.sum((1, 2, 3, 4)), drop, rtol=1e-5, atol=1e-7)


def test_occlusion_ref_refuses_an_unknown_grid_without_areas(tiny_model, tiny_input):
    with pytest.raises(BrainLRPError, match="no template grid has the input's shape"):
        explain(tiny_model, tiny_input, "occlusion-ref", reference=tiny_input[:1])
    with pytest.raises(BrainLRPError, match="areas must be an integer code array"):
        explain(tiny_model, tiny_input, "occlusion-ref", reference=tiny_input[:1],
                areas=np.zeros((3, 4, 5), dtype=int))


# -- floors ---------------------------------------------------------------------------

def test_edges_are_the_sobel_magnitude(tiny_model, tiny_input):
    heatmap = explain(tiny_model, tiny_input, "edges")
    volume = tiny_input[1, 0].double().numpy()
    expected = np.sqrt(sum(ndimage.sobel(volume, axis=a) ** 2 for a in range(3)))
    np.testing.assert_allclose(heatmap[1, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(explain(tiny_model, tiny_input, "edges"), heatmap)


def test_noise_is_seeded_per_scan(tiny_model, tiny_input):
    first = explain(tiny_model, tiny_input, "noise", seed=3)
    torch.testing.assert_close(first, explain(tiny_model, tiny_input, "noise", seed=3))
    assert not torch.equal(first, explain(tiny_model, tiny_input, "noise", seed=4))
    assert not torch.equal(first[0], first[1])  # each scan its own noise
    assert first.min() >= 0 and first.max() < 1
    torch.testing.assert_close(explain(tiny_model, tiny_input[1:], "noise", seed=3)[0],
                               explain(tiny_model, tiny_input[:1], "noise", seed=3)[0])


# -- best-practice composites -----------------------------------------------------------

#: Input of the small network below (distinct axis lengths).
SMALL = (4, 5, 6)


def small_network() -> nn.Module:
    """conv, BN, ReLU, max pool, conv, BN, ReLU, dense, ReLU, dense: every layer type the
    best-practice composites treat differently, small enough for dense matrices."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.BatchNorm3d(3), nn.ReLU(),
                          nn.MaxPool3d(2), nn.Conv3d(3, 4, 3, padding=1), nn.BatchNorm3d(4),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2 * 3, 6), nn.ReLU(),
                          nn.Linear(6, 2))
    randomize_batchnorm(model, seed=1)
    with torch.no_grad():  # a negative scale: folding BatchNorm then flips weights' signs
        model[1].weight[0] *= -1
        model[5].weight[1] *= -1
    return model.eval().double()


def fold_batchnorm(model: nn.Sequential) -> list[nn.Module]:
    """The layers with each BatchNorm folded by hand into the conv before it."""
    layers = [copy.deepcopy(m) for m in model]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.BatchNorm3d):
                conv = layers[i - 1]
                scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1, 1))
                conv.bias.copy_((conv.bias - layer.running_mean) * scale + layer.bias)
                layers[i] = nn.Identity()
    return layers


def best_practice_reference(model: nn.Sequential, x: torch.Tensor, composite: str,
                            target: int = 1) -> torch.Tensor:
    """float64 LRP from the logit of ``target``, layer by layer with the matrix forms of
    tests/explain/reference.py: epsilon on dense layers, gamma (0.25) or z+ on the inner
    conv, box ([0, 1]) or flat on the input conv, ReLU passing, max pool to its winner."""
    layers = fold_batchnorm(model)
    inputs, h = [], x.double()
    with torch.no_grad():
        for layer in layers:
            inputs.append(h)
            h = layer(h)
    out = torch.zeros(x.shape, dtype=torch.float64)
    for n in range(x.shape[0]):  # one scan at a time: the matrix forms take vectors
        r = torch.zeros(1, h.shape[1], dtype=torch.float64)
        r[0, target] = h[n, target]
        for index in reversed(range(len(layers))):
            layer, a = layers[index], inputs[index][n:n + 1]
            if isinstance(layer, (nn.Linear, nn.Conv3d)):
                w, b = layer_matrix(layer, tuple(a.shape[1:]))
                xv, rv = a.flatten(), r.flatten()
                if isinstance(layer, nn.Linear):
                    rv = epsilon_matrix(w, b, xv, rv, EPS)
                elif index > 0 and composite == "epsilon-gamma-box":
                    rv = gamma_matrix(w, b, xv, rv, gamma=0.25)
                elif index > 0:
                    rv = alphabeta_matrix(w, xv, rv, beta=0.0)  # z+
                elif composite == "epsilon-gamma-box":
                    rv = zbox_matrix(w, xv, rv, low=0.0, high=1.0)
                else:
                    ones = copy.deepcopy(layer)
                    with torch.no_grad():
                        ones.weight.fill_(1.0)
                    rv = flat_matrix(layer_matrix(ones, tuple(a.shape[1:]))[0], rv)
                r = rv.reshape(a.shape)
            elif isinstance(layer, nn.MaxPool3d):
                _, idx = F.max_pool3d(a, layer.kernel_size, layer.stride, return_indices=True)
                r = F.max_unpool3d(r.reshape(idx.shape), idx, layer.kernel_size, layer.stride,
                                   output_size=a.shape[2:])
            elif isinstance(layer, nn.Flatten):
                r = r.reshape(a.shape)
            else:
                assert isinstance(layer, (nn.ReLU, nn.Identity)), layer
        out[n] = r[0]
    return out


@pytest.mark.parametrize(("method", "composite"), [
    ("lrp-epsilon-gamma-box", "epsilon-gamma-box"),
    ("lrp-epsilon-plus-flat", "epsilon-plus-flat")])
def test_best_practice_composites_match_a_float64_reference(method, composite):
    model = small_network()
    x = 0.05 + 0.9 * brain_like(SMALL, batch=2, seed=4).double()  # inside the box [0, 1]
    heatmap = explain(model, x, method, start="logit")
    expected = best_practice_reference(model, x, composite)
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(heatmap.double(), expected, rtol=1e-4,
                               atol=1e-5 * float(expected.abs().max()))
