"""Region perturbation on a hand model whose AD probability is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from brainlrp.analysis import faithfulness as fa
from brainlrp.analysis.faithfulness import AOPC_COLUMNS, FAITHFULNESS_COLUMNS
from tests.analysis.conftest import SHAPE, grad_explain


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


class HandModel(nn.Module):
    """AD logit = 2 * mean(x over Foo) + 1 * mean(x over Bar) - 1.5; counts its inputs."""

    def __init__(self, codes):
        super().__init__()
        w = np.zeros(SHAPE)
        w[codes == 1] = 2.0 / (codes == 1).sum()
        w[codes == 2] = 1.0 / (codes == 2).sum()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        s = (x[:, 0] * self.w).sum(dim=(1, 2, 3)) - 1.5
        return torch.stack([torch.zeros_like(s), s], dim=1)


def test_curves_and_aopc_by_hand(tiny_atlas):
    codes = tiny_atlas.area_codes  # 1 = Foo, 2 = Bar
    model = HandModel(codes).eval()
    x = np.ones((1, 1, *SHAPE), np.float32)
    baseline = np.zeros(SHAPE, np.float32)
    foo_first = np.array([[3.0, 1.0]])  # density: Foo above Bar
    res = fa.faithfulness(model, x, baseline, codes, 2, ["m"], density={"m": foo_first},
                          scan_ids=["s"], steps=2, n_random=3, seed=0)
    p = [sigmoid(1.5), sigmoid(-0.5), sigmoid(-1.5)]
    curve = res.curves[res.curves["method"] == "m"]
    np.testing.assert_allclose(curve["p_ad"], p, rtol=1e-6)
    np.testing.assert_allclose(curve["p_ad_drop"], [0, p[0] - p[1], p[0] - p[2]], rtol=1e-6)
    aopc_rel = (0 + (p[0] - p[1]) + (p[0] - p[2])) / 3
    # Random orders: Foo first gives p[1] at step 1, Bar first gives sigmoid(0.5).
    orders = fa.random_orders(3, 1, 2, seed=0)
    step1 = np.mean([p[1] if o[0, 0] == 1 else sigmoid(0.5) for o in orders])
    aopc_rand = (0 + (p[0] - step1) + (p[0] - p[2])) / 3
    row = res.aopc.iloc[0]
    assert tuple(res.aopc.columns) == AOPC_COLUMNS
    assert tuple(res.curves.columns) == FAITHFULNESS_COLUMNS
    assert row["aopc_relevance"] == pytest.approx(aopc_rel, rel=1e-6)
    assert row["aopc_random"] == pytest.approx(aopc_rand, rel=1e-6)
    assert row["aopc_difference"] == pytest.approx(aopc_rel - aopc_rand, rel=1e-6)
    assert row["aopc_difference"] >= 0


def test_identical_perturbations_are_evaluated_once(tiny_atlas):
    codes = tiny_atlas.area_codes
    model = HandModel(codes).eval()
    x = np.ones((2, 1, *SHAPE), np.float32)
    d = np.array([[3.0, 1.0], [1.0, 3.0]])
    res = fa.faithfulness(model, x, np.zeros(SHAPE, np.float32), codes, 2, ["a", "b"],
                          density={"a": d, "b": d}, steps=2, n_random=4, seed=1)
    # Per subject at most 4 distinct sets: {}, {Foo}, {Bar}, {Foo, Bar}.
    assert model.seen <= 2 * 4
    a = res.curves[res.curves["method"] == "a"]["p_ad"].to_numpy()
    b = res.curves[res.curves["method"] == "b"]["p_ad"].to_numpy()
    np.testing.assert_array_equal(a, b)


def test_relevance_order_most_relevant_first():
    order = fa.relevance_order(np.array([[0.1, 0.5, np.nan, 0.3]]))
    assert order.tolist() == [[2, 4, 1, 3]]


def test_explain_fn_path_on_the_tiny_model(atlas6):
    from brainlrp.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny", atlas6.grid.shape).eval()
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, *atlas6.grid.shape)).astype(np.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = fa.faithfulness(model, x, x[:, 0].mean(0), atlas6.area_codes, atlas6.n_areas,
                          ["gradient"], explain_fn=grad_explain, steps=3, n_random=1)
    assert len(res.curves) == 2 * 2 * 4  # (method + random) x subjects x (steps + 1)
    assert np.isfinite(res.aopc[["aopc_relevance", "aopc_random"]].to_numpy()).all()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_inference_copy_gives_the_same_outputs(atlas6):
    from brainlrp.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny", atlas6.grid.shape)
    for m in model.modules():  # non-trivial statistics, so folding them matters
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    x = np.random.default_rng(0).random((3, 1, *atlas6.grid.shape)).astype(np.float32)
    fast = fa.inference_copy(model)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in fast.modules())
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())  # original intact
    np.testing.assert_allclose(fa.predict_ad(fast, x), fa.predict_ad(model, x), atol=1e-5)
