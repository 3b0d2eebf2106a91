"""Native-space test scans: an MNI-space volume moved by a known transform and
stored the way scanners write T1s (LAS, anisotropic voxels, int16 with scl_slope)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from brainlrp.data.grid import Grid, template

MRICRON = Path("/usr/share/mricron/templates")


def rotation(axis: int, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    r = np.eye(4)
    i, j = [k for k in range(3) if k != axis]
    r[i, i] = r[j, j] = np.cos(t)
    r[i, j], r[j, i] = -np.sin(t), np.sin(t)
    return r


def known_transform(seed: int = 0) -> np.ndarray:
    """MNI point = T @ native point: rotations, anisotropic scale and a shift."""
    rng = np.random.default_rng(seed)
    t = rotation(0, 8 + rng.uniform(-2, 2)) @ rotation(2, -6 + rng.uniform(-2, 2))
    t[:3, :3] = t[:3, :3] @ np.diag([1.04, 0.97, 1.02])
    t[:3, 3] = [6, -12, 9] + rng.uniform(-3, 3, 3)
    return t


def native_affine(voxel: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """A LAS grid of voxel x voxel x 1.2 voxel mm covering a head."""
    shape = (int(200 / voxel), int(232 / voxel), int(200 / (1.2 * voxel)))
    affine = np.diag([-voxel, voxel, 1.2 * voxel, 1.0])
    affine[:3, 3] = [100, -116, -100]
    return shape, affine


def write_native(path: Path, data: np.ndarray, affine: np.ndarray, transform: np.ndarray,
                 voxel: float = 4.0, order: int = 1, int16: bool = True) -> Path:
    """Resample an MNI-space ``data`` (with ``affine``) onto a native LAS grid."""
    import scipy.ndimage as ndi

    shape, native = native_affine(voxel)
    m = np.linalg.inv(affine) @ transform @ native
    out = ndi.affine_transform(np.asarray(data, np.float32), m[:3, :3], m[:3, 3],
                               output_shape=shape, order=order)
    path.parent.mkdir(parents=True, exist_ok=True)
    if int16:
        img = nib.Nifti1Image(np.rint(out * 4).astype(np.int16), native)
        img.header.set_slope_inter(0.25, 0.0)
    else:
        img = nib.Nifti1Image(out.astype(np.float32), native)
    nib.save(img, path)
    return path


def template_native(path: Path, seed: int = 0, atrophy: float = 0.0,
                    voxel: float = 4.0) -> Path:
    """The ICBM template (2 mm, with noise, optional temporal 'atrophy') in native space."""
    from tests.conftest import make_scan

    grid = Grid.from_resolution(2)
    data = make_scan(grid, seed=seed, atrophy=atrophy) if atrophy or seed else template(grid)
    return write_native(path, data, grid.affine_array, known_transform(seed), voxel)
