"""Edge cases of the LRP engine: conservation checked relative to the explained
quantity (and its gap returned), the input-layer rule on the layer that really
reads the input, the box rule's bounds as parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain.lrp import (
    LINEAR_LAYER_TYPES,
    AlphaBeta,
    Composite,
    Epsilon,
    Flat,
    Gamma,
    Pass,
    RescaleLinear,
    ZBox,
    ZPlus,
    get_composite,
    lrp,
)
from brainlrp.explain.lrp.attribution import (
    CONSERVATION_STABILISER_FACTOR,
    conservation_tolerance,
    stabiliser_share,
)
from brainlrp.explain.lrp.core import first_linear_layer
from brainlrp.models import build_model
from tests.explain.conftest import TINY_SHAPE, brain_like, randomize_batchnorm, seeded_model

SHAPE = (6, 7, 8)
FEATURES = 4 * 4 * 5 * 6


class Small(nn.Module):
    """Conv, ReLU, Linear without biases: conserving rules conserve on it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(FEATURES, 2, bias=False)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))


class Losing(Pass):
    """A broken rule that claims to conserve relevance and drops all of it."""

    def backward(self, layer, x, y, relevance):
        return torch.zeros_like(relevance)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Small().eval()


def scans(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, *SHAPE, generator=torch.Generator().manual_seed(seed))


def reference_at(model: nn.Module, x: torch.Tensor, difference: float) -> torch.Tensor:
    """A reference per scan (the scan dimmed a little) whose p(AD) differs from the
    scan's by about ``difference``."""
    def p_ad(v):
        with torch.no_grad():
            return torch.softmax(model(v), 1)[:, 1]

    step = 0.01 * difference / (p_ad(x) - p_ad(0.99 * x)).abs()
    return x * (1 - step.reshape(-1, 1, 1, 1, 1))


def total(relevance: torch.Tensor) -> torch.Tensor:
    return relevance.double().sum(tuple(range(1, relevance.ndim)))


# -- conservation relative to the explained quantity ----------------------------------

def test_losing_all_relevance_of_a_small_reference_difference_is_caught():
    # p(AD) of scan and reference differ by ~1e-4. The old tolerance allowed
    # 1e-3 (|p(x)| + |p(ref)|) ~ 1e-3 here, ten times the whole difference, so a
    # rule that dropped all relevance passed.
    model = small_model()
    x = scans()
    ref = reference_at(model, x, 1e-4)
    composite = Composite([(LINEAR_LAYER_TYPES, RescaleLinear()), (nn.ReLU, Losing())],
                          name="losing", reference=True)
    with torch.no_grad():
        p = torch.softmax(model(torch.cat([x, ref])), 1)[:, 1]
    difference = (p[:2] - p[2:]).abs()
    assert ((difference > 5e-5) & (difference < 2e-4)).all()
    assert (p > 0.1).all()  # the old tolerance's |p(x)| + |p(ref)| is large
    with pytest.raises(BrainLRPError, match="lost or created relevance.*'losing'"):
        lrp(model, x, composite, reference=ref)
    with pytest.raises(BrainLRPError, match="lost or created relevance"):
        lrp(model, x, composite, reference=ref, start="logit")


def test_a_small_reference_difference_with_working_rules_passes_and_reports_its_gap():
    model = small_model()
    x = scans()
    ref = reference_at(model, x, 1e-4)
    for start in ("probability", "logit"):
        result = lrp(model, x, "reference", reference=ref, start=start)
        assert result.conserves
        torch.testing.assert_close(result.gap, total(result.relevance)
                                   - result.explained.double(), rtol=0, atol=0)
        # The stabilisers (1e-6 against logits ~1e-4 apart) keep most of it.
        assert (result.gap.abs() < 0.05 * result.explained.double().abs()).all()


def test_losing_all_relevance_of_a_small_logit_is_caught_without_reference():
    # Without a reference the tolerance was already relative (this passed before
    # too): a target logit of 1e-4 that loses everything is refused.
    model = small_model()
    x = scans(batch=1)
    with torch.no_grad():  # a logit of 1e-4 from contributions of the usual size
        h = model.relu(model.conv(x)).flatten()
        w = model.fc.weight[1]
        w -= (w @ h - 1e-4) / (h @ h) * h
    composite = Composite([(LINEAR_LAYER_TYPES, AlphaBeta(beta=1)), (nn.ReLU, Losing())],
                          name="losing")
    with pytest.raises(BrainLRPError, match="lost or created relevance"):
        lrp(model, x, composite, start="logit")
    result = lrp(model, x, "paper", beta=1.0, start="logit")
    assert result.conserves
    assert abs(float(result.explained[0]) - 1e-4) < 1e-6
    assert float(result.gap.abs()[0]) < 1e-3 * 1e-4


