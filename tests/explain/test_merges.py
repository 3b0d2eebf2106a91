"""Residual additions, concatenations and normalisations, against slow references.

The block network below has a residual addition, a concatenation (a dense
connection), a BatchNorm after a convolution and a per-sample normalisation
before the head. Its reference walks it by hand in float64: every Linear/Conv
layer as a dense matrix with the rule's explicit sums (``tests.explain.reference``),
the sum's relevance shared by the summands' values, the concatenation's split
by slicing, average pooling as its matrix under the epsilon rule.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainlrp.explain import explain
from brainlrp.explain.lrp import (
    AVGPOOL_TYPES,
    LINEAR_LAYER_TYPES,
    AlphaBeta,
    Composite,
    Concat,
    ExposeMerges,
    Proportional,
    Sum,
    SumShare,
    lrp,
)
from tests.explain.conftest import randomize_batchnorm
from tests.explain.reference import (
    EPS,
    alphabeta_matrix,
    epsilon_matrix,
    layer_matrix,
    map_matrix,
    sum_share,
    zbox_matrix,
)
from tests.explain.test_engine import assert_unchanged, snapshot

SHAPE = (3, 4, 5)  # distinct axis lengths, small enough for dense matrices
NORMS = {
    "instance": lambda: nn.InstanceNorm3d(4, affine=True),
    "group": lambda: nn.GroupNorm(2, 4),
    "none": nn.Identity,
}


class BlockNet(nn.Module):
    """stem -> residual block (conv, BN, ReLU, conv, + skip) -> dense connection
    (cat with a conv of itself) -> norm, ReLU -> average pooling -> Linear."""

    def __init__(self, norm: str = "instance", bias: bool = True):
        super().__init__()
        self.stem = nn.Conv3d(1, 2, 3, padding=1, bias=bias)
        self.act0 = nn.ReLU()
        self.conv1 = nn.Conv3d(2, 2, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm3d(2)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv3d(2, 2, 3, padding=1, bias=bias)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv3d(2, 2, 3, padding=1, bias=bias)
        self.norm = NORMS[norm]()
        self.act3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d((1, 2, 1))
        self.fc = nn.Linear(8, 2, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act0(self.stem(x))
        out = self.conv2(self.act1(self.bn(self.conv1(h))))
        out += h
        r = self.act2(out)
        c = torch.cat([r, self.conv3(r)], 1)
        return self.fc(torch.flatten(self.pool(self.act3(self.norm(c))), 1))


def block_net(norm: str = "instance", bias: bool = True, seed: int = 0) -> BlockNet:
    torch.manual_seed(seed)
    model = randomize_batchnorm(BlockNet(norm, bias), seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.InstanceNorm3d, nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if not bias and isinstance(m, nn.BatchNorm3d):
                m.running_mean.zero_()
                m.bias.zero_()
    return model.double().eval()


def merged_conv1(model: BlockNet) -> nn.Conv3d:
    """conv1 with the BatchNorm after it folded in by hand."""
    conv, bn = copy.deepcopy(model.conv1), model.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return conv


def layer_rule(composite: str, beta: float, role: str):
    """The reference rule ``(module, x, r) -> R_x`` of a Linear/Conv layer."""
    def rule(module: nn.Module, x: Tensor, r: Tensor) -> Tensor:
        w, b = layer_matrix(module, tuple(x.shape[1:]))
        xf, rf = x.reshape(-1), r.reshape(-1)
        if composite in ("paper", "paper-bn-merged"):
            out = alphabeta_matrix(w, xf, rf, beta)
        elif composite == "epsilon":
            out = epsilon_matrix(w, b, xf, rf, EPS)
        elif role == "first":  # epsilon-plus
            out = zbox_matrix(w, xf, rf, 0.0, 1.0)
        elif role == "dense":
            out = epsilon_matrix(w, b, xf, rf, EPS)
        else:
            out = alphabeta_matrix(w, xf, rf, 0.0)
        return out.reshape(x.shape)
    return rule


def reference(model: BlockNet, x: Tensor, composite: str, beta: float = 0.0,
              target: int = 1) -> tuple[Tensor, Tensor]:
    """``(input relevance, logits)`` of :class:`BlockNet`, walked by hand in float64."""
    first, conv, dense = (layer_rule(composite, beta, role)
                          for role in ("first", "conv", "dense"))
    merged = composite != "paper"
    m = model
    with torch.no_grad():
        h = F.relu(m.stem(x))
        b1 = m.conv1(h)
        a1 = F.relu(m.bn(b1))
        b2 = m.conv2(a1)
        r = F.relu(b2 + h)
        b3 = m.conv3(r)
        c = torch.cat([r, b3], 1)
        a3 = F.relu(m.norm(c))
        p = m.pool(a3)
        logits = m.fc(p.flatten(1))
    rel = torch.zeros_like(logits)
    rel[:, target] = logits[:, target]
    rel_p = dense(m.fc, p.flatten(1), rel).reshape(p.shape)
    pool = map_matrix(m.pool, tuple(a3.shape[1:]))
    rel_c = epsilon_matrix(pool, torch.zeros(pool.shape[0], dtype=torch.float64),
                           a3.reshape(-1), rel_p.reshape(-1), EPS).reshape(a3.shape)
    rel_r, rel_b3 = rel_c[:, :2], rel_c[:, 2:]               # the concatenation's split
    rel_r = rel_r + conv(m.conv3, r, rel_b3)
    rel_b2, rel_h = sum_share([b2, h], rel_r)                 # the residual sum
    rel_a1 = conv(m.conv2, a1, rel_b2)
    rel_h = rel_h + conv(merged_conv1(m) if merged else m.conv1, h, rel_a1)
    return first(m.stem, x, rel_h), logits


def scan(seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, *SHAPE, generator=gen, dtype=torch.float64)
    x[..., 0] = 0.0  # a zero slab, so dead neurons and zero-side cases occur
    return x


CASES = [("paper", 0.0), ("paper", 1.0), ("paper-bn-merged", 0.5), ("epsilon", 0.0),
         ("epsilon-plus", 0.0)]


@pytest.mark.parametrize("norm", ["instance", "group"])
@pytest.mark.parametrize(("composite", "beta"), CASES)
def test_block_network_matches_the_reference(composite, beta, norm):
    model, x = block_net(norm), scan()
    params = {"beta": beta} if composite.startswith("paper") else {}
    ours = lrp(model, x, composite, start="logit", **params)
    expected, logits = reference(model, x, composite, beta)
    torch.testing.assert_close(ours.logits, logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.relevance, expected, rtol=1e-9,
                               atol=1e-12 * float(expected.abs().max()))


def exact_paper(beta: float) -> Composite:
    """The paper's composite with stabilisers that absorb nothing measurable."""
    tiny = 1e-14
    return Composite([(LINEAR_LAYER_TYPES, AlphaBeta(beta=beta, epsilon=tiny)),
                      (Sum, SumShare(tiny)), (AVGPOOL_TYPES, Proportional(tiny))])


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_bias_free_block_network_conserves_exactly(beta):
    """Residual sum, concatenation, BatchNorm without shift: all conserve at beta > 0
    (the engine's own check runs too; see test_engine)."""
    model, x = block_net("none", bias=False), scan()
    composite = exact_paper(beta)
    with composite.context(model) as rules:
        assert composite.conserves(model, rules)  # so lrp checks it too
    result = lrp(model, x, composite, start="logit")
    torch.testing.assert_close(result.relevance.sum(), result.logits[0, 1],
                               rtol=1e-9, atol=1e-15)


