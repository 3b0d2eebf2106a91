"""Region tables and group mean heatmaps, streamed over subjects.

Heatmaps are read in batches (the next batch is decompressed in background threads
while the current one is reduced); each batch goes through one ``bincount`` pass
over the atlas labels, and the 68 merged areas are sums of labels, so they cost a
tiny matrix product instead of a second pass over the voxels. Group mean images
are running weighted sums. Memory therefore holds one batch of heatmaps, one
running sum per group and a few numbers per scan and label, whatever the size of
the cohort.

Groups: ``AD`` (label 1), ``HC`` (label 0), and the outcomes ``TP``, ``TN``,
``FP``, ``FN`` of ``predictions.tsv``. Within a group every subject counts once:
a subject's scans share a weight of 1 (each of ``m`` scans weighs ``1 / m``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp._io import atomic_path, save_nifti, write_table
from brainlrp.analysis import metrics
from brainlrp.atlas import RegionReducer, region_sums
from brainlrp.data.grid import Grid
from brainlrp.errors import BrainLRPError

GROUPS = ("AD", "HC", "TP", "TN", "FP", "FN")

#: Columns of ``regions/<method>/subjects.tsv`` (one row per scan and atlas label).
SUBJECT_COLUMNS = ("participant_id", "scan_id", "diagnosis", "outcome", "region", "hemisphere",
                   "area", "n_voxels", "relevance_sum", "relevance_density")
#: Columns of ``regions/<method>/groups.tsv`` (one row per group, level and region).
GROUP_COLUMNS = ("group", "level", "region", "hemisphere", "area", "n_voxels", "n_subjects",
                 "mean_sum", "mean_density", "gain")


@dataclass
class AtlasRegions:
    """An atlas fitted to the model grid at both levels.

    Attributes
    ----------
    grid : Grid
    labels : pandas.DataFrame
        One row per label: ``region``, ``hemisphere``, ``area``, ``n_voxels``, ``index``.
    areas : pandas.DataFrame
        One row per merged area: ``region``, ``hemisphere``, ``area``, ``n_voxels``.
    codes : numpy.ndarray
        Label code per voxel (0 outside, 1..n_labels).
    area_codes : numpy.ndarray
        Area code per voxel (0 outside, 1..n_areas).
    label_to_area : numpy.ndarray
        ``(n_labels, n_areas)`` 0/1 matrix: area sums are ``label_sums @ label_to_area``.
    atlas_name : str
    lost : list of str
        Labels of the atlas's table that vanish on this grid.
    """

    grid: Grid
    labels: pd.DataFrame
    areas: pd.DataFrame
    codes: np.ndarray
    area_codes: np.ndarray
    label_to_area: np.ndarray
    atlas_name: str
    lost: list = field(default_factory=list)

    @classmethod
    def fit(cls, atlas, grid: Grid, labels=None) -> AtlasRegions:
        """Resample ``atlas`` (name, file or :class:`~brainlrp.atlas.Atlas`) onto ``grid``."""
        import warnings

        from brainlrp.atlas import Atlas, load_atlas

        loaded = atlas if isinstance(atlas, Atlas) else load_atlas(atlas, labels)
        with warnings.catch_warnings():
            # Labels lost on coarse grids are reported as a notice (``lost``) instead.
            warnings.simplefilter("ignore", UserWarning)
            area_red = RegionReducer(loaded, level="area").fit(grid)
            label_red = RegionReducer(loaded, level="label").fit(grid)
        area_code = {a: i for i, a in enumerate(area_red.regions_["region"])}
        mapping = np.zeros((label_red.n_regions_, area_red.n_regions_))
        mapping[np.arange(label_red.n_regions_),
                [area_code[a] for a in label_red.regions_["area"]]] = 1.0
        return cls(grid=grid, labels=label_red.regions_, areas=area_red.regions_,
                   codes=label_red.codes_, area_codes=area_red.codes_,
                   label_to_area=mapping, atlas_name=loaded.name, lost=list(label_red.lost_))

    @property
    def n_labels(self) -> int:
        """Number of labels on the grid."""
        return len(self.labels)

    @property
    def n_areas(self) -> int:
        """Number of merged areas on the grid."""
        return len(self.areas)

    def area_index(self, name: str) -> int | None:
        """Position of the area called ``name`` (case-insensitive), if any."""
        lower = [a.lower() for a in self.areas["region"]]
        return lower.index(name.lower()) if name.lower() in lower else None


def read_volume(path: Path, what: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI volume as float32 and its affine (a 4-D file with one volume is squeezed);
    an unreadable file is a one-line error naming ``what`` it should have been."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise BrainLRPError(f"cannot read the {what} {path} ({' '.join(str(exc).split())[:100]})",
                            fix) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, img.affine


def read_heatmap(path: Path, grid: Grid) -> np.ndarray:
    """Read one heatmap as float32 and check it lies on ``grid`` and is finite."""
    data, affine = read_volume(path, "heatmap", "re-run `brainlrp explain` to rewrite it")
    if not grid.same_as(data.shape, affine):
        shape = " x ".join(map(str, data.shape))
        raise BrainLRPError(
            f"the heatmap {path} is on a {shape} grid (affine diagonal "
            f"{np.round(np.diag(affine)[:3], 3).tolist()}), not the model grid "
            f"{grid.describe()} of model/card.json",
            "re-run `brainlrp explain` for this run so every heatmap is on the model grid")
    if not np.isfinite(data).all():
        raise BrainLRPError(f"the heatmap {path} holds NaN or infinite values",
                            "re-run `brainlrp explain` for this scan")
    return data


def iter_batches(paths: Sequence[Path], grid: Grid, batch_size: int,
                 workers: int = 2) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(rows, maps)`` batches of heatmaps, reading the next batch ahead.

    Decompression (zlib) releases the GIL, so a couple of threads overlap reading
    with the reductions of the batch before.
    """
    if not paths:
        return
    batch_size = max(int(batch_size), 1)
    starts = list(range(0, len(paths), batch_size))
    with ThreadPoolExecutor(max_workers=max(int(workers), 1)) as pool:
        def submit(start: int):
            return [pool.submit(read_heatmap, p, grid)
                    for p in paths[start: start + batch_size]]

        pending = submit(starts[0])
        for n, start in enumerate(starts):
            current = pending
            if n + 1 < len(starts):
                pending = submit(starts[n + 1])
            maps = np.stack([f.result() for f in current])
            yield slice(start, start + len(current)), maps


