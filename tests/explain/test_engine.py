"""The engine's contracts: supported layers, composites, canonizers, a model left as found."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain.lrp import (
    LINEAR_LAYER_TYPES,
    AlphaBeta,
    Composite,
    Epsilon,
    MergeBatchNorm,
    Pass,
    RescaleLinear,
    ZBox,
    ZPlus,
    available_composites,
    get_composite,
    lrp,
)
from tests.explain.conftest import TINY_SHAPE, brain_like, randomize_batchnorm, seeded_model


def snapshot(model: nn.Module) -> dict:
    """Everything about a model that an explanation must leave untouched."""
    return {
        "params": [(name, p, p.detach().clone(), p.requires_grad)
                   for name, p in model.named_parameters()],
        "buffers": [(name, b, b.detach().clone()) for name, b in model.named_buffers()],
        "training": [(name, m.training) for name, m in model.named_modules()],
        "patched": [name for name, m in model.named_modules() if "forward" in m.__dict__],
        "eps": [(name, m.eps) for name, m in model.named_modules() if hasattr(m, "eps")],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert [n for n, *_ in after["params"]] == [n for n, *_ in before["params"]]
    for (name, obj, value, flag), (_, obj2, value2, flag2) in zip(
            before["params"], after["params"], strict=True):
        assert obj is obj2, f"parameter {name} was replaced"
        assert flag == flag2, f"requires_grad of {name} changed"
        assert torch.equal(value, value2), f"parameter {name} changed"
    for (name, obj, value), (_, obj2, value2) in zip(
            before["buffers"], after["buffers"], strict=True):
        assert obj is obj2 and torch.equal(value, value2), f"buffer {name} changed"
    assert after["training"] == before["training"]
    assert after["patched"] == []
    assert after["eps"] == before["eps"]


# -- supported layers -----------------------------------------------------------------

def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Conv3d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(210, 2))
    with pytest.raises(BrainLRPError, match=r"does not support the layer 1 \(Tanh\)"):
        lrp(model, torch.rand(1, 1, 7, 8, 9))


def test_monai_reshape_layers_pass_relevance_unchanged():
    """MONAI's Reshape/Flatten (monai.networks.nets.Classifier) are reshapes: LRP-0 on a
    ReLU network through them is gradient x input."""
    from monai.networks.layers import Flatten, Reshape

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), Flatten(),
                          nn.Linear(2 * 5 * 6 * 4, 2 * 3 * 3 * 2), nn.ReLU(),
                          Reshape(2, 3, 3, 2), nn.Conv3d(2, 2, 2), nn.ReLU(), Flatten(),
                          nn.Linear(2 * 2 * 2 * 1, 2)).eval()
    x = torch.rand(2, 1, 5, 6, 4, requires_grad=True)
    relevance = lrp(model, x.detach(), "epsilon", target=1, start="logit").relevance
    (gradient,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
    expected = (gradient * x).detach()  # up to the epsilon rule's stabiliser
    torch.testing.assert_close(relevance, expected, rtol=1e-3,
                               atol=1e-3 * float(expected.abs().max()))

    class Reshape2(Reshape):  # a look-alike of another name is not trusted
        pass

    model[5] = Reshape2(2, 3, 3, 2)
    with pytest.raises(BrainLRPError, match=r"does not support the layer 5 \(Reshape2\)"):
        lrp(model, x.detach(), "epsilon", target=1, start="logit")


def test_container_with_own_parameters_is_rejected():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(x.flatten(1) * self.scale)

    with pytest.raises(BrainLRPError, match="uses its own parameters"):
        lrp(Functional(), torch.rand(1, 1, 1, 2, 2))


def test_generic_network_with_avgpool_leaky_relu_and_view_conserves():
    """A module tree of supported layers with functional reshapes and slicing between
    them works; without biases the beta rule with beta > 0 conserves relevance."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
            self.act = nn.LeakyReLU(0.1)
            self.pool = nn.AvgPool2d(2)
            self.adaptive = nn.AdaptiveAvgPool2d((2, 3))
            self.fc = nn.Linear(24, 3, bias=False)

        def forward(self, x):
            h = self.adaptive(self.pool(self.act(self.conv(x[:, :, 0]))))
            return self.fc(h.view(h.shape[0], -1))

    torch.manual_seed(0)
    net = Net()
    x = 0.1 + torch.rand(2, 1, 1, 8, 12)
    for beta in (0.5, 1.0):
        result = lrp(net, x, "paper", beta=beta, target=2, start="logit")
        assert result.relevance.shape == x.shape
        torch.testing.assert_close(result.relevance.sum((1, 2, 3, 4)), result.logits[:, 2],
                                   rtol=1e-4, atol=1e-5)