def test_sum_and_concat_layers_alone_conserve():
    torch.manual_seed(0)

    class Merges(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 4, bias=False), nn.Linear(6, 4, bias=False)
            self.fc = nn.Linear(8, 2, bias=False)

        def forward(self, x):
            x = x.flatten(1)
            s = torch.add(self.a(x), self.b(x))
            return self.fc(torch.cat((s, x[:, :4]), dim=-1))

    x = torch.rand(3, 1, 1, 2, 3, dtype=torch.float64)
    result = lrp(Merges().double(), x, exact_paper(1.0), start="logit", target=[0, 1, 1])
    torch.testing.assert_close(result.relevance.sum((1, 2, 3, 4)),
                               result.logits[torch.arange(3), result.target])


def test_expose_merges_keeps_outputs_and_restores():
    model, x = block_net(), scan()
    before = snapshot(model)
    names = [n for n, _ in model.named_modules()]
    with torch.no_grad():
        expected = model(x)
        with ExposeMerges().apply(model):
            merges = [m for m in model.modules() if isinstance(m, (Sum, Concat))]
            assert len(merges) == 2
            torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    assert_unchanged(model, before)
    assert [n for n, _ in model.named_modules()] == names


# -- zennit, with its own canonizer for the residual block ------------------------------
# zennit is in the ``test`` extra (pip install -e '.[test]'): imported plainly, so a test
# environment without it fails instead of skipping the comparison.


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.downsample = None if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv3d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm3d(c_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1, bias=False),
                                  nn.BatchNorm3d(4), nn.ReLU(inplace=True), nn.MaxPool3d(2))
        self.layer1 = BasicBlock(4, 4)
        self.layer2 = BasicBlock(4, 8, stride=2)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