def group_weights(scans: pd.DataFrame) -> pd.DataFrame:
    """Weight of every scan in every group (columns :data:`GROUPS`).

    A scan belongs to its diagnosis group (AD or HC) and its outcome group; within
    a group, the ``m`` scans of a subject weigh ``1 / m`` each, so the weights of a
    group sum to its number of subjects.
    """
    member = pd.DataFrame(False, index=scans.index, columns=list(GROUPS))
    member["AD"] = scans["label"].to_numpy() == 1
    member["HC"] = scans["label"].to_numpy() == 0
    for g in ("TP", "TN", "FP", "FN"):
        member[g] = scans["outcome"].to_numpy() == g
    weights = pd.DataFrame(0.0, index=scans.index, columns=list(GROUPS))
    for g in GROUPS:
        m = member[g]
        if m.any():
            per_subject = scans.loc[m, "participant_id"].map(
                scans.loc[m, "participant_id"].value_counts())
            weights.loc[m, g] = 1.0 / per_subject.to_numpy()
    return weights


@dataclass
class MethodRegions:
    """What one streaming pass over a method's heatmaps leaves behind.

    Attributes
    ----------
    method : str
    relevance : str
        Relevance mode used (positive, signed or absolute).
    scans : pandas.DataFrame
        The analysed scans, in row order of the arrays below.
    label_sums, area_sums : numpy.ndarray
        ``(n_scans, n_labels)`` and ``(n_scans, n_areas)`` relevance sums.
    totals : numpy.ndarray
        ``(n_scans,)`` total relevance of each heatmap (all voxels).
    weights : pandas.DataFrame
        Group weights (see :func:`group_weights`).
    groups : pandas.DataFrame
        The group table (:data:`GROUP_COLUMNS`).
    mean_images : list of Path
        The written ``means/<method>/<group>.nii.gz`` files.
    """

    method: str
    relevance: str
    scans: pd.DataFrame
    label_sums: np.ndarray
    area_sums: np.ndarray
    totals: np.ndarray
    weights: pd.DataFrame
    groups: pd.DataFrame
    mean_images: list

    def area_density(self, atlas: AtlasRegions) -> np.ndarray:
        """``(n_scans, n_areas)`` relevance density."""
        return metrics.density(self.area_sums, atlas.areas["n_voxels"].to_numpy())

    def group_area_means(self, group: str) -> pd.DataFrame:
        """The area rows of ``group`` in the group table (empty when the group is)."""
        g = self.groups
        return g[(g["group"] == group) & (g["level"] == "area")].reset_index(drop=True)

    def ranking_group(self) -> str:
        """The group areas are ranked by: the true positives, as in the paper; AD without TPs."""
        return "TP" if self.weights["TP"].sum() > 0 else "AD"