class Residual(nn.Module):
    """``relu(h + conv(relu(conv(h))))`` after a stem conv, bias-free; ``untraceable``
    adds Python control flow on a tensor value, which torch.fx cannot trace."""

    def __init__(self, untraceable: bool = False, merge: str = "add"):
        super().__init__()
        self.stem = nn.Conv3d(1, 3, 3, padding=1, bias=False)
        self.stem_act = nn.ReLU()
        self.conv1 = nn.Conv3d(3, 3, 3, padding=1, bias=False)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv3d(3, 3, 3, padding=1, bias=False)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(6 if merge == "cat" else 3, 2, bias=False)
        self.untraceable, self.merge = untraceable, merge

    def forward(self, x):
        h = self.stem_act(self.stem(x))
        if self.untraceable and bool(x.sum() > -1):
            h = h.contiguous()
        f = self.conv2(self.act1(self.conv1(h)))
        out = h + f if self.merge == "add" else torch.cat([h, f], dim=1)
        return self.fc(self.pool(self.act2(out)).flatten(1))


@pytest.mark.parametrize("merge", ["add", "cat"])
def test_merge_the_tracer_cannot_see_is_refused_naming_the_layers(merge):
    """Before, a residual x + f(x) passed and doubled relevance (2.00x at beta=1)."""
    torch.manual_seed(0)
    with pytest.raises(BrainLRPError, match=rf"operation '{merge}' .* conv2 \(Conv3d\) "
                                            r"and stem_act \(ReLU\) before act2 \(ReLU\)"):
        lrp(Residual(untraceable=True, merge=merge), torch.rand(1, 1, 5, 6, 7), "paper", beta=1)


def test_merges_are_refused_when_the_composite_does_not_expose_them():
    composite = Composite([(nn.Conv3d, AlphaBeta(beta=1)), (nn.Linear, AlphaBeta(beta=1))],
                          expose_merges=False)
    with pytest.raises(BrainLRPError, match="operation 'add'"):
        lrp(Residual(), torch.rand(1, 1, 5, 6, 7), composite)


def test_arithmetic_between_layers_is_refused():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv3d(1, 2, 3), nn.Linear(2 * 3 * 4 * 5, 2)

        def forward(self, x):
            return self.fc((2 * self.conv(x)).flatten(1))

    with pytest.raises(BrainLRPError, match=r"operation 'mul' .* conv \(Conv3d\) before fc"):
        lrp(Scaled(), torch.rand(1, 1, 5, 6, 7))


class Doubling(Pass):
    """A broken rule that claims to conserve relevance."""

    def backward(self, layer, x, y, relevance):
        return 2 * relevance


def test_a_conserving_composite_that_does_not_conserve_raises():
    composite = Composite([(LINEAR_LAYER_TYPES, AlphaBeta(beta=1)), (nn.ReLU, Doubling())])
    with pytest.raises(BrainLRPError, match="lost or created relevance.*'custom'"):
        lrp(Residual(), torch.rand(1, 1, 5, 6, 7), composite)


def test_reference_conservation_allows_rounding_of_nearly_equal_outputs():
    # A reference close to the scan: p(x) - p(ref) is far below the outputs, and
    # float32 differences of DenseNet's activations round at the outputs' scale
    # (analyze's checks met this on a 2 mm DenseNet121 run: 0.4 % off for a
    # difference of 1e-4). That is no lost relevance.
    import monai

    torch.manual_seed(0)
    model = monai.networks.nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    x = torch.rand(2, 1, 33, 39, 35)
    for step in (1e-2, 1e-4):
        reference = (x + step * torch.randn_like(x)).clamp(0, 1)
        result = lrp(model, x, "reference", reference=reference)
        assert torch.isfinite(result.relevance).all()


def test_a_reference_composite_that_does_not_conserve_raises():
    composite = Composite([(LINEAR_LAYER_TYPES, RescaleLinear()), (nn.ReLU, Doubling())],
                          reference=True)
    x = torch.rand(1, 1, 5, 6, 7)
    with pytest.raises(BrainLRPError, match="lost or created relevance"):
        lrp(Residual(), x, composite, reference=torch.zeros_like(x))