def zennit_beta0(model: nn.Module, x: Tensor, target: int = 1) -> Tensor:
    """zennit's z+ (alpha=1, beta=0) in the paper's mode, blocks canonized the zennit
    way: the block's forward replaced by one that adds through zennit's Sum layer."""
    from zennit.attribution import Gradient
    from zennit.canonizers import AttributeCanonizer
    from zennit.composites import LayerMapComposite
    from zennit.layer import Sum as ZennitSum
    from zennit.rules import AlphaBeta, Norm, Pass
    from zennit.types import Activation, AvgPool, BatchNorm, Convolution

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(self.canonizer_sum(torch.stack([identity, out], dim=-1)))

    def attributes(name, module):
        if isinstance(module, BasicBlock):
            return {"forward": forward.__get__(module), "canonizer_sum": ZennitSum()}
        return None

    rule = AlphaBeta(alpha=1.0, beta=0.0, zero_params="bias")
    composite = LayerMapComposite(
        [(Activation, Pass()), (BatchNorm, Pass()), (ZennitSum, Norm()), (AvgPool, Norm()),
         (Convolution, rule), (nn.Linear, rule)],
        canonizers=[AttributeCanonizer(attributes)])
    for p in model.parameters():
        p.requires_grad_(False)
    with Gradient(model, composite) as attributor:
        out, relevance = attributor(x, lambda y: F.one_hot(
            torch.full((y.shape[0],), target), y.shape[1]).to(y) * y.detach())
    return relevance


def test_small_resnet_matches_zennit_at_beta_0():
    torch.manual_seed(0)
    model = randomize_batchnorm(SmallResNet()).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 16, 18, 20, generator=gen)
    ours = lrp(model, x, "paper", beta=0.0, start="logit").relevance
    theirs = zennit_beta0(copy.deepcopy(model), x)
    corr = torch.corrcoef(torch.stack([ours.flatten(), theirs.flatten()]).double())[0, 1]
    assert corr >= 0.99999
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-5 * float(theirs.abs().max()))


# -- MONAI networks -------------------------------------------------------------------

def monai_net(name: str) -> nn.Module:
    from monai.networks.nets import DenseNet121, resnet10

    torch.manual_seed(0)
    if name == "densenet121":
        model = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    else:
        model = resnet10(spatial_dims=3, n_input_channels=1, num_classes=2)
    return randomize_batchnorm(model).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet10", "densenet121"])
def test_monai_networks_explain_and_conserve(name):
    model = monai_net(name)
    x = torch.rand(1, 1, 32, 36, 40, generator=torch.Generator().manual_seed(0))
    before = snapshot(model)
    for method in ("lrp-b0", "lrp-epsilon-plus"):
        heatmap = explain(model, x, method)
        assert heatmap.shape == x.shape and torch.isfinite(heatmap).all()
        assert heatmap.abs().sum() > 0
    assert_unchanged(model, before)
    with torch.no_grad():  # without shifts and biases the network conserves at beta > 0
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.zero_()
                m.bias.zero_()
            elif isinstance(m, nn.Linear):
                m.bias.zero_()
    result = lrp(model, x, "paper", beta=1.0)
    torch.testing.assert_close(result.relevance.sum().double(),
                               result.probabilities[0, 1].double(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("activation", [nn.LeakyReLU(0.1), nn.ELU(), nn.PReLU()])
def test_activations_dropout_identity_and_pooling_conserve(activation):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1, bias=False), activation,
                          nn.Dropout3d(0.5), nn.Identity(), nn.AvgPool3d(2),
                          nn.AdaptiveMaxPool3d((1, 2, 2)), nn.Flatten(),
                          nn.Linear(8, 2, bias=False)).double()
    x = 2 * scan() - 0.5  # negative values reach the activation's negative side
    result = lrp(model, x, exact_paper(1.0), start="logit")
    torch.testing.assert_close(result.relevance.sum(), result.logits[0, 1],
                               rtol=1e-9, atol=1e-15)


def test_untraceable_model_still_routes_its_traceable_blocks():
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = block_net("none", bias=False)

        def forward(self, x):
            if bool(x.sum() > -1):  # Python control flow on a value: torch.fx cannot trace
                x = x.contiguous()
            return self.inner(x)

    model, x = Outer(), scan()
    result = lrp(model, x, exact_paper(1.0), start="logit")
    expected = lrp(model.inner, x, exact_paper(1.0), start="logit")
    torch.testing.assert_close(result.relevance, expected.relevance, rtol=0, atol=0)