@pytest.mark.parametrize(("composite", "params", "conserves"), [
    ("paper", {"beta": 0.0}, False),      # z+ drops relevance: the gap is what it drops
    ("paper", {"beta": 1.0}, True),
    ("epsilon", {}, False),
    ("epsilon-gamma-box", {}, False),
    ("epsilon-plus-flat", {}, False),
])
@pytest.mark.parametrize("start", ["probability", "logit"])
def test_the_gap_is_returned_per_scan(composite, params, conserves, start):
    model = small_model()
    x = scans(batch=3)
    target = torch.tensor([0, 1, 1])
    result = lrp(model, x, composite, target=target, start=start, **params)
    with torch.no_grad():
        logits = model(x)
    source = torch.softmax(logits, 1) if start == "probability" else logits
    expected = source[torch.arange(3), target]
    assert result.conserves is conserves
    assert result.gap.shape == (3,) and result.gap.dtype == torch.float64
    assert result.explained.shape == (3,)
    torch.testing.assert_close(result.explained, expected)
    torch.testing.assert_close(result.gap, total(result.relevance) - expected.double(),
                               rtol=0, atol=1e-12)
    if conserves:
        assert (result.gap.abs() <= 1e-3 * expected.double().abs()).all()


def test_the_gap_of_a_reference_composite_is_against_the_output_difference():
    model = small_model()
    x = scans()
    ref = scans(batch=1, seed=5)
    result = lrp(model, x, "reference", reference=ref)
    with torch.no_grad():
        p = torch.softmax(model(torch.cat([x, ref])), 1)[:, 1]
    torch.testing.assert_close(result.explained, p[:2] - p[2])
    torch.testing.assert_close(result.gap, total(result.relevance) - (p[:2] - p[2]).double(),
                               rtol=0, atol=1e-12)


def test_a_composite_that_creates_relevance_on_a_nearly_equal_reference_is_caught():
    class Doubling(Pass):
        def backward(self, layer, x, y, relevance):
            return 2 * relevance

    model = small_model()
    x = scans()
    composite = Composite([(LINEAR_LAYER_TYPES, RescaleLinear()), (nn.ReLU, Doubling())],
                          reference=True)
    with pytest.raises(BrainLRPError, match="lost or created relevance"):
        lrp(model, x, composite, reference=reference_at(model, x, 1e-4))


def test_the_stabiliser_share_follows_the_logit_difference():
    logits = torch.tensor([[0.5, -0.5], [0.5, -0.5], [0.5, -0.5]])
    reference = torch.tensor([[0.5 - 4e-4, -0.5], [0.5, -0.5], [0.1, -0.5]])
    share = stabiliser_share(logits, reference, torch.tensor([0, 0, 0]), 1e-6)
    eps = torch.finfo(torch.float32).eps
    noise = 1e-6 + eps * torch.tensor([2.0 - 4e-4, 2.0, 1.6], dtype=torch.float64)
    expected = CONSERVATION_STABILISER_FACTOR * noise / torch.tensor([4e-4, 0.0, 0.4],
                                                                      dtype=torch.float64)
    torch.testing.assert_close(share, expected, rtol=1e-3, atol=0)
    assert 0.01 < float(share[0]) < 0.1 and share[1] == float("inf")
    # A share checks nothing where f is whatever it is, and never makes NaN.
    relevance = torch.zeros(3, 1, 2, 2, 2)
    tolerance = conservation_tolerance(relevance, torch.tensor([1e-4, 0.0, 1e-4]), share)
    assert torch.isfinite(tolerance[[0, 2]]).all() and torch.isnan(tolerance).sum() == 0
    tiny = torch.finfo(torch.float32).tiny
    assert float(tolerance[0]) < 1e-4 and float(tolerance[1]) < 2 * tiny


@pytest.mark.parametrize("logit_gap", [80.0, 90.0, 100.0])
def test_relevance_below_the_normal_float32_range_is_not_refused(logit_gap):
    # A confident model: p(class 0) of 2e-35, 8e-40 (subnormal) and 4e-44 (its
    # relevance rounds to zero), spread over the scan's voxels.
    model = small_model()
    x = scans(batch=1)
    with torch.no_grad():
        model.fc.weight[0] = model.fc.weight[1] - logit_gap / model.relu(model.conv(x)).sum()
        p = torch.softmax(model(x), 1)[0, 0]
    assert 0 < float(p) < 1e-34
    result = lrp(model, x, "paper", beta=1.0, target=0)
    assert result.conserves and torch.isfinite(result.relevance).all()


