"""Does a scan still have its skull? A check before a model trained on brain-extracted
scans sees one.

The template's brain mask removes the skull of a scan in MNI space only where the
scan's brain fills the mask: no brain does exactly (Colin27's is 4 % smaller than the
ICBM average), and the rest of the mask then holds dura, muscle or marrow where a
brain-extracted scan has nothing. A model trained on brain-extracted scans reads that as
tissue: a demo model (test balanced accuracy 1.000) gave Colin27 with its skull, masked,
p(AD) 0.42 where the same brain extracted by FSL's BET got 0.12 (measured with
``benchmarks/new_patient.py`` while the edge step was being built; the routes of the
current demo are in README). ``explain --scan`` therefore refuses such a scan
unless it is registered (``--register``), whose pass 2 fits the brain, not the head.

:func:`skull_fraction` is the share of a shell 2-10 mm outside the brain mask that holds
tissue: Colin27 with its skull 0.83; without, and the simulated scans, under 0.1.
"""

from __future__ import annotations

import numpy as np

#: A scan whose shell around the brain mask holds more tissue than this has its skull.
SKULL_FRACTION = 0.3
#: The shell around the brain mask (mm from its edge).
SHELL_MM = (2.0, 10.0)
#: The mask's interior (mm inside its edge) whose median is the brain's intensity.
INTERIOR_MM = 6.0


def _spacing(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def skull_fraction(data: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> float:
    """The share of a shell 2-10 mm outside ``mask`` brighter than a fifth of the brain's
    median (about 0 for a brain-extracted scan, most of the shell for a head).

    Parameters
    ----------
    data : numpy.ndarray
        The scan, not masked, on the grid of ``mask``.
    mask : numpy.ndarray of bool
        The brain mask.
    affine : numpy.ndarray
        The grid's voxel-to-world matrix (distances in mm).
    """
    from scipy import ndimage as ndi

    spacing = _spacing(affine)
    mask = np.asarray(mask, dtype=bool)
    inside = ndi.distance_transform_edt(mask, sampling=spacing)
    outside = ndi.distance_transform_edt(~mask, sampling=spacing)
    interior = inside > INTERIOR_MM
    shell = (outside > SHELL_MM[0]) & (outside <= SHELL_MM[1])
    if not interior.any() or not shell.any():
        return 0.0
    level = 0.2 * float(np.median(np.asarray(data)[interior]))
    return float(np.mean(np.asarray(data)[shell] > level))


def has_skull(data: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> bool:
    """Whether :func:`skull_fraction` exceeds :data:`SKULL_FRACTION`."""
    return skull_fraction(data, mask, affine) > SKULL_FRACTION


__all__ = ["SKULL_FRACTION", "has_skull", "skull_fraction"]
