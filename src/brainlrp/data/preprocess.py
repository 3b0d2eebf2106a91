"""Preprocessing to the model grid, with an on-disk cache.

A scan is resampled (nilearn, linear) onto the ICBM 2009c grid, the template brain
mask is applied, the bright non-brain voxels that mask keeps at the brain's edge are
removed (:func:`remove_bright_edge`: fat and marrow of a scan with its skull, which
would otherwise be the scan's brightest voxels and darken the whole brain after
scaling), and it is scaled to [0, 1] (:data:`NORMALISATIONS`): ``minmax``, the paper's
min-max (default), or ``robust``, which clips the brain's brightest 0.5 % first.
The result is stored as ``.npy`` keyed by the file's content and the preprocessing
parameters, so later epochs and later commands memory-map the array instead of
re-reading and re-resampling the NIfTI. A small stat index (path, size, mtime)
avoids re-hashing unchanged files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brainlrp._io import atomic_path, save_npy
from brainlrp.data.grid import Grid, brain_mask
from brainlrp.data.register import Registration

#: Bumped whenever the preprocessing maths changes, so old cache entries are ignored.
PREPROCESS_VERSION = 1
#: How a masked scan is scaled to [0, 1]: name -> one line for the model card.
NORMALISATIONS = {
    "minmax": "min-max to [0, 1] per scan (the paper's)",
    "robust": "min-max to [0, 1] per scan with the brain's brightest 0.5 % clipped",
}
#: ``robust``: the brain's intensity percentile that becomes 1 (brighter voxels are clipped).
ROBUST_PERCENTILE = 99.5
#: The outer band of the brain mask (mm) where a voxel brighter than the brain's
#: interior (its ``EDGE_PERCENTILE``) is non-brain tissue and is removed.
EDGE_BAND_MM = 4.0
EDGE_PERCENTILE = 99.5


@dataclass(frozen=True)
class Preprocessing:
    """How a scan becomes a model input; stored in the model card.

    Parameters
    ----------
    grid : Grid
        Target grid (the template grid at some resolution).
    mask : bool
        Multiply by the template brain mask.
    clean_edge : bool
        Remove the mask's bright non-brain edge voxels (:func:`remove_bright_edge`);
        models trained before this step existed read ``False`` from their card.
    normalisation : str
        One of :data:`NORMALISATIONS`: ``"minmax"`` (default, the paper's) or
        ``"robust"``.
    interpolation : str
        nilearn interpolation for resampling.
    registration : Registration, optional
        Register each scan to the template first (native-space scans); ``None``
        means the scans are already in MNI space.
    scale_grid : Grid, optional
        Mask and scale the scan on this finer grid, then keep the voxels of ``grid``, one
        of its :meth:`~brainlrp.data.grid.Grid.sub_grid` (ClinicaDL's size reduction:
        min-max on the 1 mm crop, then every k-th voxel). ``None``: on ``grid`` itself.
    """

    grid: Grid
    mask: bool = True
    normalisation: str = "minmax"
    interpolation: str = "linear"
    registration: Registration | None = None
    clean_edge: bool = True
    scale_grid: Grid | None = None

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            from brainlrp.errors import BrainLRPError

            raise BrainLRPError(f"unknown normalisation {self.normalisation!r}",
                                f"use one of {', '.join(NORMALISATIONS)}")
        if self.scale_grid is not None and self.scale_grid.slices_of(self.grid) is None:
            raise ValueError(f"the {self.grid.describe()} grid is not a box of every k-th "
                             f"voxel of the scale grid {self.scale_grid.describe()}")

    def to_dict(self) -> dict:
        """JSON-friendly description."""
        d = asdict(self)
        d["grid"] = self.grid.to_dict()
        d["version"] = PREPROCESS_VERSION
        # Absent rather than null without registration: cache keys of MNI-space
        # cohorts stay what they were.
        d.pop("registration")
        if self.registration is not None:
            d["registration"] = self.registration.to_dict()
        d.pop("scale_grid")  # likewise absent unless set
        if self.scale_grid is not None:
            d["scale_grid"] = self.scale_grid.to_dict()
        # Likewise absent when off: preprocessing made before the step keeps its key.
        if not d.pop("clean_edge") or not self.mask:
            return d
        d["clean_edge"] = True
        return d

    def describe(self) -> str:
        """One line for readers (the model card's ``normalisation``)."""
        steps = ["template brain mask"] if self.mask else ["no brain mask (the head kept)"]
        if self.mask and self.clean_edge:
            steps.append("bright non-brain voxels at its edge removed")
        steps.append(NORMALISATIONS[self.normalisation])
        if self.scale_grid is not None:
            step = self.scale_grid.slices_of(self.grid)[0].step
            steps.append(f"on the {self.scale_grid.describe()} grid, then one voxel in "
                         f"{step} along each axis")
        return ", ".join(steps)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """Rebuild from :meth:`to_dict`."""
        return cls(grid=Grid.from_dict(data["grid"]), mask=bool(data["mask"]),
                   normalisation=data["normalisation"], interpolation=data["interpolation"],
                   registration=Registration.from_dict(data.get("registration")),
                   clean_edge=bool(data.get("clean_edge", False)),
                   scale_grid=(Grid.from_dict(data["scale_grid"]) if data.get("scale_grid")
                               else None))

    def key(self) -> str:
        """Short hash of the parameters (part of the cache key)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def preprocess_image(img, prep: Preprocessing) -> np.ndarray:
    """Resample a validated RAS+ image onto the grid, mask it and scale it to [0, 1]
    (on ``prep.scale_grid`` first when it has one).

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Output of :func:`brainlrp.data.nifti.load_scan`.
    prep : Preprocessing

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``prep.grid.shape``.
    """
    grid = prep.scale_grid or prep.grid
    data = on_grid(img, grid, prep.interpolation)
    mask = None
    if prep.mask:
        mask = brain_mask(grid)
        data = data * mask
        if prep.clean_edge:
            data = remove_bright_edge(data, mask, grid.resolution)
    data = normalise(data, prep.normalisation, mask)
    if prep.scale_grid is not None:
        data = np.ascontiguousarray(data[prep.scale_grid.slices_of(prep.grid)])
    return data


def on_grid(img, grid: Grid, interpolation: str = "linear") -> np.ndarray:
    """A RAS+ image's voxels on ``grid`` (resampled with nilearn unless it lies there)."""
    if grid.same_as(img.shape, img.affine):
        return np.asarray(img.dataobj, dtype=np.float32)
    from nilearn.image import resample_img

    return resample_img(img, target_affine=grid.affine_array, target_shape=grid.shape,
                        interpolation=interpolation, force_resample=True,
                        copy_header=True).get_fdata(dtype=np.float32)


def remove_bright_edge(data: np.ndarray, mask: np.ndarray, resolution: float,
                       band_mm: float = EDGE_BAND_MM,
                       percentile: float = EDGE_PERCENTILE) -> np.ndarray:
    """Zero the voxels of the mask's outer band that are brighter than the brain inside.

    On a T1 scan nothing at the brain's surface (cortex, CSF) is as bright as the deep
    white matter; what is, inside a template mask, is fat or marrow of the scalp and
    skull that the mask kept because the brain does not fill it exactly. A skull-stripped
    scan has nothing there, so removing them makes a scan with skull look like one
    without.

    Parameters
    ----------
    data : numpy.ndarray
        The masked scan.
    mask : numpy.ndarray of bool
        The brain mask.
    resolution : float
        Voxel size (mm).
    band_mm : float
        Width of the outer band.
    percentile : float
        Percentile of the band's inside (the interior) above which a band voxel is
        removed.

    Returns
    -------
    numpy.ndarray
        float32, a copy.
    """
    from scipy import ndimage as ndi

    mask = np.asarray(mask, dtype=bool)
    steps = max(1, int(round(band_mm / resolution)))
    interior = ndi.binary_erosion(mask, iterations=steps)
    out = np.array(data, dtype=np.float32)
    if not interior.any():
        return out
    limit = np.float32(np.percentile(out[interior], percentile))
    out[mask & ~interior & (out > limit)] = 0
    return out


def normalise(data: np.ndarray, method: str = "minmax",
              mask: np.ndarray | None = None) -> np.ndarray:
    """Scale an array to [0, 1]; a constant array becomes zeros.

    Parameters
    ----------
    data : numpy.ndarray
    method : str
        ``"minmax"``: the minimum becomes 0 and the maximum 1. ``"robust"``: the minimum
        becomes 0 and the brain's :data:`ROBUST_PERCENTILE` percentile (inside ``mask``,
        or over the voxels above the minimum) 1; brighter voxels are clipped, so a few
        bright voxels (vessels, fat, an artefact) do not darken the whole brain.
    mask : numpy.ndarray of bool, optional
        The brain (``robust``).
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; known: {', '.join(NORMALISATIONS)}")
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return np.zeros_like(data, dtype=np.float32)
    if method == "minmax":
        return ((data - lo) / (hi - lo)).astype(np.float32)
    inside = data[np.asarray(mask, bool)] if mask is not None else data[data > lo]
    if inside.size:
        hi = float(np.percentile(inside, ROBUST_PERCENTILE))
    if hi <= lo:
        hi = float(data.max())
    return np.clip((data - lo) / (hi - lo), 0, 1).astype(np.float32)


def default_cache_dir() -> Path:
    """``$BRAINLRP_CACHE_DIR``, else ``$XDG_CACHE_HOME/brainlrp``, else ``~/.cache/brainlrp``."""
    env = os.environ.get("BRAINLRP_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "brainlrp"


class PreprocessCache:
    """Preprocessed arrays on disk, keyed by file content and parameters.

    Parameters
    ----------
    root : path-like, optional
        Cache folder; :func:`default_cache_dir` when omitted.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def _stat_key(self, path: Path) -> str:
        st = path.stat()
        text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        return hashlib.sha1(text.encode()).hexdigest()

    def content_hash(self, path: Path) -> str:
        """SHA-256 of the file, remembered per (path, size, mtime) to read it only once."""
        index = self.root / "stat" / self._stat_key(path)
        if index.is_file():
            value = index.read_text().strip()
            if len(value) == 64:
                return value
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        value = digest.hexdigest()
        with atomic_path(index, suffix=".txt") as tmp:
            tmp.write_text(value)
        return value

    def array_path(self, path: Path, prep: Preprocessing) -> Path:
        """Where the preprocessed array of ``path`` lives (it may not exist yet).

        A brain mask written next to the scan by another pipeline (see
        :func:`~brainlrp.data.layouts.sidecar_brain_mask`) is part of the key.
        """
        from brainlrp.data.layouts import sidecar_brain_mask

        mask = sidecar_brain_mask(path)
        extra = f"-m{self.content_hash(mask)[:12]}" if mask is not None else ""
        return self.root / "arrays" / f"{self.content_hash(path)[:40]}{extra}-{prep.key()}.npy"

    def registration(self, path: str | os.PathLike, prep: Preprocessing):
        """The (cached) registration of ``path`` to the template on ``prep.grid``.

        Returns
        -------
        brainlrp.data.register.RegisteredScan
        """
        from brainlrp.data.register import register_scan, registration_dir

        path = Path(path)
        if prep.registration is None:
            raise ValueError("this preprocessing has no registration")
        folder = registration_dir(self.root, self.content_hash(path), prep.registration,
                                  prep.grid)
        return register_scan(path, prep.registration, prep.grid, folder)

    def get(self, path: str | os.PathLike, prep: Preprocessing, check_mni: bool = True) -> Path:
        """Path of the cached array for ``path``, preprocessing it on a miss."""
        from brainlrp.data.layouts import apply_sidecar_mask
        from brainlrp.data.nifti import load_scan

        path = Path(path)
        if not path.is_file():
            load_scan(path)  # raises the standard "not found" error
        target = self.array_path(path, prep)
        if not target.is_file():
            if prep.registration is not None:
                img = self.registration(path, prep).image()
            else:
                img = apply_sidecar_mask(path, load_scan(path, check_mni=check_mni))
            save_npy(target, preprocess_image(img, prep))
        return target

    def load(self, path: str | os.PathLike, prep: Preprocessing) -> np.ndarray:
        """The preprocessed array for ``path`` (memory-mapped, read-only)."""
        return np.load(self.get(path, prep), mmap_mode="r")


def _worker(args) -> str:
    root, path, prep = args
    return str(PreprocessCache(root).get(path, prep))


def preprocess_paths(paths: Iterable[str | os.PathLike], prep: Preprocessing,
                     cache: PreprocessCache | None = None, n_jobs: int = 1,
                     progress: Callable[[int], None] | None = None) -> list[Path]:
    """Preprocess many scans (filling the cache); return their array paths in order.

    Parameters
    ----------
    paths : iterable of path-like
    prep : Preprocessing
    cache : PreprocessCache, optional
    n_jobs : int
        Worker processes for cache misses (1 = in this process).
    progress : callable, optional
        Called with the number of scans finished since the last call.
    """
    cache = cache or PreprocessCache()
    paths = [Path(p) for p in paths]
    out: list[Path | None] = [None] * len(paths)
    todo = []
    for i, p in enumerate(paths):
        if p.is_file():
            target = cache.array_path(p, prep)
            if target.is_file():
                out[i] = target
                if progress:
                    progress(1)
                continue
        todo.append(i)
    if n_jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            jobs = [(cache.root, paths[i], prep) for i in todo]
            for i, result in zip(todo, pool.map(_worker, jobs), strict=True):
                out[i] = Path(result)
                if progress:
                    progress(1)
    else:
        for i in todo:
            out[i] = cache.get(paths[i], prep)
            if progress:
                progress(1)
    return [p for p in out if p is not None]


def load_arrays(arrays) -> np.ndarray:
    """Stack cached arrays into ``(n, 1, X, Y, Z)`` float32 (a batch for the model)."""
    return np.stack([np.asarray(np.load(str(a), mmap_mode="r"), dtype=np.float32)
                     for a in arrays])[:, None]
