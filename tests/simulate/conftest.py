"""Fixtures for the simulator: tiny grids (7 mm: 28 x 33 x 28 voxels) and one small
cohort shared by the read-only tests."""

from __future__ import annotations

import pytest

#: The template grid at 7 mm is 28 x 33 x 28 voxels: fast, and every axis differs.
TEST_RESOLUTION = 7.0


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A simulated cohort of 6 subjects (3 HC, 3 AD) at 7 mm; do not modify it."""
    from brainlrp.simulate import simulate

    root = tmp_path_factory.mktemp("simulated") / "cohort"
    result = simulate(root, n_subjects=6, resolution=TEST_RESOLUTION, seed=11, n_jobs=1,
                      progress=False)
    return result
