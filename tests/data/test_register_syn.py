"""SyN registration: the inverse brings what the forward transform moved onto the model
grid back to the scan's own voxels (the path heatmaps take to native space)."""

from __future__ import annotations

import ants
import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi

from brainlrp.data.grid import Grid, template
from brainlrp.data.register import Registration, register_scan, to_ants
from tests.data.native import known_transform

GRID = Grid.from_resolution(6)
#: The native grid: LAS, 6.5 x 6.5 x 7.8 mm voxels, 30 x 35 x 25 (distinct lengths).
VOXEL = 6.5
SHAPE = (int(200 / VOXEL), int(232 / VOXEL), int(200 / (1.2 * VOXEL)))
#: Amplitude (mm) of the smooth nonlinear deformation on top of the known affine.
WARP_MM = 6.0


def native_affine() -> np.ndarray:
    affine = np.diag([-VOXEL, VOXEL, 1.2 * VOXEL, 1.0])
    affine[:3, 3] = [100, -116, -100]
    return affine


def warped_template_scan(path) -> tuple[np.ndarray, np.ndarray]:
    """The ICBM template seen through the known affine and a smooth sinusoidal warp
    (the nonlinear part only SyN can undo), on the native grid; written to ``path``."""
    source = Grid.from_resolution(2)
    data = np.asarray(template(source), np.float32)
    affine = native_affine()
    world = nib.affines.apply_affine(known_transform(0) @ affine,
                                     np.indices(SHAPE).reshape(3, -1).T)
    warp = WARP_MM * np.sin(world[:, [1, 2, 0]] / 25.0)
    voxels = nib.affines.apply_affine(np.linalg.inv(source.affine_array), world + warp)
    scan = ndi.map_coordinates(data, voxels.T, order=1).reshape(SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(scan, affine), path)
    return scan, affine


def round_trip_error(back: list[np.ndarray], ramps: list[np.ndarray],
                     where: np.ndarray) -> np.ndarray:
    """Distance (mm) between where each voxel's coordinates came back and where it is."""
    diff = np.stack([b - r for b, r in zip(back, ramps, strict=True)], axis=-1)
    return np.linalg.norm(diff, axis=-1)[where]


def test_syn_inverse_undoes_the_forward_warp(tmp_path):
    """Coordinate ramps of the scan (x, y, z in mm: linear, so interpolation adds no
    error) warped onto the grid with the forward transforms and back with ``to_native``
    come back to within a fraction of a millimetre; the affine part alone would miss by
    the warp's millimetres."""
    scan, affine = warped_template_scan(tmp_path / "native.nii.gz")
    reg = register_scan(tmp_path / "native.nii.gz", Registration("syn", n4=False), GRID,
                        tmp_path / "cache")
    names = [p.name for p, _ in reg.inverse]
    assert [flag for _, flag in reg.inverse] == [True, False]  # invert the affine only
    assert names[0].endswith("GenericAffine.mat") and names[1].endswith("InverseWarp.nii.gz")
    assert reg.correlation > 0.5

    native_mask = np.asarray(nib.load(reg.folder / "brain_mask_native.nii.gz").dataobj) > 0
    inside = ndi.binary_erosion(native_mask)  # well inside the model grid's field of view
    assert inside.sum() > 1000
    positions = nib.affines.apply_affine(affine, np.indices(SHAPE).reshape(3, -1).T)
    ramps = [positions[:, k].reshape(SHAPE).astype(np.float32) for k in range(3)]
    on_grid = to_ants(np.zeros(GRID.shape, np.float32), GRID.affine_array)
    forward = [ants.apply_transforms(fixed=on_grid, moving=to_ants(r, affine),
                                     transformlist=[str(p) for p in reg.forward]).numpy()
               for r in ramps]
    assert all(f.shape == GRID.shape for f in forward)

    back = [reg.to_native(f, SHAPE, affine) for f in forward]
    assert all(b.shape == SHAPE and b.dtype == np.float32 for b in back)
    error = round_trip_error(back, ramps, inside)
    assert error.mean() < 0.3 and np.percentile(error, 95) < 1.0

    # The warp matters here: the affine part of the inverse alone leaves millimetres.
    (mat, invert), _ = reg.inverse
    on_scan = to_ants(np.zeros(SHAPE, np.float32), affine)
    affine_only = [ants.apply_transforms(fixed=on_scan, moving=to_ants(f, GRID.affine_array),
                                         transformlist=[str(mat)], whichtoinvert=[invert]
                                         ).numpy() for f in forward]
    assert round_trip_error(affine_only, ramps, inside).mean() > 2.0

    # An image, not only coordinates: the scan itself comes back (up to two linear
    # interpolations at 6 mm).
    image = reg.to_native(np.asarray(reg.image().dataobj, np.float32), SHAPE, affine)
    assert np.corrcoef(image[inside], scan[inside])[0, 1] == pytest.approx(1.0, abs=0.08)
