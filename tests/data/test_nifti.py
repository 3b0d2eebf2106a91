"""NIfTI loading: validation of every bad input, RAS+ reorientation, MNI check."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from brainlrp.data.nifti import load_scan
from brainlrp.errors import BrainLRPError
from tests.conftest import make_scan, write_scan


@pytest.fixture
def scan(grid):
    return make_scan(grid)


def test_valid_scan_loads_as_float32_ras(tmp_path, grid, scan):
    path = write_scan(tmp_path / "ok.nii.gz", scan, grid.affine_array)
    img = load_scan(path)
    assert img.get_data_dtype() == np.float32
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    np.testing.assert_allclose(img.get_fdata(), scan, rtol=1e-6)


def test_las_copy_is_reoriented(tmp_path, grid, scan):
    las = grid.affine_array.copy()
    las[0, 0] = -las[0, 0]
    las[0, 3] = grid.affine_array[0, 3] + grid.resolution * (grid.shape[0] - 1)
    path = write_scan(tmp_path / "las.nii.gz", scan[::-1], las)
    img = load_scan(path)
    np.testing.assert_allclose(img.affine, grid.affine_array)
    np.testing.assert_allclose(img.get_fdata(), scan, rtol=1e-6)


def test_4d_with_one_volume_is_accepted(tmp_path, grid, scan):
    path = write_scan(tmp_path / "one.nii.gz", scan[..., None], grid.affine_array)
    assert load_scan(path).shape == grid.shape


def _error(path) -> str:
    with pytest.raises(BrainLRPError) as info:
        load_scan(path)
    text = info.value.one_line()
    assert "\n" not in text
    return text


def test_missing_file(tmp_path):
    assert "not found" in _error(tmp_path / "nope.nii.gz")


def test_not_a_nifti(tmp_path):
    path = tmp_path / "text.nii.gz"
    path.write_text("hello")
    assert "cannot read" in _error(path)


def test_corrupted_gzip(tmp_path, grid, scan):
    path = write_scan(tmp_path / "ok.nii.gz", scan, grid.affine_array)
    raw = path.read_bytes()
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(raw[: len(raw) // 2])
    text = _error(broken)
    assert "broken.nii.gz" in text


def test_corrupted_gzip_body(tmp_path, grid, scan):
    path = write_scan(tmp_path / "ok.nii", scan, grid.affine_array)
    blob = bytearray(gzip.compress(path.read_bytes()))
    blob[len(blob) // 2: len(blob) // 2 + 64] = b"\x00" * 64
    broken = tmp_path / "garbled.nii.gz"
    broken.write_bytes(bytes(blob))
    assert "garbled.nii.gz" in _error(broken)


def test_2d_image(tmp_path, grid, scan):
    path = write_scan(tmp_path / "flat.nii.gz", scan[:, :, 10], grid.affine_array)
    assert "2D" in _error(path)


def test_4d_with_several_volumes(tmp_path, grid, scan):
    path = write_scan(tmp_path / "four.nii.gz", np.stack([scan, scan], -1), grid.affine_array)
    assert "4D with 2 volumes" in _error(path)


def test_nan_voxels(tmp_path, grid, scan):
    bad = scan.copy()
    bad[5, 5, 5] = np.nan
    bad[6, 6, 6] = np.inf
    path = write_scan(tmp_path / "nan.nii.gz", bad, grid.affine_array)
    assert "2 NaN/Inf voxels" in _error(path)


def test_all_zero_image(tmp_path, grid):
    path = write_scan(tmp_path / "zero.nii.gz", np.zeros(grid.shape), grid.affine_array)
    assert "all-zero" in _error(path)


def test_degenerate_affine(tmp_path, grid, scan):
    # nibabel refuses to build such an image, so patch the header bytes: no qform,
    # and an sform whose z row is all zeros.
    path = write_scan(tmp_path / "degenerate.nii", scan, grid.affine_array)
    raw = bytearray(path.read_bytes())
    raw[252:254] = np.int16(0).tobytes()  # qform_code
    raw[254:256] = np.int16(1).tobytes()  # sform_code
    raw[312:328] = np.zeros(4, np.float32).tobytes()  # srow_z
    path.write_bytes(bytes(raw))
    assert "degenerate affine" in _error(path)


def test_scan_in_scanner_space_is_rejected(tmp_path, grid, scan):
    # Typical scanner export: origin in a corner, so all coordinates are positive.
    aff = grid.affine_array.copy()
    aff[:3, 3] = 0.0
    path = write_scan(tmp_path / "native.nii.gz", scan, aff)
    text = _error(path)
    assert "not in MNI space" in text and "register" in text


def test_shifted_brain_is_rejected(tmp_path, grid, scan):
    aff = grid.affine_array.copy()
    aff[:3, 3] += (0.0, 60.0, 0.0)  # field of view still large, brain 60 mm off
    big = np.zeros((grid.shape[0], grid.shape[1] + 20, grid.shape[2]), np.float32)
    big[:, : grid.shape[1]] = scan
    path = write_scan(tmp_path / "shifted.nii.gz", big, aff)
    assert "not in MNI space" in _error(path)