def subject_means(values: np.ndarray, scans: pd.DataFrame, select: np.ndarray
                  ) -> tuple[list[str], np.ndarray]:
    """Average the selected scan rows per participant (participants in sorted order).

    Parameters
    ----------
    values : array (n_scans, ...)
    scans : pandas.DataFrame
        The scans of ``values``' rows, with ``participant_id``.
    select : bool array (n_scans,)

    Returns
    -------
    participant_ids : list of str
    means : array (n_participants, ...)
    """
    pids = scans.loc[select, "participant_id"].to_numpy()
    if not len(pids):
        return [], np.zeros((0, *np.shape(values)[1:]))
    frame = pd.DataFrame(np.asarray(values)[select].reshape(len(pids), -1))
    means = frame.groupby(pids, sort=True).mean()
    return means.index.tolist(), means.to_numpy().reshape(len(means), *np.shape(values)[1:])


def stream_method(method: str, paths: Sequence[Path], scans: pd.DataFrame, atlas: AtlasRegions,
                  relevance: str, subjects_path: Path, means_dir: Path, batch_size: int = 8,
                  on_batch: Callable[[pd.DataFrame, np.ndarray, np.ndarray], None] | None = None,
                  advance: Callable[[int], None] | None = None) -> MethodRegions:
    """Reduce a method's heatmaps to region tables and group mean images, batch by batch.

    Parameters
    ----------
    method : str
    paths : sequence of Path
        One heatmap per row of ``scans``.
    scans : pandas.DataFrame
        ``participant_id``, ``scan_id``, ``diagnosis``, ``label``, ``outcome``.
    atlas : AtlasRegions
    relevance : {"positive", "signed", "absolute"}
    subjects_path : Path
        Where ``subjects.tsv`` goes; rows are appended batch by batch to a
        temporary file that replaces it at the end.
    means_dir : Path
        Folder for ``<group>.nii.gz`` (stale group files are removed).
    batch_size : int
    on_batch : callable, optional
        ``on_batch(rows, maps, magnitudes)`` sees every batch of relevance maps (after
        the sign transform) and the magnitudes of the raw maps, e.g. to score them
        against ground truth without a second read.
    advance : callable, optional
        Progress callback, called with the number of scans done.

    Returns
    -------
    MethodRegions
    """
    scans = scans.reset_index(drop=True)
    n_scans = len(scans)
    weights = group_weights(scans)
    grid = atlas.grid
    label_sums = np.zeros((n_scans, atlas.n_labels))
    totals = np.zeros(n_scans)
    accum = {g: np.zeros(grid.shape) for g in GROUPS if weights[g].sum() > 0}
    labels = atlas.labels
    n_vox = labels["n_voxels"].to_numpy()
    static = pd.DataFrame({"region": labels["region"], "hemisphere": labels["hemisphere"],
                           "area": labels["area"], "n_voxels": n_vox})
    with atomic_path(subjects_path) as tmp, open(tmp, "w", newline="") as fh:
        for rows, maps in iter_batches(list(paths), grid, batch_size):
            # The ground-truth hook also scores the magnitude of the raw maps.
            raw = np.abs(maps) if on_batch is not None else None
            metrics.apply_relevance(maps, relevance, out=maps)
            sums = region_sums(maps, atlas.codes, atlas.n_labels)  # one bincount pass
            label_sums[rows] = sums
            totals[rows] = maps.reshape(len(maps), -1).sum(axis=1, dtype=np.float64)
            w = weights.iloc[rows]
            for g, acc in accum.items():
                wg = w[g].to_numpy()
                for i in np.flatnonzero(wg):  # each scan is in two groups only
                    acc += maps[i] * wg[i]
            block = scans.iloc[rows]
            if on_batch is not None:
                on_batch(block, maps, raw)
            _subject_rows(block, static, sums).to_csv(
                fh, sep="\t", index=False, header=rows.start == 0, float_format="%.6g")
            if advance is not None:
                advance(len(maps))
        if n_scans == 0:
            pd.DataFrame(columns=list(SUBJECT_COLUMNS)).to_csv(fh, sep="\t", index=False)
    area_sums = label_sums @ atlas.label_to_area
    groups = group_table(label_sums, area_sums, weights, atlas)
    mean_images = write_group_means(accum, weights, means_dir, grid, method)
    return MethodRegions(method=method, relevance=relevance, scans=scans, label_sums=label_sums,
                         area_sums=area_sums, totals=totals, weights=weights, groups=groups,
                         mean_images=mean_images)


