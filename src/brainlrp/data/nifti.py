"""Reading T1 scans: NIfTI loading with validation, RAS+ reorientation, MNI check.

Every problem with a file becomes a :class:`~brainlrp.errors.BrainLRPError` that
names the file and says how to fix it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from brainlrp.errors import BrainLRPError

#: Fraction of the template brain's bounding box a scan's field of view must cover.
MIN_FOV_OVERLAP = 0.8
#: Largest distance (mm) between a scan's foreground centroid and the template brain's.
MAX_CENTROID_SHIFT_MM = 40.0

REGISTER_HINT = ("it looks like a native-space scan: pass --register to register it to MNI "
                 "ICBM 2009c with ANTsPy, or register it yourself first (ANTs, FSL FNIRT, "
                 "SPM normalise)")


def load_scan(path: str | os.PathLike, check_mni: bool = True):
    """Load and validate a T1 scan; see :func:`_load_scan` (numeric warnings silenced:
    a broken header is reported once, as an error, not as a cascade of warnings)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _load_scan(path, check_mni)


def _load_scan(path: str | os.PathLike, check_mni: bool = True):
    """Load and validate a T1 scan; return it as a float32 RAS+ NIfTI image.

    Parameters
    ----------
    path : path-like
        A ``.nii`` or ``.nii.gz`` file.
    check_mni : bool
        Whether to reject scans that are not in MNI space (see :func:`check_mni_space`).

    Returns
    -------
    nibabel.Nifti1Image
        3D float32 image, reoriented to RAS+.

    Raises
    ------
    BrainLRPError
        Missing file; not a NIfTI or corrupted; not 3D (or 4D with several
        volumes); degenerate affine; NaN/Inf voxels; constant image; not in MNI.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise BrainLRPError(f"scan not found: {path}",
                            "check the path in the participants table")
    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise ValueError(f"a {type(img).__name__}, not NIfTI")
        shape = img.shape
        affine = np.asarray(img.affine, dtype=float)
    except Exception as exc:  # nibabel raises many types for broken files
        raise BrainLRPError(f"cannot read {path} as NIfTI ({_reason(exc)})",
                            "provide a valid .nii or .nii.gz file") from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        what = (f"{len(shape)}D with {int(np.prod(shape[3:]))} volumes" if len(shape) > 3
                else f"{len(shape)}D")
        raise BrainLRPError(f"{path} is {what} (shape {tuple(img.shape)}), not a 3D T1 scan",
                            "pass a single 3D volume (extract it with fslroi or nibabel)")
    if min(shape) < 2:
        raise BrainLRPError(f"{path} has a degenerate shape {tuple(img.shape)}",
                            "pass a 3D volume with at least 2 voxels per axis")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise BrainLRPError(f"{path} has a degenerate affine (zero or non-finite voxel size)",
                            "fix the header's sform/qform (e.g. with fslorient)")
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as exc:
        raise BrainLRPError(f"cannot read the voxels of {path} ({_reason(exc)})",
                            "the file is truncated or corrupted; re-export it") from None
    if not np.all(np.isfinite(data)):
        n_bad = int((~np.isfinite(data)).sum())
        raise BrainLRPError(f"{path} has {n_bad} NaN/Inf voxels",
                            "replace them (e.g. `fslmaths in -nan out`) before use")
    lo, hi = float(data.min()), float(data.max())
    if hi == lo:
        what = "all-zero" if hi == 0 else f"constant ({hi:g})"
        raise BrainLRPError(f"{path} is {what}: there is no image in it",
                            "check the export or the file path")
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    out = nib.Nifti1Image(np.asarray(canonical.dataobj, dtype=np.float32), canonical.affine)
    if check_mni:
        check_mni_space(out, path)
    return out


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


@functools.lru_cache(maxsize=1)
def _template_brain_geometry() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-space bounding box (lo, hi) and centroid of the template brain."""
    import nibabel as nib

    from brainlrp.data.grid import template_path

    img = nib.load(template_path())
    idx = np.argwhere(np.asarray(img.dataobj) > 0)
    world = nib.affines.apply_affine(img.affine, idx[:: max(1, len(idx) // 200_000)])
    return world.min(0), world.max(0), world.mean(0)


def check_mni_space(img, path: str | os.PathLike = "<image>") -> None:
    """Reject an image whose field of view or content is not where MNI puts the brain.

    Two checks, both cheap: the scan's field of view must cover at least
    :data:`MIN_FOV_OVERLAP` of the template brain's bounding box, and the centroid of
    its foreground (voxels above 10 % of the 99th percentile) must lie within
    :data:`MAX_CENTROID_SHIFT_MM` of the template brain's centroid. A scan in
    scanner or native space usually fails one of them.
    """
    import nibabel as nib

    lo_t, hi_t, centre_t = _template_brain_geometry()
    shape = np.array(img.shape[:3])
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)], dtype=float)
    world = nib.affines.apply_affine(img.affine, corners)
    lo_s, hi_s = world.min(0), world.max(0)
    inter = np.clip(np.minimum(hi_s, hi_t) - np.maximum(lo_s, lo_t), 0, None)
    overlap = float(np.prod(inter) / np.prod(hi_t - lo_t))
    if overlap < MIN_FOV_OVERLAP:
        raise BrainLRPError(
            f"{path} is not in MNI space: its field of view covers {overlap:.0%} of the "
            f"template brain", REGISTER_HINT)
    data = np.asarray(img.dataobj)
    step = max(1, int(round((data.size / 2e6) ** (1 / 3))))
    sub = data[::step, ::step, ::step]
    thr = 0.1 * float(np.percentile(sub, 99))
    fg = np.argwhere(sub > thr) * step
    if len(fg) == 0:
        return
    centre_s = nib.affines.apply_affine(img.affine, fg.mean(0))
    shift = float(np.linalg.norm(centre_s - centre_t))
    if shift > MAX_CENTROID_SHIFT_MM:
        raise BrainLRPError(
            f"{path} is not in MNI space: its brain centre lies {shift:.0f} mm from the "
            f"template's", REGISTER_HINT)


def ras_geometry(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine a file will have after RAS+ reorientation, from its header only."""
    import nibabel as nib

    img = nib.load(str(path))
    shape = tuple(int(s) for s in img.shape[:3])
    ornt = nib.orientations.io_orientation(img.affine)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, shape)
    order = np.argsort(ornt[:, 0])
    new_shape = tuple(shape[int(i)] for i in order)
    return new_shape, affine


def on_grid(path: str | os.PathLike, grid) -> bool:
    """Whether a scan already lies on ``grid`` (so preprocessing does not resample it)."""
    try:
        shape, affine = ras_geometry(path)
    except Exception:
        return False
    return grid.same_as(shape, affine)