# -- the input-layer rule goes to the layer that reads the input --------------------------

class Stem(nn.Module):
    """Conv, BatchNorm, ReLU, Linear; ``order`` says which layers register first."""

    def __init__(self, order: str = "conv-first"):
        super().__init__()
        make = {"conv": lambda: nn.Conv3d(1, 4, 3), "bn": lambda: nn.BatchNorm3d(4),
                "head": lambda: nn.Linear(FEATURES, 2)}
        names = ["conv", "bn", "head"] if order == "conv-first" else ["head", "bn", "conv"]
        for name in names:
            setattr(self, name, make[name]())
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.head(self.relu(self.bn(self.conv(x))).flatten(1))


class UntraceableStem(Stem):
    """:class:`Stem` with Python control flow on a tensor value (torch.fx cannot trace it)."""

    def forward(self, x):
        h = self.relu(self.bn(self.conv(x)))
        if h.sum() < 0:  # never true after a ReLU
            h = -h
        return self.head(h.flatten(1))


def stems(cls=Stem) -> tuple[nn.Module, nn.Module]:
    """The same network registered conv first and head first."""
    torch.manual_seed(1)
    conv_first = randomize_batchnorm(cls("conv-first")).eval()
    head_first = cls("head-first").eval()
    head_first.load_state_dict(conv_first.state_dict())
    assert isinstance(first_linear_layer(head_first), nn.Linear)
    return conv_first, head_first


INPUT_RULE_COMPOSITES = [("epsilon-gamma-box", ZBox), ("epsilon-plus", ZBox),
                         ("epsilon-plus-flat", Flat)]


@pytest.mark.parametrize(("name", "rule"), INPUT_RULE_COMPOSITES)
def test_the_input_rule_lands_on_the_conv_that_reads_the_input(name, rule):
    conv_first, head_first = stems()
    composite = get_composite(name)
    assert composite.input_layer(head_first) is head_first.conv
    rules = composite.rules(head_first)
    assert isinstance(rules[head_first.conv], rule)
    assert isinstance(rules[head_first.head], Epsilon)
    x = brain_like(SHAPE, batch=2)
    expected = lrp(conv_first, x, name).relevance
    torch.testing.assert_close(lrp(head_first, x, name).relevance, expected, rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize(("name", "rule"), INPUT_RULE_COMPOSITES)
def test_a_forward_that_does_not_trace_is_corrected_by_the_autograd_graph(name, rule):
    conv_first, head_first = stems(UntraceableStem)
    composite = get_composite(name)
    # Without a graph the guess is registration order, the classifier here ...
    assert composite.input_layer(head_first) is head_first.head
    x = brain_like(SHAPE, batch=2)
    expected = lrp(conv_first, x, name).relevance
    # ... which the forward pass's autograd graph corrects.
    torch.testing.assert_close(lrp(head_first, x, name).relevance, expected, rtol=1e-6,
                               atol=1e-9)


def test_the_input_layer_may_be_reached_through_pooling_and_reshapes():
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2 * 2 * 2 * 3, 2)
            self.pool = nn.AvgPool3d(2)
            self.conv = nn.Conv3d(1, 2, 2)

        def forward(self, x):
            return self.head(torch.relu(self.conv(self.pool(x))).reshape(x.shape[0], -1))

    model = Pooled().eval()
    assert get_composite("epsilon-gamma-box").input_layer(model) is model.conv
    assert isinstance(get_composite("epsilon-gamma-box").rules(model)[model.conv], ZBox)


class Branches(nn.Module):
    """Two convolutions that both read the input."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv3d(1, 2, 3)
        self.b = nn.Conv3d(1, 2, 3)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


class TwoStems(nn.Module):
    def __init__(self):
        super().__init__()
        self.stems = Branches()
        self.relu = nn.ReLU()
        self.head = nn.Linear(FEATURES, 2)

    def forward(self, x):
        return self.head(self.relu(self.stems(x)).flatten(1))


class UntraceableTwoStems(TwoStems):
    """Only the model's own forward does not trace: its branches still do, so their
    concatenation is routed through a Concat layer."""

    def forward(self, x):
        h = self.relu(self.stems(x))
        if h.sum() < 0:
            h = -h
        return self.head(h.flatten(1))


class SharedConv(nn.Module):
    """One conv called on the input and again on its own output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(6 * 7 * 8, 2)

    def forward(self, x):
        h = self.relu(self.conv(x))
        return self.head(self.relu(self.conv(h)).flatten(1))