@pytest.mark.parametrize(("composite", "params", "bias", "expected"), [
    ("paper", {"beta": 1.0}, False, True),
    ("paper", {"beta": 0.5}, True, False),    # biases take relevance no input gets
    ("paper", {"beta": 0.0}, False, False),   # z+ drops outputs without positive parts
    ("epsilon", {}, False, False),            # epsilon absorbs relevance by design
    ("epsilon-plus", {}, False, False),       # z+ again
])
def test_which_composites_check_conservation(composite, params, bias, expected):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 3, bias=bias), nn.ReLU(), nn.Flatten(),
                          nn.Linear(2 * 3 * 4 * 5, 2, bias=bias))
    built = get_composite(composite, **params)
    with built.context(model) as rules:
        assert built.conserves(model, rules) is expected


# -- the model comes back as it was ------------------------------------------------------

def test_model_is_restored_after_lrp(tiny_model, tiny_input):
    tiny_model.train()
    tiny_model.features[1].eval()  # deliberately mixed modes survive too
    tiny_model.classifier[-1].weight.requires_grad_(False)
    before = snapshot(tiny_model)
    for composite in available_composites():
        reference = tiny_input[:1].flip(2) if get_composite(composite).reference else None
        lrp(tiny_model, tiny_input, composite, reference=reference)
    assert_unchanged(tiny_model, before)


def test_model_is_restored_when_the_forward_raises(tiny_model, tiny_input):
    class Boom(RuntimeError):
        pass

    def explode(module, args, output):
        raise Boom

    tiny_model.train()
    before = snapshot(tiny_model)
    handle = tiny_model.classifier[2].register_forward_hook(explode)
    try:
        for composite in ("paper", "paper-bn-merged"):
            with pytest.raises(Boom):
                lrp(tiny_model, tiny_input, composite)
    finally:
        handle.remove()
    assert_unchanged(tiny_model, before)


def test_lrp_works_under_no_grad_and_keeps_the_caller_input(tiny_model, tiny_input):
    x = tiny_input.clone()
    with torch.no_grad():
        result = lrp(tiny_model, x, "paper")
    assert torch.equal(x, tiny_input) and not x.requires_grad
    assert result.relevance.abs().sum() > 0


def test_batched_targets_match_single_runs(tiny_model, tiny_input):
    batched = lrp(tiny_model, tiny_input, "paper", beta=0.5, target=[1, 0]).relevance
    for i, target in enumerate((1, 0)):
        alone = lrp(tiny_model, tiny_input[i:i + 1], "paper", beta=0.5, target=target)
        torch.testing.assert_close(batched[i:i + 1], alone.relevance, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target": 2}, "target 2 is out of range for a model with 2 classes"),
    ({"target": -1}, "target -1 is out of range"),
    ({"target": [1, 0, 1]}, "got 3 targets for a batch of 2"),
    ({"target": 0.5}, "target must be an integer class index"),
    ({"start": "softmax"}, "unknown start 'softmax'"),
    ({"composite": "nope"}, "unknown LRP composite 'nope'.*paper, paper-bn-merged"),
    ({"composite": "paper", "gamma": 1}, "takes no parameter 'gamma'.*beta, epsilon"),
    ({"beta": -1}, "beta must be >= 0"),
])
def test_bad_arguments_are_user_errors(tiny_model, tiny_input, kwargs, message):
    with pytest.raises(BrainLRPError, match=message):
        lrp(tiny_model, tiny_input, **kwargs)


@pytest.mark.parametrize(("x", "message"), [
    (torch.rand(1, 24, 28, 26), r"shape \(batch, channel, x, y, z\)"),
    (torch.full((1, 1, 24, 28, 26), float("nan")), "NaN or Inf"),
    (torch.ones(1, 1, 24, 28, 26, dtype=torch.long), "floating point"),
])
def test_bad_inputs_are_user_errors(tiny_model, x, message):
    with pytest.raises(BrainLRPError, match=message):
        lrp(tiny_model, x)


# -- composites -------------------------------------------------------------------------

#: The registered composites, spelled out (the last needs a reference image).
COMPOSITE_NAMES = ["paper", "paper-bn-merged", "epsilon-plus", "epsilon", "epsilon-gamma-box",
                   "epsilon-plus-flat", "reference"]


def test_registry_names():
    assert available_composites() == COMPOSITE_NAMES


@pytest.mark.parametrize("name", COMPOSITE_NAMES)
def test_each_composite_is_the_one_named_and_covers_every_layer(tiny_model, name):
    composite = get_composite(name)
    assert composite.name.split(" ")[0] == name  # e.g. "paper (beta=0)"
    assert composite.reference is (name == "reference")
    rules = composite.rules(tiny_model)
    layers = [m for m in tiny_model.modules() if isinstance(m, (nn.Conv3d, nn.Linear))]
    assert len(layers) >= 2 and all(layer in rules for layer in layers)


