"""Healthy reference images for a scan: what the reference methods explain against.

Explaining p(AD) "against a black image" spreads relevance over all tissue; the
question users ask is "why AD rather than this brain without disease". Without a
healthy twin (which only a simulation has), the reference is built from the run's
**training controls**, preprocessed as the model sees them:

``mean``
    The voxel-wise mean of the training controls (``train`` writes it to
    ``model/reference_mean.nii.gz``).
``knn``
    The mean of the ``k`` training controls closest to the scan (Euclidean distance
    inside the brain): a subject-matched reference.
``pca``
    A pseudo-healthy reconstruction: the scan projected onto the principal
    components of the training controls, fitted robustly (Tukey biweight, iterated)
    so that what the controls cannot explain, such as atrophy, does not pull the fit.
``twin``
    Simulated cohorts only: the same person rendered without the disease
    (``derivatives/ground_truth/<pid>_desc-healthy_T1w.nii.gz``; a control is its own
    twin); the benchmark's upper bound, not for real data.
``rescan``
    Simulated cohorts only: the twin **scanned again** (same person, scanner and noise
    level, fresh noise; :func:`brainlrp.simulate.stage.healthy_rescan`): a perfectly
    registered healthy baseline scan, the best reference real data could ever give. The
    twin shares the scan's noise image, which no real reference can; the benchmark's
    ceiling for references a real patient could have.
``<kind>-restore`` (``mean-restore``, ``knn-restore``, ``pca-restore``, ``twin-restore``,
``rescan-restore``)
    The scan itself with only its **lost signal restored** from ``<kind>``: the
    voxel-wise maximum of scan and reference inside the brain, the scan outside it.
    Neurodegeneration removes tissue, and in a T1-weighted image lost tissue is
    replaced by darker CSF, so a patient's healthy self is hardly anywhere darker than
    the patient (only where shrinking tissue shifts an edge). A reference built from
    other people differs from the patient in anatomy (misalignment, with both signs)
    as much as in disease; the maximum drops the half of that difference no tissue
    loss can explain. Not for changes that brighten a T1 image (e.g. contrast-enhancing
    lesions).
a NIfTI file
    Any image, preprocessed like the scans (e.g. a study-specific template).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainlrp.data.grid import brain_mask
from brainlrp.data.preprocess import PreprocessCache, Preprocessing
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

#: References built from the run (and, for ``twin`` and ``rescan``, the simulated cohort).
BASE_KINDS = ("mean", "knn", "pca", "twin", "rescan")
#: Suffix of a reference that only restores what the scan lost (see the module docstring).
RESTORE = "-restore"
#: References built from the training controls' preprocessed arrays for every scan.
CONTROL_KINDS = ("knn", "pca")
#: Built-in references (a path to a NIfTI file is accepted too).
REFERENCE_KINDS = BASE_KINDS + tuple(kind + RESTORE for kind in BASE_KINDS)
MEAN_FILE = Path("model") / "reference_mean.nii.gz"
#: Controls averaged by ``knn``; principal components kept by ``pca``.
KNN_K = 5
PCA_COMPONENTS = 16
#: Tukey biweight constant (in robust standard deviations) and iterations of ``pca``.
TUKEY_C = 4.685
PCA_ITERATIONS = 6
CONTROL_LABELS = ("HC", "CN")
#: Re-scans kept in memory (rendering one takes seconds; every method reuses it).
RESCAN_CACHE = 16


def training_control_paths(run: RunDir, cohort: str | os.PathLike | None = None
                           ) -> list[Path]:
    """The scan files of the run's training-split controls."""
    import pandas as pd

    from brainlrp.data.cohort import load_cohort

    if not run.splits.is_file():
        raise BrainLRPError(f"{run.root} has no splits.tsv: no training controls to build a "
                            "reference from", "pass --reference FILE (a healthy-looking scan)")
    splits = pd.read_csv(run.splits, sep="\t", dtype={"participant_id": str})
    train = splits[splits["split"] == "train"]
    if "diagnosis" in train.columns:
        train = train[train["diagnosis"].astype(str).isin(CONTROL_LABELS)]
    source = cohort or run.cohort_source()
    if source is None:
        raise BrainLRPError(f"{run.run_json} does not name the cohort", "pass --cohort DIR")
    scans = load_cohort(source, allow_external_paths=True).scans
    scans = scans[scans["participant_id"].isin(set(train["participant_id"]))
                  & (scans["label"] == 0)]
    if scans.empty:
        raise BrainLRPError(f"{run.root} has no training controls to build a reference from",
                            "pass --reference FILE (a healthy-looking scan)")
    return [Path(p) for p in scans["path"]]


def mean_image(arrays: Sequence[str | os.PathLike], shape: tuple[int, ...]) -> np.ndarray:
    """Voxel-wise mean of cached ``.npy`` arrays, read one at a time."""
    total = np.zeros(shape)
    for path in arrays:
        total += np.load(path, mmap_mode="r")
    return (total / max(len(arrays), 1)).astype(np.float32)


