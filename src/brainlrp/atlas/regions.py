"""Region reductions: relevance per atlas label in one ``bincount`` pass.

:class:`RegionReducer` follows nilearn's maskers: ``__init__`` stores parameters,
:meth:`~RegionReducer.fit` resamples the atlas onto the model grid (nearest
neighbour), builds the label table and returns ``self``; :meth:`~RegionReducer.transform`
turns a batch of maps into ``(n_maps, n_regions)`` sums.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from brainlrp.atlas.builtin import DEFAULT_ATLAS, Atlas, load_atlas
from brainlrp.data.grid import Grid
from brainlrp.errors import BrainLRPError


def region_sums(maps, codes, n_regions: int):
    """Sum each map over each region in one bincount pass.

    Parameters
    ----------
    maps : array (n_maps, *grid) or (*grid), numpy or torch
        Voxel maps (e.g. heatmaps).
    codes : integer array (*grid)
        Region code per voxel: 0 = outside every region, 1..n_regions inside.
    n_regions : int

    Returns
    -------
    array (n_maps, n_regions), float64 for numpy input (torch keeps its dtype).
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(maps, torch.Tensor):
        squeeze = maps.dim() == codes.dim()
        flat = maps.reshape(1 if squeeze else maps.shape[0], -1)
        c = torch.as_tensor(codes, device=flat.device).reshape(-1).long()
        n = flat.shape[0]
        offsets = (torch.arange(n, device=flat.device) * (n_regions + 1))[:, None]
        out = torch.bincount((c[None, :] + offsets).reshape(-1), weights=flat.reshape(-1),
                             minlength=n * (n_regions + 1))
        out = out.reshape(n, n_regions + 1)[:, 1:].to(maps.dtype)
        return out[0] if squeeze else out
    maps = np.asarray(maps)
    codes = np.asarray(codes)
    squeeze = maps.ndim == codes.ndim
    flat = maps.reshape(1 if squeeze else maps.shape[0], -1)
    n = flat.shape[0]
    c = codes.reshape(-1).astype(np.int64)
    idx = (c[None, :] + (np.arange(n) * (n_regions + 1))[:, None]).reshape(-1)
    out = np.bincount(idx, weights=flat.reshape(-1).astype(np.float64),
                      minlength=n * (n_regions + 1)).reshape(n, n_regions + 1)[:, 1:]
    return out[0] if squeeze else out


def region_counts(codes, n_regions: int) -> np.ndarray:
    """Number of voxels per region (codes 1..n_regions)."""
    return np.bincount(np.asarray(codes).reshape(-1).astype(np.int64),
                       minlength=n_regions + 1)[1: n_regions + 1]


def region_means(maps, codes, n_regions: int):
    """Mean of each map over each region (NaN for empty regions)."""
    sums = region_sums(maps, codes, n_regions)
    counts = region_counts(codes, n_regions).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(sums) / np.where(counts > 0, counts, np.nan)


def resample_labels(atlas: Atlas, grid: Grid) -> np.ndarray:
    """The atlas's label image on ``grid`` by nearest neighbour (int32)."""
    import nibabel as nib
    from nilearn.image import resample_img

    img = atlas.image
    if grid.same_as(img.shape, img.affine):
        return np.asarray(img.dataobj, dtype=np.int32)
    out = resample_img(nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.int32), img.affine),
                       target_affine=grid.affine_array, target_shape=grid.shape,
                       interpolation="nearest", force_resample=True, copy_header=True)
    return np.asarray(out.dataobj).astype(np.int32)


