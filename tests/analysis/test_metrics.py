"""The analysis maths, each checked against a value computed by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from brainlrp.analysis import metrics


def test_relevance_modes():
    x = np.array([-2.0, 0.0, 3.0])
    assert metrics.apply_relevance(x, "positive").tolist() == [0, 0, 3]
    assert metrics.apply_relevance(x, "absolute").tolist() == [2, 0, 3]
    assert metrics.apply_relevance(x, "signed").tolist() == [-2, 0, 3]
    y = x.copy()
    metrics.apply_relevance(y, "positive", out=y)
    assert y.tolist() == [0, 0, 3]
    with pytest.raises(ValueError, match="relevance mode"):
        metrics.apply_relevance(x, "squared")


def test_density_and_gain_by_hand():
    sums = np.array([[2.0, 6.0, 0.0]])
    np.testing.assert_allclose(metrics.density(sums, [1, 3, 0]), [[2.0, 2.0, np.nan]])
    np.testing.assert_allclose(metrics.gain([1.0, 2.0, 3.0], [2.0, 0.0, 1.5]),
                               [0.5, np.nan, 2.0])
    # Gain of HC over itself is 1 wherever defined.
    np.testing.assert_allclose(metrics.gain([4.0, 0.0], [4.0, 0.0]), [1.0, np.nan])


def test_weighted_group_mean_counts_subjects_once():
    values = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]])
    # Rows 0 and 1 are two scans of one subject (weight 1/2 each), row 2 another.
    np.testing.assert_allclose(metrics.weighted_group_mean(values, [0.5, 0.5, 1.0]),
                               [(2.0 + 10.0) / 2, (3.0 + 20.0) / 2])
    assert np.isnan(metrics.weighted_group_mean(values, [0, 0, 0])).all()


def test_cosine_similarity_by_hand():
    v = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    s = metrics.cosine_similarity_matrix(v)
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(s, [[1, r, 0], [r, 1, r], [0, r, 1]], atol=1e-12)
    assert metrics.mean_off_diagonal(s) == pytest.approx(2 * r / 3)
    assert metrics.least_similar_pair(s)[:2] == (0, 2)
    assert np.isnan(metrics.cosine_similarity_matrix(np.zeros((2, 3)))).all()
    assert np.isnan(metrics.mean_off_diagonal(np.ones((1, 1))))


def test_top_k_and_overlap_by_hand():
    a = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    b = a[::-1].copy()
    assert metrics.top_k(a, 2).tolist() == [0, 1]
    assert metrics.top_k_overlap(a, b, 2) == (0, 0.0)
    assert metrics.top_k_overlap(a, b, 3) == (1, pytest.approx(1 / 3))
    assert metrics.top_k_overlap(a, a, 4) == (4, 1.0)
    # NaN ranks last; ties keep their order.
    assert metrics.top_k(np.array([np.nan, 1.0, 1.0, 0.5]), 3).tolist() == [1, 2, 3]


def test_top_k_recall_by_hand():
    truth = np.array([0.5, 0.4, 0.0, 0.3, 0.0])
    assert metrics.top_k_recall(truth, truth, 3) == 1.0
    assert metrics.top_k_recall(np.array([0, 1, 5, 0, 4.0]), truth, 3) == pytest.approx(1 / 3)
    # Only affected regions count: k = 5 still asks for the three affected ones.
    assert metrics.top_k_recall(np.array([1, 1, 0, 1, 0.0]), truth, 5) == 1.0
    assert np.isnan(metrics.top_k_recall(truth, np.zeros(5), 3))


def test_permutation_p_bounds():
    x = np.arange(10.0)
    r, p = metrics.permutation_pearson(x, 2 * x + 1, n_permutations=1000, seed=0)
    assert r == pytest.approx(1.0)
    assert p == pytest.approx(1 / 1001)
    r, p = metrics.permutation_pearson(x, -x, n_permutations=1000, seed=0)
    assert r == pytest.approx(-1.0) and p == pytest.approx(1 / 1001)
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = rng.standard_normal(12), rng.standard_normal(12)
        r, p = metrics.permutation_pearson(a, b, n_permutations=200, seed=3)
        assert r == pytest.approx(np.corrcoef(a, b)[0, 1])
        assert p * 201 == pytest.approx(round(p * 201))  # (1 + hits) / (1 + n)
        assert metrics.permutation_pearson(a, b, 200, seed=3) == (r, p)  # seeded
    assert all(np.isnan(metrics.permutation_pearson(x, np.ones(10))))
    assert np.isnan(metrics.permutation_pearson([1.0, 2.0], [2.0, 1.0])[0])


def exact_permutation_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided permutation p of Pearson r over all n! relabellings of ``y``."""
    r = abs(np.corrcoef(x, y)[0, 1])
    perms = np.array(list(itertools.permutations(range(len(y)))))
    xc, yc = x - x.mean(), y[perms] - y.mean()
    rs = np.abs(yc @ xc) / (np.linalg.norm(xc) * np.linalg.norm(yc, axis=1))
    return float(np.mean(rs >= r - 1e-12))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_permutation_p_estimates_the_exact_p(seed):
    """With 20000 permutations the p-value is within 5 sd of the exact one (7! pairings)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(7)
    b = 0.5 * a + rng.standard_normal(7)
    exact = exact_permutation_p(a, b)
    assert 0.01 < exact < 0.99  # a p-value that a one-sided or mis-counted test would move
    _, p = metrics.permutation_pearson(a, b, n_permutations=20000, seed=0)
    assert abs(p - exact) <= 5 * np.sqrt(exact * (1 - exact) / 20000) + 1 / 20001


def test_mass_accuracy_by_hand():
    relevance = np.array([1.0, 2.0, -1.0, 3.0])
    mask = np.array([True, False, True, False])
    assert metrics.mass_accuracy(relevance, mask) == pytest.approx(1 / 6)
    assert metrics.mass_accuracy(relevance, np.ones(4, bool)) == 1.0
    assert np.isnan(metrics.mass_accuracy(-relevance ** 2, mask))


def test_auc_by_hand_and_against_sklearn():
    assert metrics.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert metrics.roc_auc(np.zeros(6), [0, 1, 0, 1, 0, 0]) == 0.5
    assert np.isnan(metrics.roc_auc([1.0, 2.0], [1, 1]))
    rng = np.random.default_rng(0)
    s = np.round(rng.standard_normal(500), 1)  # rounded: many ties
    y = rng.random(500) < 0.3
    assert metrics.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_spearman_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(50), np.round(rng.standard_normal(50), 1)
    assert metrics.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert np.isnan(metrics.spearman(a, np.ones(50)))


def test_aopc_by_hand():
    # Steps 0, 1, 2: drops 0, 0.3, 0.6 -> mean 0.3.
    assert metrics.aopc(np.array([0.9, 0.6, 0.3])) == pytest.approx(0.3)
    np.testing.assert_allclose(metrics.aopc(np.array([[1.0, 1.0], [1.0, 0.0]])), [0.0, 0.5])