def test_epsilon_plus_assigns_box_zplus_epsilon(tiny_model):
    composite = get_composite("epsilon-plus", low=0.0, high=1.0)
    rules = composite.rules(tiny_model)
    convs = [m for m in tiny_model.modules() if isinstance(m, nn.Conv3d)]
    linears = [m for m in tiny_model.modules() if isinstance(m, nn.Linear)]
    assert isinstance(rules[convs[0]], ZBox)
    assert all(type(rules[c]) is ZPlus for c in convs[1:])
    assert all(isinstance(rules[lin], Epsilon) for lin in linears)


def test_custom_composite_without_a_rule_for_linear_layers_fails(tiny_model, tiny_input):
    composite = Composite([(nn.Conv3d, AlphaBeta())], name="convs-only")
    with pytest.raises(BrainLRPError, match="has no rule for classifier.2 \\(Linear\\)"):
        lrp(tiny_model, tiny_input, composite)


# -- canonizers -------------------------------------------------------------------------

def merged_copy(model: nn.Module) -> nn.Module:
    """The model with each BatchNorm folded into its conv by hand (the reference)."""
    merged = copy.deepcopy(model)
    feats = merged.features
    with torch.no_grad():
        for i, layer in enumerate(feats):
            if isinstance(layer, nn.BatchNorm3d):
                conv = feats[i - 1]
                scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1, 1))
                conv.bias.copy_((conv.bias - layer.running_mean) * scale + layer.bias)
                feats[i] = nn.Identity()
    return merged


def test_merge_batchnorm_keeps_outputs_and_restores(tiny_model, tiny_input):
    before = snapshot(tiny_model)
    with torch.no_grad():
        expected = tiny_model(tiny_input)
        with MergeBatchNorm().apply(tiny_model):
            inside = tiny_model(tiny_input)
            assert not torch.equal(tiny_model.features[0].weight, before["params"][0][2])
    torch.testing.assert_close(inside, expected, rtol=1e-5, atol=1e-6)
    assert_unchanged(tiny_model, before)


def test_merge_batchnorm_restores_on_error(tiny_model):
    before = snapshot(tiny_model)
    with pytest.raises(KeyError), MergeBatchNorm().apply(tiny_model):
        raise KeyError("inside the block")
    assert_unchanged(tiny_model, before)


def test_merge_batchnorm_handles_a_conv_without_bias():
    torch.manual_seed(0)
    model = randomize_batchnorm(nn.Sequential(nn.Conv3d(1, 3, 3, bias=False),
                                              nn.BatchNorm3d(3))).eval()
    x = torch.rand(1, 1, 7, 8, 9)
    with torch.no_grad():
        expected = model(x)
        with MergeBatchNorm().apply(model):
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)
    assert model[0].bias is None


@pytest.mark.parametrize(("model", "message"), [
    (nn.Sequential(nn.BatchNorm3d(1), nn.Conv3d(1, 2, 3)), "does not directly follow"),
    (nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2)).train(), "in training mode"),
])
def test_merge_batchnorm_refuses_what_it_cannot_merge(model, message):
    with pytest.raises(BrainLRPError, match=message), MergeBatchNorm().apply(model):
        pass


def test_bn_merged_composite_equals_paper_on_a_hand_merged_model(tiny_model, tiny_input):
    ours = lrp(tiny_model, tiny_input, "paper-bn-merged", beta=0.5).relevance
    reference = lrp(merged_copy(tiny_model), tiny_input, "paper", beta=0.5).relevance
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6 * reference.abs().max())
    paper = lrp(tiny_model, tiny_input, "paper", beta=0.5).relevance
    assert not torch.allclose(ours, paper)  # merging BatchNorm does change the heatmap


# -- devices ----------------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("composite", ["paper", "paper-bn-merged", "epsilon-plus"])
def test_cuda_matches_cpu(composite):
    model = seeded_model("tiny", TINY_SHAPE)
    x = brain_like(TINY_SHAPE, batch=2)
    on_cpu = lrp(model, x, composite).relevance
    on_gpu = lrp(model.cuda(), x.cuda(), composite)
    assert on_gpu.relevance.is_cuda
    torch.testing.assert_close(on_gpu.relevance.cpu(), on_cpu, rtol=1e-3,
                               atol=1e-5 * float(on_cpu.abs().max()))
