"""Preprocessing to the model grid, and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

import brainlrp.data.preprocess as pp
from brainlrp.data.grid import Grid, brain_mask
from brainlrp.data.preprocess import PreprocessCache, Preprocessing, preprocess_paths
from tests.conftest import make_scan, write_scan


@pytest.mark.parametrize("r,shape", [(1, (193, 229, 193)), (2, (97, 115, 97)),
                                     (6, (33, 39, 33))])
def test_grid_shapes(r, shape):
    grid = Grid.from_resolution(r)
    assert grid.shape == shape
    np.testing.assert_allclose(grid.affine_array[:3, 3], (-96, -132, -78))
    assert brain_mask(grid).shape == shape


def test_output_is_masked_and_scaled(tmp_path, grid):
    path = write_scan(tmp_path / "s.nii.gz", make_scan(grid) * 37 + 5, grid.affine_array)
    arr = PreprocessCache(tmp_path / "cache").load(path, Preprocessing(grid))
    assert arr.shape == grid.shape and arr.dtype == np.float32
    assert arr.min() == 0.0 and arr.max() == pytest.approx(1.0)
    assert np.all(arr[~brain_mask(grid)] == 0)


def test_las_copy_gives_same_array_as_ras(tmp_path):
    # Scans stored on a finer grid than the model grid, so resampling is exercised.
    fine = Grid.from_resolution(4)
    model = Preprocessing(Grid.from_resolution(6))
    data = make_scan(fine, seed=3)
    ras = write_scan(tmp_path / "ras.nii.gz", data, fine.affine_array)
    las_aff = fine.affine_array.copy()
    las_aff[0, 0] = -4
    las_aff[0, 3] = -96 + 4 * (fine.shape[0] - 1)
    las = write_scan(tmp_path / "las.nii.gz", data[::-1], las_aff)
    cache = PreprocessCache(tmp_path / "cache")
    np.testing.assert_allclose(cache.load(ras, model), cache.load(las, model), atol=1e-6)


def test_cache_hit_does_not_read_the_nifti_again(tmp_path, grid, monkeypatch):
    path = write_scan(tmp_path / "s.nii.gz", make_scan(grid), grid.affine_array)
    cache = PreprocessCache(tmp_path / "cache")
    prep = Preprocessing(grid)
    first = preprocess_paths([path], prep, cache)
    calls = []
    monkeypatch.setattr("brainlrp.data.nifti.load_scan",
                        lambda *a, **k: calls.append(a) or pytest.fail("re-read"))
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: calls.append(f) or real_open(f, *a,
                                                                                        **k))
    assert preprocess_paths([path], prep, cache) == first
    assert str(path) not in [str(c) for c in calls]


def test_cache_key_follows_content_and_parameters(tmp_path, grid):
    path = write_scan(tmp_path / "s.nii.gz", make_scan(grid, seed=1), grid.affine_array)
    cache = PreprocessCache(tmp_path / "cache")
    a = cache.get(path, Preprocessing(grid))
    assert cache.get(path, Preprocessing(grid, mask=False)) != a
    write_scan(path, make_scan(grid, seed=2), grid.affine_array)  # new content
    assert cache.get(path, Preprocessing(grid)) != a


def test_parallel_preprocessing_matches_serial(tmp_path, grid):
    paths = [write_scan(tmp_path / f"s{i}.nii.gz", make_scan(grid, seed=i), grid.affine_array)
             for i in range(3)]
    serial = preprocess_paths(paths, Preprocessing(grid), PreprocessCache(tmp_path / "a"))
    parallel = preprocess_paths(paths, Preprocessing(grid), PreprocessCache(tmp_path / "b"),
                                n_jobs=2)
    for s, p in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(np.load(s), np.load(p))


def test_normalise_constant():
    assert not pp.normalise(np.ones((2, 3, 4))).any()


def _with_bright_skull(grid, brain: np.ndarray, seed: int = 0) -> np.ndarray:
    """``brain`` with a bright skull: fat and marrow 1.5x white matter in a shell around
    the brain mask, leaking into a third of the mask's outermost voxels (where a real
    brain does not fill the template's mask)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    mask = np.asarray(brain_mask(grid))
    edge = mask & ~ndi.binary_erosion(mask)
    shell = ndi.binary_dilation(mask, iterations=2) & ~mask
    leak = edge & (rng.random(mask.shape) < 1 / 3)
    head = np.where(leak, 0, brain)  # the same brain: it does not reach the leaked voxels
    bright = 1.5 * float(np.percentile(brain[mask], 99))
    head[shell | leak] = bright * (1 + 0.05 * rng.standard_normal(int((shell | leak).sum())))
    return head.astype(np.float32), np.where(leak, 0, brain).astype(np.float32)


@pytest.mark.parametrize("normalisation", ["minmax", "robust"])
def test_a_bright_skull_does_not_change_the_preprocessed_brain(grid, normalisation):
    import nibabel as nib

    head, stripped = _with_bright_skull(grid, make_scan(grid, seed=4) * 900)
    mask = np.asarray(brain_mask(grid))

    def prepared(data, clean_edge=True):
        img = nib.Nifti1Image(data, grid.affine_array)
        return pp.preprocess_image(img, Preprocessing(grid, normalisation=normalisation,
                                                      clean_edge=clean_edge))

    with_skull, without = prepared(head), prepared(stripped)
    assert np.corrcoef(with_skull[mask], without[mask])[0, 1] >= 0.99
    assert np.abs(with_skull - without)[mask].max() < 0.02
    if normalisation == "minmax":
        # without the edge step the skull's bright voxels set the scale: a darker brain
        darker = prepared(head, False)[mask] / np.maximum(prepared(stripped, False)[mask],
                                                          1e-6)
        assert np.median(darker[without[mask] > 0.3]) < 0.8


def test_preprocessing_of_older_runs_keeps_its_key_and_its_maths(grid):
    """A model card written before the edge step reads as without it (same cache key)."""
    old = {"grid": grid.to_dict(), "mask": True, "normalisation": "minmax",
           "interpolation": "linear", "version": 1}
    prep = Preprocessing.from_dict(old)
    assert not prep.clean_edge and prep.to_dict() == old
    assert Preprocessing(grid).to_dict() == old | {"clean_edge": True}


def test_robust_scaling_clips_the_brightest_half_percent(grid):
    data = make_scan(grid, seed=2) * 500
    mask = np.asarray(brain_mask(grid))
    data[tuple(np.argwhere(mask)[0])] = 1e5  # one hot voxel
    out = pp.normalise(data * mask, "robust", mask)
    assert out.min() == 0 and out.max() == 1
    assert np.mean(out[mask] >= 1) == pytest.approx(0.005, abs=0.002)
    assert np.median(out[mask]) > 0.4  # the hot voxel does not darken the brain


def test_unknown_normalisation_is_one_clear_error(grid):
    from brainlrp.errors import BrainLRPError

    with pytest.raises(BrainLRPError, match="unknown normalisation 'zscore'.*robust"):
        Preprocessing(grid, normalisation="zscore")