class RegionReducer:
    """Reduce voxel maps to atlas regions.

    Parameters
    ----------
    atlas : str, path-like or Atlas
        Built-in atlas name, a NIfTI label image, or an :class:`Atlas`.
    labels : path-like, optional
        Label table for a user atlas (see :func:`load_atlas`).
    level : {"label", "area"}
        ``"label"``: one region per atlas label; ``"area"``: labels with the same
        ``area`` (left and right merged) form one region.

    Attributes
    ----------
    regions_ : pandas.DataFrame
        One row per region, in code order: ``region`` (label or area name),
        ``hemisphere``, ``area``, ``n_voxels``, and for labels ``index``.
    codes_ : numpy.ndarray
        Region code per grid voxel (0 = none, 1..n_regions_).
    n_regions_ : int
    lost_ : list of str
        Labels of the table that did not survive resampling.
    """

    def __init__(self, atlas="neuromorphometrics", labels=None, level: str = "label"):
        self.atlas = atlas
        self.labels = labels
        self.level = level

    def fit(self, grid: Grid) -> RegionReducer:
        """Resample the atlas onto ``grid`` and build the region table."""
        if self.level not in ("label", "area"):
            raise ValueError(f"level must be 'label' or 'area', got {self.level!r}")
        atlas = self.atlas if isinstance(self.atlas, Atlas) else load_atlas(
            self.atlas if self.atlas is not None else DEFAULT_ATLAS, self.labels)
        self.atlas_ = atlas
        self.grid_ = grid
        values = resample_labels(atlas, grid)
        table = atlas.labels
        present = np.unique(values)
        in_grid = table["index"].isin(present)
        self.lost_ = table.loc[~in_grid, "name"].tolist()
        if not in_grid.any():
            raise BrainLRPError(
                f"no label of the atlas {atlas.name} is left on the {grid.describe()} grid",
                "check that the atlas is in MNI space and its labels match its table")
        if self.lost_:
            warnings.warn(
                f"{len(self.lost_)} label(s) of the atlas {atlas.name} vanish on the "
                f"{grid.describe()} grid (e.g. {self.lost_[0]}); they get no region values",
                UserWarning, stacklevel=2)
        kept = table[in_grid].reset_index(drop=True)
        if self.level == "label":
            regions = kept.rename(columns={"name": "region"})
            code_of_index = dict(zip(regions["index"], range(1, len(regions) + 1), strict=True))
        else:
            areas = list(dict.fromkeys(kept["area"]))
            hemis = kept.groupby("area", sort=False)["hemisphere"].agg(
                lambda h: h.iloc[0] if h.nunique() == 1 else "both")
            regions = pd.DataFrame({"region": areas, "hemisphere": hemis.loc[areas].to_numpy(),
                                    "area": areas})
            area_code = {a: i + 1 for i, a in enumerate(areas)}
            code_of_index = {i: area_code[a] for i, a in zip(kept["index"], kept["area"],
                                                             strict=True)}
        lut = np.zeros(int(max(values.max(), table["index"].max())) + 1, dtype=np.int32)
        for idx, code in code_of_index.items():
            lut[idx] = code
        self.codes_ = lut[values]
        self.n_regions_ = len(regions)
        regions = regions.copy()
        regions["n_voxels"] = region_counts(self.codes_, self.n_regions_)
        self.regions_ = regions.reset_index(drop=True)
        return self

    def transform(self, maps) -> np.ndarray:
        """Region sums, shape ``(n_maps, n_regions_)`` (or ``(n_regions_,)`` for one map)."""
        self._check_fitted()
        shape = tuple(np.shape(maps))[-3:]
        if shape != self.grid_.shape:
            raise BrainLRPError(f"maps of shape {shape} do not match the atlas grid "
                                f"{self.grid_.describe()}", "use maps on the model grid")
        return region_sums(maps, self.codes_, self.n_regions_)

    def _check_fitted(self):
        if not hasattr(self, "codes_"):
            raise RuntimeError("RegionReducer is not fitted; call fit(grid) first")


def area_codes(grid) -> np.ndarray:
    """Merged Neuromorphometrics area (left and right together, 1-based; 0 outside) per
    voxel of ``grid``, resampled once per grid and process (region occlusion's areas)."""
    if grid not in _AREA_CODES:
        with warnings.catch_warnings():  # labels lost on coarse grids: no area to occlude
            warnings.simplefilter("ignore", UserWarning)
            _AREA_CODES[grid] = RegionReducer("neuromorphometrics", level="area").fit(grid).codes_
    return _AREA_CODES[grid]


_AREA_CODES: dict = {}
