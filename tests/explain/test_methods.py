"""The entry point ``explain`` and the Captum baselines."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from brainlrp import catalog
from brainlrp.errors import BrainLRPError
from brainlrp.explain import available_methods, explain, get_method
from brainlrp.explain.lrp import lrp
from tests.explain.test_engine import assert_unchanged, snapshot

LISTED = ["lrp-b0", "lrp-b0.25", "lrp-b0.5", "lrp-b0.75", "lrp-b1", "lrp-bn-merged-b0",
          "lrp-eps", "lrp-epsilon-plus", "gb", "gradient", "gxi", "ig", "smoothgrad",
          "smoothgrad-sq", "vargrad", "occlusion", "lrp-ref", "ig-ref", "occlusion-ref",
          "lrp-epsilon-gamma-box", "lrp-epsilon-plus-flat", "edges", "noise", "diff"]
#: Cheap settings so every method runs in well under a second on the tiny model.
FAST = {"ig": {"steps": 8}, "smoothgrad": {"n_samples": 3}, "smoothgrad-sq": {"n_samples": 3},
        "vargrad": {"n_samples": 3}, "occlusion": {"window": 12},
        "ig-ref": {"steps": 8}}


def options_for(method: str, x: torch.Tensor) -> dict:
    """FAST settings, plus a reference and areas for the methods that need them."""
    options = dict(FAST.get(method, {}))
    if get_method(method).needs_reference:
        options["reference"] = reference_for(x)
    if method == "occlusion-ref":
        options["areas"] = two_areas(x.shape[2:])
    return options


def reference_for(x: torch.Tensor) -> torch.Tensor:
    """One reference image for the batch: a different brain-like volume."""
    gen = torch.Generator().manual_seed(11)
    return (x[:1] != 0) * torch.rand(x[:1].shape, generator=gen, dtype=x.dtype)


def two_areas(shape) -> torch.Tensor:
    """Two boxes as areas 1 and 2 on the grid, 0 elsewhere."""
    areas = torch.zeros(tuple(shape), dtype=torch.int64)
    areas[2:10, 3:12, 4:11] = 1
    areas[12:20, 14:24, 12:22] = 2
    return areas


def probability_of(model: nn.Module, x: torch.Tensor, target: int = 1) -> torch.Tensor:
    return torch.softmax(model(x), dim=1)[:, target]


# -- the registry -----------------------------------------------------------------------

#: The listed methods that explain the difference from a reference image.
NEEDS_REFERENCE = {"lrp-ref", "ig-ref", "occlusion-ref", "diff"}


def test_available_methods_lists_the_registry():
    # Spelled out: a method added, dropped or reordered must be reflected here.
    assert available_methods() == LISTED
    # Every method the catalog lists has a runner: a catalog entry whose runner is
    # missing or misspelt would otherwise drop out of the list without a word.
    assert catalog.listed() == LISTED


@pytest.mark.parametrize("method", LISTED)
def test_each_listed_method_resolves_to_itself(method):
    resolved = get_method(method)
    assert resolved.name == method
    assert resolved.info.is_lrp is method.startswith("lrp-")
    assert resolved.needs_reference is (method in NEEDS_REFERENCE)
    assert callable(resolved.run) and "target" not in resolved.options


@pytest.mark.parametrize(("name", "canonical"), [
    ("lrp-b0.3", "lrp-b0.3"), ("lrp-b1.50", "lrp-b1.5"), ("lrp-b2", "lrp-b2"),
    ("lrp-bn-merged-b0.25", "lrp-bn-merged-b0.25")])
def test_any_beta_parses(name, canonical):
    assert get_method(name).name == canonical


@pytest.mark.parametrize("name", ["lrp-b-1", "lrp", "LRP-B0", "guided", "lrp-bx"])
def test_unknown_method_lists_the_known_ones(tiny_model, tiny_input, name):
    with pytest.raises(BrainLRPError, match="unknown explanation method") as info:
        explain(tiny_model, tiny_input, name)
    for known in LISTED + ["lrp-b<beta>"]:
        assert known in str(info.value)


def test_unknown_option_names_the_accepted_ones(tiny_model, tiny_input):
    with pytest.raises(BrainLRPError, match="'gb' takes no option 'steps'.*it takes: start"):
        explain(tiny_model, tiny_input, "gb", steps=3)
    with pytest.raises(BrainLRPError, match="'lrp-b0' takes no option 'beta'"):
        explain(tiny_model, tiny_input, "lrp-b0", beta=1.0)
    # A method's fixed parameters are not options: SmoothGrad cannot turn into VarGrad.
    for name in ("smoothgrad", "vargrad"):
        with pytest.raises(BrainLRPError, match=f"'{name}' takes no option 'statistic'"):
            explain(tiny_model, tiny_input, name, statistic="variance")


@pytest.mark.parametrize("method", LISTED)
def test_target_out_of_range_is_a_user_error(tiny_model, tiny_input, method):
    with pytest.raises(BrainLRPError, match="target 5 is out of range"):
        explain(tiny_model, tiny_input, method, target=5, **options_for(method, tiny_input))


# -- every method -----------------------------------------------------------------------

@pytest.mark.parametrize("method", LISTED)
def test_every_method_gives_a_finite_heatmap_shaped_like_the_input(tiny_model, tiny_input,
                                                                    method):
    tiny_model.train()
    before = snapshot(tiny_model)
    x = tiny_input.double()
    heatmap, probs = explain(tiny_model, x, method, target=1, return_probabilities=True,
                             **options_for(method, x))
    assert heatmap.shape == tiny_input.shape and heatmap.dtype == torch.float32
    assert heatmap.device == tiny_input.device
    assert torch.isfinite(heatmap).all() and heatmap.abs().sum() > 0
    assert_unchanged(tiny_model, before)
    with torch.no_grad():
        expected = torch.softmax(tiny_model.eval()(tiny_input), dim=1)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)


def test_lrp_methods_are_the_paper_composite(tiny_model, tiny_input):
    for beta in (0.0, 0.5):
        via_name = explain(tiny_model, tiny_input, f"lrp-b{beta:g}")
        direct = lrp(tiny_model, tiny_input, "paper", beta=beta).relevance
        torch.testing.assert_close(via_name, direct)


@pytest.mark.parametrize("start", ["probability", "logit"])
def test_gradient_is_the_signed_input_gradient(tiny_model, tiny_input, start):
    x = tiny_input.clone().requires_grad_(True)
    output = probability_of(tiny_model, x) if start == "probability" else tiny_model(x)[:, 1]
    (expected,) = torch.autograd.grad(output.sum(), x)
    heatmap = explain(tiny_model, tiny_input, "gradient", start=start)
    torch.testing.assert_close(heatmap, expected)
    assert (heatmap < 0).any() and (heatmap > 0).any()  # signed, not absolute
    torch.testing.assert_close(explain(tiny_model, tiny_input, "gxi", start=start),
                               expected * tiny_input)


def test_guided_backprop_matches_a_hand_written_one(tiny_model, tiny_input):
    """Guided backprop: at every ReLU pass only positive gradient, only where x > 0."""
    handles = [m.register_full_backward_hook(lambda mod, g_in, g_out: (g_in[0].clamp(min=0),))
               for m in tiny_model.modules() if isinstance(m, nn.ReLU)]
    try:
        x = tiny_input.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(probability_of(tiny_model, x).sum(), x)
    finally:
        for handle in handles:
            handle.remove()
    heatmap = explain(tiny_model, tiny_input, "gb")
    torch.testing.assert_close(heatmap, expected)
    assert not torch.allclose(heatmap, explain(tiny_model, tiny_input, "gradient"))


def test_integrated_gradients_are_complete(tiny_model, tiny_input):
    """Sum of attributions = f(x) - f(baseline) up to the quadrature error."""
    heatmap = explain(tiny_model, tiny_input, "ig", steps=64, batch_size=16)
    with torch.no_grad():
        gain = probability_of(tiny_model, tiny_input) - probability_of(
            tiny_model, torch.zeros_like(tiny_input))
    torch.testing.assert_close(heatmap.sum((1, 2, 3, 4)), gain, rtol=0.02,
                               atol=0.02 * float(gain.abs().max()))


def test_smoothgrad_is_reproducible_and_zero_noise_is_the_gradient(tiny_model, tiny_input):
    first = explain(tiny_model, tiny_input, "smoothgrad", n_samples=3, seed=1)
    torch.testing.assert_close(first, explain(tiny_model, tiny_input, "smoothgrad",
                                              n_samples=3, seed=1))
    noiseless = explain(tiny_model, tiny_input, "smoothgrad", n_samples=2, noise=0.0)
    torch.testing.assert_close(noiseless, explain(tiny_model, tiny_input, "gradient"))


def test_noise_tunnels_share_their_noisy_copies(tiny_model, tiny_input):
    """SmoothGrad, SmoothGrad squared and VarGrad of one seed aggregate the same noisy
    gradients: mean g, mean g^2 and mean g^2 - (mean g)^2."""
    kw = {"n_samples": 4, "seed": 3, "noise": 0.2}
    mean = explain(tiny_model, tiny_input, "smoothgrad", **kw).double()
    square = explain(tiny_model, tiny_input, "smoothgrad-sq", **kw).double()
    var = explain(tiny_model, tiny_input, "vargrad", **kw).double()
    assert (var >= 0).all() and (square >= 0).all()
    scale = float(square.abs().max())
    torch.testing.assert_close(var, square - mean ** 2, rtol=0, atol=1e-4 * scale)
    assert not torch.allclose(square, mean ** 2)  # the noise did something
    noiseless = explain(tiny_model, tiny_input, "vargrad", n_samples=2, noise=0.0)
    assert float(noiseless.abs().max()) <= 1e-6 * scale


def test_reference_methods_explain_one_stated_quantity(tiny_model, tiny_input):
    """lrp-ref and ig-ref both explain p(AD)(scan) - p(AD)(reference), as the catalog
    says: their maps add up to it (ig-ref up to its path integral's error)."""
    reference = 0.5 * tiny_input[:1]
    with torch.no_grad():
        delta = probability_of(tiny_model, tiny_input) - probability_of(tiny_model, reference)
    for method in ("lrp-ref@mean", "ig-ref@mean", "occlusion-ref@mean"):
        assert catalog.describe(method).explained_quantity.startswith("p(AD) of the scan minus")
    lrp_map = explain(tiny_model, tiny_input, "lrp-ref@mean", reference=reference)
    torch.testing.assert_close(lrp_map.sum(dim=(1, 2, 3, 4)), delta, rtol=1e-3, atol=1e-6)
    ig_map = explain(tiny_model, tiny_input, "ig-ref@mean", reference=reference, steps=64)
    torch.testing.assert_close(ig_map.sum(dim=(1, 2, 3, 4)), delta, rtol=0.05,
                               atol=0.02 * float(delta.abs().max()))


def test_reference_difference_is_the_reference_minus_the_scan(tiny_model, tiny_input):
    reference = torch.full_like(tiny_input[:1], 0.5)
    heatmap = explain(tiny_model, tiny_input, "diff@mean", reference=reference)
    torch.testing.assert_close(heatmap, reference.expand_as(tiny_input) - tiny_input)
    restored = torch.maximum(tiny_input, reference)  # a -restore reference: one-sided
    assert (explain(tiny_model, tiny_input, "diff@mean-restore", reference=restored) >= 0).all()
    with pytest.raises(BrainLRPError, match="reference"):
        explain(tiny_model, tiny_input, "diff@mean")


def test_occlusion_of_a_box_is_the_output_drop(tiny_model, tiny_input):
    window = (24, 28, 26)  # the whole volume: one box, the drop to an all-zero scan
    heatmap = explain(tiny_model, tiny_input, "occlusion", window=window)
    with torch.no_grad():
        drop = probability_of(tiny_model, tiny_input) - probability_of(
            tiny_model, torch.zeros_like(tiny_input))
    torch.testing.assert_close(heatmap[:, 0, 0, 0, 0], drop, rtol=1e-4, atol=1e-6)
    with pytest.raises(BrainLRPError, match="larger than the volume"):
        explain(tiny_model, tiny_input, "occlusion", window=40)
