"""The deformation maths: B-spline fields, potential flows, integration, label volumes."""

from __future__ import annotations

import numpy as np
import pytest

from brainlrp.simulate.anatomy import (
    bspline_field,
    dither,
    integrate_flow,
    jacobian_det,
    linear_basis,
    potential_flow,
    sample,
    separable_expand,
    soft_label_volumes,
)

SHAPE = (20, 23, 26)  # distinct axis lengths: a swapped axis fails loudly


def test_bspline_field_is_smooth_reproducible_and_sized():
    a = bspline_field(SHAPE, spacing=6, sd=2.0, rng=np.random.default_rng(0))
    b = bspline_field(SHAPE, spacing=6, sd=2.0, rng=np.random.default_rng(0))
    assert a.shape == (3,) + SHAPE and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert 0.2 < a.std() < 2.0
    assert np.abs(np.diff(a, axis=1)).max() < 1.0  # smooth: small voxel-to-voxel steps


def test_separable_expand_matches_the_explicit_sum():
    rng = np.random.default_rng(1)
    coeffs = rng.standard_normal((3, 4, 5))
    bases = [rng.random((n, c)) for n, c in zip((6, 7, 8), coeffs.shape, strict=True)]
    explicit = np.einsum("abc,ia,jb,kc->ijk", coeffs, *bases)
    np.testing.assert_allclose(separable_expand(coeffs, bases), explicit, rtol=1e-5)


def test_linear_basis_preserves_constants_and_interpolates():
    basis = linear_basis(12, 4)
    np.testing.assert_allclose(basis.sum(1), 1.0)
    ramp = basis @ np.arange(4.0)
    assert np.all(np.diff(ramp) >= 0) and ramp[0] == 0 and ramp[-1] == 3


def test_potential_flow_divergence_equals_the_source():
    source = np.zeros(SHAPE, dtype=np.float32)
    source[6:12, 8:14, 9:17] = 0.2
    source[14:17, 8:14, 9:17] = -0.4  # balanced sink
    u = potential_flow(source, sigma=0.5)
    div = sum(np.gradient(u[i], axis=i) for i in range(3))
    inside = (slice(7, 11), slice(9, 13), slice(10, 16))
    assert div[inside].mean() == pytest.approx(0.2, rel=0.15)
    outside = (slice(0, 3), slice(0, 4), slice(0, 4))
    assert np.abs(div[outside]).max() < 0.02  # no source there, no divergence


def test_integrated_flow_shrinks_a_source_region_by_its_loss():
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[5:15, 6:17, 7:19] = 1
    loss = 0.2
    source = np.where(labels == 1, -np.log1p(-loss), 0).astype(np.float32)
    u = integrate_flow(potential_flow(source, sigma=0.5))
    grid = np.indices(SHAPE, dtype=np.float32)
    before = soft_label_volumes(labels, grid, 2)[1]
    after = soft_label_volumes(labels, grid + u, 2)[1]
    assert before == pytest.approx((labels == 1).sum())
    assert 1 - after / before == pytest.approx(loss, abs=0.05)
    assert jacobian_det(u)[8:12, 9:14, 10:16].mean() > 1.1  # pull-back: region shrinks


def test_integrate_flow_on_points_matches_dense_and_zero_is_identity():
    rng = np.random.default_rng(2)
    v = bspline_field(SHAPE, spacing=5, sd=0.5, rng=rng)
    points = np.nonzero(np.ones(SHAPE, dtype=bool))
    np.testing.assert_allclose(integrate_flow(v, points), integrate_flow(v), atol=1e-6)
    assert not integrate_flow(np.zeros((3,) + SHAPE, np.float32)).any()
    np.testing.assert_allclose(jacobian_det(np.zeros((3,) + SHAPE, np.float32)), 1.0)


def test_dithered_nearest_neighbour_counts_follow_subvoxel_shifts():
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[3:17, 3:20, 10:20] = 1
    grid = np.indices(SHAPE, dtype=np.float32)
    shifted = grid.copy()
    shifted[2] += 0.3  # a third of a voxel: plain nearest neighbour sees nothing
    plain = (sample(labels, shifted, order=0) == 1).sum()
    dithered = (sample(labels, shifted + dither(SHAPE), order=0) == 1).sum()
    expected = soft_label_volumes(labels, shifted, 2)[1]
    assert plain == (labels == 1).sum()
    assert dithered == pytest.approx(expected, rel=0.02)
