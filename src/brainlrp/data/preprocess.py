"""Preprocessing to the model grid, with an on-disk cache.

A scan is resampled (nilearn, linear) onto the ICBM 2009c grid, the template brain
mask is applied, and it is min-max scaled to [0, 1] (the paper's normalisation).
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


@dataclass(frozen=True)
class Preprocessing:
    """How a scan becomes a model input; stored in the model card.

    Parameters
    ----------
    grid : Grid
        Target grid (the template grid at some resolution).
    mask : bool
        Multiply by the template brain mask.
    normalisation : str
        ``"minmax"``: scale each scan to [0, 1].
    interpolation : str
        nilearn interpolation for resampling.
    registration : Registration, optional
        Register each scan to the template first (native-space scans); ``None``
        means the scans are already in MNI space.
    """

    grid: Grid
    mask: bool = True
    normalisation: str = "minmax"
    interpolation: str = "linear"
    registration: Registration | None = None

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
        return d

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """Rebuild from :meth:`to_dict`."""
        return cls(grid=Grid.from_dict(data["grid"]), mask=bool(data["mask"]),
                   normalisation=data["normalisation"], interpolation=data["interpolation"],
                   registration=Registration.from_dict(data.get("registration")))

    def key(self) -> str:
        """Short hash of the parameters (part of the cache key)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def preprocess_image(img, prep: Preprocessing) -> np.ndarray:
    """Resample a validated RAS+ image onto the grid, mask it and scale it to [0, 1].

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
    grid = prep.grid
    if grid.same_as(img.shape, img.affine):
        data = np.asarray(img.dataobj, dtype=np.float32)
    else:
        from nilearn.image import resample_img

        data = resample_img(img, target_affine=grid.affine_array, target_shape=grid.shape,
                            interpolation=prep.interpolation, force_resample=True,
                            copy_header=True).get_fdata(dtype=np.float32)
    if prep.mask:
        data = data * brain_mask(grid)
    return normalise(data, prep.normalisation)


def normalise(data: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Scale an array to [0, 1] (min-max); a constant array becomes zeros."""
    if method != "minmax":
        raise ValueError(f"unknown normalisation {method!r}; known: 'minmax'")
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return np.zeros_like(data, dtype=np.float32)
    return ((data - lo) / (hi - lo)).astype(np.float32)


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