@pytest.mark.parametrize(("model", "message"), [
    (TwoStems, r"several Linear/Conv layers: stems.a \(Conv3d\) and stems.b \(Conv3d\)"),
    (UntraceableTwoStems,
     r"several Linear/Conv layers: stems.a \(Conv3d\) and stems.b \(Conv3d\)"),
    (SharedConv, r"reaches conv \(Conv3d\), and the model also calls conv \(Conv3d\) on other"),
])
def test_an_input_layer_that_is_not_one_layer_is_refused(model, message):
    torch.manual_seed(0)
    model = model().eval()
    x = brain_like(SHAPE, batch=1)
    for name in ("epsilon-gamma-box", "epsilon-plus-flat"):
        with pytest.raises(BrainLRPError, match=message) as caught:
            lrp(model, x, name)
        assert "\n" not in caught.value.one_line() and caught.value.fix
        assert "'epsilon'" in caught.value.fix
    # Composites without an input-layer rule do not care.
    assert torch.isfinite(lrp(model, x, "epsilon").relevance).all()


def test_an_explicit_input_layer_must_belong_to_the_model():
    conv_first, _ = stems()
    with pytest.raises(BrainLRPError, match="not a layer of the model"):
        get_composite("epsilon-gamma-box").rules(conv_first, input_layer=nn.Conv3d(1, 1, 1))


@pytest.mark.parametrize(("name", "shape"), [
    ("tiny", TINY_SHAPE), ("paper", (80, 90, 84)), ("densenet121", (33, 39, 35)),
    ("resnet10", (33, 39, 35)), ("resnet18", (33, 39, 35))])
def test_the_shipped_networks_keep_their_input_layer(name, shape):
    """The paper's network and MONAI's read the input with their first registered
    layer, so their rules (and heatmaps) are as before."""
    pytest.importorskip("monai")
    model = build_model(name, shape).eval()
    for composite, _ in INPUT_RULE_COMPOSITES:
        assert get_composite(composite).input_layer(model) is first_linear_layer(model)


def test_the_graph_finds_the_same_input_layer_on_the_tiny_network(tiny_model, tiny_input):
    composite = get_composite("epsilon-gamma-box")
    x = tiny_input.clone().requires_grad_(True)
    with torch.enable_grad(), composite.context(tiny_model) as rules:
        logits = tiny_model(x)
        layer = composite.graph_input_layer(logits, x, tiny_model)
    assert layer is first_linear_layer(tiny_model) and isinstance(rules[layer], ZBox)


# -- the box rule's bounds ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["epsilon-gamma-box", "epsilon-plus"])
def test_box_bounds_default_to_zero_and_one(name):
    model = seeded_model("tiny", TINY_SHAPE)
    x = brain_like(TINY_SHAPE, batch=1)
    default = lrp(model, x, name).relevance
    assert torch.equal(lrp(model, x, name, low=0.0, high=1.0).relevance, default)
    rule = get_composite(name).rules(model)[first_linear_layer(model)]
    assert isinstance(rule, ZBox) and (rule.low, rule.high) == (0.0, 1.0)


@pytest.mark.parametrize("name", ["epsilon-gamma-box", "epsilon-plus"])
def test_box_bounds_are_passed_to_the_input_layer(name):
    conv_first, head_first = stems()
    x = brain_like(SHAPE, batch=1)
    low, high = -0.5, 2.0
    rule = get_composite(name, low=low, high=high).rules(head_first)[head_first.conv]
    assert isinstance(rule, ZBox) and (rule.low, rule.high) == (low, high)
    # The same as the composite built by hand with that box rule.
    inner = Gamma(0.25, 1e-6) if name == "epsilon-gamma-box" else ZPlus(1e-6)
    by_hand = Composite([(nn.Linear, Epsilon(1e-6)), (LINEAR_LAYER_TYPES, inner)],
                        first_layer=ZBox(low, high, 1e-6),
                        canonizers=get_composite(name).canonizers[1:])
    ours = lrp(head_first, x, name, low=low, high=high).relevance
    assert torch.equal(ours, lrp(head_first, x, by_hand).relevance)
    assert not torch.allclose(ours, lrp(head_first, x, name).relevance)
    # Tensor bounds (one value per voxel, e.g. a model card's range) broadcast.
    lows, highs = torch.full_like(x, low), torch.full_like(x, high)
    torch.testing.assert_close(lrp(head_first, x, name, low=lows, high=highs).relevance, ours,
                               rtol=1e-5, atol=1e-7)
    with pytest.raises(BrainLRPError, match="low must be below high"):
        lrp(head_first, x, name, low=1.0, high=0.0)