class References:
    """Reference images of a run's scans.

    Parameters
    ----------
    run : path-like or RunDir
        The run (its training controls, cohort and model card).
    prep : Preprocessing
        The model's preprocessing.
    cohort, cache_dir : path-like, optional
    """

    def __init__(self, run, prep: Preprocessing, cohort=None, cache_dir=None):
        self.run = run if isinstance(run, RunDir) else RunDir(run)
        self.prep = prep
        self.cohort = cohort
        self.cache = PreprocessCache(cache_dir)
        self.brain = np.asarray(brain_mask(prep.grid), dtype=bool)
        self._arrays: list[Path] | None = None
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None
        self._mean: np.ndarray | None = None
        self._pca: tuple[np.ndarray, ...] | None = None
        self._scans = None
        self._rescans: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ controls

    def control_arrays(self) -> list[Path]:
        """Cached ``.npy`` arrays of the training controls (computed on a miss)."""
        if self._arrays is None:
            paths = training_control_paths(self.run, self.cohort)
            self._arrays = [Path(self.cache.get(p, self.prep)) for p in paths]
        return self._arrays

    def uncached_controls(self) -> list[Path]:
        """Training controls whose preprocessed arrays are not in the cache (building a
        control-based reference preprocesses them first, registration included)."""
        paths = training_control_paths(self.run, self.cohort)
        return [p for p in paths if not self.cache.array_path(p, self.prep).is_file()]

    def mean(self) -> np.ndarray:
        """The mean training control (``model/reference_mean.nii.gz`` when present)."""
        if self._mean is None:
            stored = self.run.root / MEAN_FILE
            if stored.is_file():
                import nibabel as nib

                data = np.asarray(nib.load(str(stored)).dataobj, dtype=np.float32)
                if data.shape == self.prep.grid.shape:
                    self._mean = data
            if self._mean is None:
                self._mean = mean_image(self.control_arrays(), self.prep.grid.shape)
        return self._mean

    def control_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """The training controls' brain voxels ``(n_controls, n_voxels)`` (float32) and
        their squared norms, read once and kept: ``knn`` then costs one matrix-vector
        product and ``k`` reads per scan instead of reading every control again."""
        if self._matrix is None:
            arrays = self.control_arrays()
            data = np.empty((len(arrays), int(self.brain.sum())), dtype=np.float32)
            for i, a in enumerate(arrays):
                data[i] = np.load(a, mmap_mode="r")[self.brain]
            self._matrix = (data, np.einsum("ij,ij->i", data, data, dtype=np.float64))
        return self._matrix

    def knn(self, x: np.ndarray, k: int = KNN_K) -> np.ndarray:
        """The mean of the ``k`` training controls closest to ``x`` inside the brain."""
        data, norms = self.control_matrix()
        target = np.asarray(x, dtype=np.float32)[self.brain]
        dist = norms - 2.0 * (data @ target).astype(np.float64)  # + |x|^2, same for all
        nearest = np.argsort(dist, kind="stable")[: max(1, min(k, len(data)))]
        arrays = self.control_arrays()
        return mean_image([arrays[i] for i in nearest], self.prep.grid.shape)

    def _components(self) -> tuple[np.ndarray, ...]:
        """``(center, basis)`` of the controls in float64, then the same in float32."""
        if self._pca is None:
            controls, _ = self.control_matrix()
            center = controls.mean(axis=0, dtype=np.float64)
            data = controls - center.astype(np.float32)
            gram = (data @ data.T).astype(np.float64)
            values, vectors = np.linalg.eigh(gram)
            order = np.argsort(values)[::-1]
            keep = [i for i in order[:PCA_COMPONENTS] if values[i] > 1e-9 * values.max()]
            basis = (data.T @ vectors[:, keep].astype(np.float32)).astype(np.float64)
            basis = basis / np.sqrt(values[keep])
            self._pca = (center, basis, center.astype(np.float32), basis.astype(np.float32))
        return self._pca

    def pca(self, x: np.ndarray) -> np.ndarray:
        """A pseudo-healthy reconstruction of ``x`` from the controls' components.

        The iterated fit runs in float32 (the reconstruction agrees with a float64 fit
        to ~1e-5 of the [0, 1] intensity range at half the memory traffic); the small
        normal equations are solved in float64."""
        center, basis, center32, basis32 = self._components()
        r = np.asarray(x, dtype=np.float32)[self.brain] - center32
        weights = np.ones_like(r)
        coef = np.zeros(basis.shape[1])
        for _ in range(PCA_ITERATIONS):
            bw = basis32 * weights[:, None]
            coef = np.linalg.lstsq((bw.T @ basis32).astype(np.float64),
                                   (bw.T @ r).astype(np.float64), rcond=None)[0]
            resid = r - basis32 @ coef.astype(np.float32)
            scale = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) + 1e-12
            u = resid / np.float32(TUKEY_C * scale)
            weights = np.where(np.abs(u) < 1, (1 - u ** 2) ** 2, 0).astype(np.float32)
        out = np.zeros(self.prep.grid.shape, dtype=np.float32)
        out[self.brain] = np.clip(center + basis @ coef, 0, None)
        return out

    # ------------------------------------------------------------------ others

    def twin(self, scan_id: str, x: np.ndarray | None = None) -> np.ndarray:
        """The simulated healthy twin of a scan's participant, preprocessed.

        A simulated control is its own healthy twin (rendering it without the disease
        renders the same scan): its twin is the preprocessed scan, ``x`` when given, so
        a twin reference explains nothing there instead of stopping the run.
        """
        from brainlrp.simulate.ground_truth import healthy_twin_path

        row, root = self._cohort_row(scan_id)
        path = healthy_twin_path(root, str(row["participant_id"]))
        if path.is_file():
            return self.file(path)
        if path.parent.is_dir() and int(row["label"]) == 0:
            return self.file(row["path"]) if x is None else np.asarray(x, dtype=np.float32)
        raise BrainLRPError(f"no healthy twin for scan {scan_id} ({path})",
                            "twins exist only in simulated cohorts, for AD subjects: use "
                            "--reference mean, knn or pca")

    def rescan(self, scan_id: str) -> np.ndarray:
        """The simulated healthy twin of a scan's participant scanned again, preprocessed
        (a control: the control scanned again)."""
        from brainlrp.simulate.ground_truth import config_path

        if scan_id in self._rescans:
            return self._rescans[scan_id]
        row, root = self._cohort_row(scan_id)
        if not config_path(root).is_file():
            raise BrainLRPError(f"no healthy re-scan for scan {scan_id}: {root} is not a "
                                "cohort made by brainlrp simulate",
                                "re-scans exist only in simulated cohorts: use --reference "
                                "mean, knn or pca")
        from brainlrp.data.preprocess import preprocess_image
        from brainlrp.simulate.stage import healthy_rescan

        out = preprocess_image(healthy_rescan(root, str(row["participant_id"])), self.prep)
        if len(self._rescans) >= RESCAN_CACHE:
            self._rescans.pop(next(iter(self._rescans)))
        self._rescans[scan_id] = out
        return out

    def restore(self, x: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """The scan ``x`` with only its lost signal restored from ``reference``: their
        voxel-wise maximum inside the brain, ``x`` outside it (shapes broadcast)."""
        x = np.asarray(x, dtype=np.float32)
        return np.where(self.brain, np.maximum(x, reference), x)

    def file(self, path: str | os.PathLike) -> np.ndarray:
        """Any NIfTI image, preprocessed like the scans."""
        return np.load(self.cache.get(Path(path), self.prep)).astype(np.float32)

    def _cohort_row(self, scan_id: str):
        """A scan's row of the run's cohort table and the cohort's folder."""
        scans = self._cohort_scans()
        if scan_id not in scans.index:
            raise BrainLRPError(f"scan {scan_id} is not in the run's cohort",
                                "pass the cohort with --cohort")
        return scans.loc[scan_id], Path(self.run.cohort_source() if self.cohort is None
                                        else self.cohort)

    def _cohort_scans(self):
        if self._scans is None:
            from brainlrp.data.cohort import load_cohort

            source = self.cohort or self.run.cohort_source()
            self._scans = load_cohort(source, allow_external_paths=True).scans.set_index(
                "scan_id")
        return self._scans

    def get(self, kind: str, scan_ids: Sequence[str], x: np.ndarray) -> np.ndarray:
        """References ``(n, 1, X, Y, Z)`` for a batch of scans ``x`` of the same shape.

        Parameters
        ----------
        kind : str
            One of :data:`REFERENCE_KINDS` or a NIfTI file's path.
        scan_ids : sequence of str
        x : numpy.ndarray
            The preprocessed scans.
        """
        x = np.asarray(x, dtype=np.float32)
        if kind.endswith(RESTORE) and kind[: -len(RESTORE)] in BASE_KINDS:
            return self.restore(x, self.get(kind[: -len(RESTORE)], scan_ids, x))
        if kind == "mean":
            ref = np.broadcast_to(self.mean(), x.shape[2:])
            return np.stack([ref] * len(x))[:, None]
        if kind == "knn":
            return np.stack([self.knn(xi[0]) for xi in x])[:, None]
        if kind == "pca":
            return np.stack([self.pca(xi[0]) for xi in x])[:, None]
        if kind == "twin":
            return np.stack([self.twin(s, xi[0]) for s, xi in zip(scan_ids, x, strict=True)]
                            )[:, None]
        if kind == "rescan":
            return np.stack([self.rescan(s) for s in scan_ids])[:, None]
        path = Path(kind)
        if path.is_file():
            return np.stack([self.file(path)] * len(x))[:, None]
        raise BrainLRPError(f"unknown reference {kind!r}",
                            f"use one of {', '.join(REFERENCE_KINDS)} or a NIfTI file")


def reference_name(kind: str) -> str:
    """How a reference appears in a method name (``ig-ref@<name>``): a file by its stem."""
    if kind in REFERENCE_KINDS:
        return kind
    name = Path(kind).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name) or "file"


__all__ = ["BASE_KINDS", "CONTROL_KINDS", "MEAN_FILE", "REFERENCE_KINDS", "RESTORE",
           "References", "mean_image", "reference_name", "training_control_paths"]