def _subject_rows(block: pd.DataFrame, static: pd.DataFrame, sums: np.ndarray) -> pd.DataFrame:
    """Long-format rows for a batch: every scan times every label, in label order."""
    n_scans, n_labels = sums.shape
    rep = np.repeat(np.arange(n_scans), n_labels)
    out = pd.DataFrame({c: block[c].to_numpy()[rep]
                        for c in ("participant_id", "scan_id", "diagnosis", "outcome")})
    for c in ("region", "hemisphere", "area", "n_voxels"):
        out[c] = np.tile(static[c].to_numpy(), n_scans)
    out["relevance_sum"] = sums.reshape(-1)
    out["relevance_density"] = metrics.density(sums, static["n_voxels"].to_numpy()).reshape(-1)
    return out[list(SUBJECT_COLUMNS)]


def group_table(label_sums: np.ndarray, area_sums: np.ndarray, weights: pd.DataFrame,
                atlas: AtlasRegions) -> pd.DataFrame:
    """Group means of relevance sum and density per label and per area, with gain.

    Gain is a group's mean over the HC mean (the same for sums and densities, as
    both share the region size); NaN where the HC mean is 0 or no HC was analysed.
    Empty groups get no rows.
    """
    frames = []
    hc_weight = weights["HC"].to_numpy()
    for level, sums, table in (("label", label_sums, atlas.labels),
                               ("area", area_sums, atlas.areas)):
        n_vox = table["n_voxels"].to_numpy()
        hc_mean = metrics.weighted_group_mean(sums, hc_weight)
        for g in GROUPS:
            w = weights[g].to_numpy()
            n_subjects = int(round(w.sum()))
            if n_subjects == 0:
                continue
            mean_sum = metrics.weighted_group_mean(sums, w)
            frames.append(pd.DataFrame({
                "group": g, "level": level, "region": table["region"].to_numpy(),
                "hemisphere": table["hemisphere"].to_numpy(), "area": table["area"].to_numpy(),
                "n_voxels": n_vox, "n_subjects": n_subjects, "mean_sum": mean_sum,
                "mean_density": metrics.density(mean_sum, n_vox),
                "gain": metrics.gain(mean_sum, hc_mean)}))
    if not frames:
        return pd.DataFrame(columns=list(GROUP_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(GROUP_COLUMNS)]


def write_group_means(accum: dict[str, np.ndarray], weights: pd.DataFrame, folder: Path,
                      grid: Grid, method: str) -> list[Path]:
    """Write ``<group>.nii.gz`` mean heatmaps; remove group files left by an earlier run."""
    written = []
    for g in GROUPS:
        path = folder / f"{g}.nii.gz"
        if g in accum:
            n_subjects = weights[g].sum()
            save_nifti(path, (accum[g] / n_subjects).astype(np.float32), grid.affine_array,
                       description=f"brainlrp mean {method} relevance, {g}")
            written.append(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return written


def write_groups(path: Path, groups: pd.DataFrame) -> None:
    """Write ``groups.tsv``."""
    write_table(path, groups[list(GROUP_COLUMNS)])
