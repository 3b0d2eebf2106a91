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
``twin``, ``rescan``
    Simulated cohorts only: the same person rendered without the disease, and that
    healthy twin scanned again (:mod:`brainlrp.simulate.references`).
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

How the kinds are built (docs/architecture.md, "Reference kinds"): each kind is a small
estimator in the style of scikit-learn, a :class:`Reference` that is fitted on a run's
training controls (:class:`Controls`) and then builds the references of given scans.
:func:`register_reference` files a kind's estimator under its name; the names and
labels are the catalog's (:data:`brainlrp.catalog.REFERENCE_LABELS`, the one list of
kinds). This module registers the kinds built from the controls (``mean``, ``knn``,
``pca``); :mod:`brainlrp.simulate.references` registers ``twin`` and ``rescan`` when it
is imported (importing :mod:`brainlrp.simulate` imports it), since ``data`` never
imports ``simulate``: whatever explains against a reference imports it first
(:class:`brainlrp.explain.call.MethodCalls`, and so every command).
:class:`References` fits each kind at its first use and keeps it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from brainlrp import catalog
from brainlrp.data.grid import brain_mask
from brainlrp.data.preprocess import PreprocessCache, Preprocessing
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

#: Suffix of a reference that only restores what the scan lost (see the module docstring).
RESTORE = "-restore"
#: The built-in kinds, in the catalog's order (``mean``, ``knn``, ``pca``, ``twin``,
#: ``rescan``): the catalog lists every kind with its label.
BASE_KINDS = tuple(kind for kind in catalog.REFERENCE_LABELS if not kind.endswith(RESTORE))
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


class Controls:
    """What every reference kind is fitted on: a run's training controls as the model
    saw them (preprocessed on the model grid), read at first use and kept, so that one
    read serves every kind; and the run's cohort, for the kinds that look a scan up in
    it (``twin``, ``rescan``).

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
        self._scans = None

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

    def file(self, path: str | os.PathLike) -> np.ndarray:
        """Any NIfTI image, preprocessed like the scans."""
        return np.load(self.cache.get(Path(path), self.prep)).astype(np.float32)

    def cohort_row(self, scan_id: str):
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


class Reference:
    """One kind of reference image, in the style of a scikit-learn estimator:
    :meth:`fit` on a run's training controls, then :meth:`build` the references of the
    scans explained. What ``fit`` learns is kept in attributes ending in ``_``.

    A kind's estimator is registered under its name (:func:`register_reference`) and
    :class:`References` fits it at the kind's first use.
    """

    #: Whether fitting reads every training control's preprocessed array: a scan
    #: explained from outside the run may have to preprocess the controls first.
    reads_controls = False

    def fit(self, controls: Controls) -> Reference:
        """Learn what the kind needs from the run's training controls; returns itself."""
        self.controls_ = controls
        return self

    def build(self, scan_ids: Sequence[str], x: np.ndarray) -> np.ndarray:
        """References ``(n, X, Y, Z)`` (float32) of the preprocessed scans ``x``
        ``(n, 1, X, Y, Z)`` named ``scan_ids``: by default :meth:`build_one` per scan."""
        return np.stack([self.build_one(s, xi[0]) for s, xi in zip(scan_ids, x, strict=True)])

    def build_one(self, scan_id: str, x: np.ndarray | None = None) -> np.ndarray:
        """The reference ``(X, Y, Z)`` of one scan (``x``: the scan, when at hand)."""
        raise NotImplementedError(f"{type(self).__name__} builds whole batches only")


class MeanReference(Reference):
    """``mean``: the mean training control, the same for every scan."""

    def fit(self, controls: Controls) -> MeanReference:
        super().fit(controls)
        self.mean_ = controls.mean()
        return self

    def build(self, scan_ids: Sequence[str], x: np.ndarray) -> np.ndarray:
        return np.stack([np.broadcast_to(self.mean_, x.shape[2:])] * len(x))


class KnnReference(Reference):
    """``knn``: the mean of the ``k`` training controls closest to each scan
    (:meth:`Controls.knn`).

    Parameters
    ----------
    k : int
    """

    reads_controls = True

    def __init__(self, k: int = KNN_K):
        self.k = k

    def fit(self, controls: Controls) -> KnnReference:
        super().fit(controls)
        controls.control_matrix()
        return self

    def build(self, scan_ids: Sequence[str], x: np.ndarray) -> np.ndarray:
        return np.stack([self.controls_.knn(xi[0], self.k) for xi in x])


class PcaReference(Reference):
    """``pca``: each scan reconstructed from the principal components of the training
    controls, fitted robustly (Tukey biweight, iterated) so that what the controls
    cannot explain, such as atrophy, does not pull the fit.

    Parameters
    ----------
    n_components : int
        Components kept (fewer when the controls span fewer).
    tukey_c : float
        Tukey biweight constant, in robust standard deviations.
    iterations : int
    """

    reads_controls = True

    def __init__(self, n_components: int = PCA_COMPONENTS, tukey_c: float = TUKEY_C,
                 iterations: int = PCA_ITERATIONS):
        self.n_components = n_components
        self.tukey_c = tukey_c
        self.iterations = iterations

    def fit(self, controls: Controls) -> PcaReference:
        """The controls' centre and components (in float64, and a float32 copy)."""
        super().fit(controls)
        data, _ = controls.control_matrix()
        center = data.mean(axis=0, dtype=np.float64)
        data = data - center.astype(np.float32)
        gram = (data @ data.T).astype(np.float64)
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1]
        keep = [i for i in order[:self.n_components] if values[i] > 1e-9 * values.max()]
        basis = (data.T @ vectors[:, keep].astype(np.float32)).astype(np.float64)
        basis = basis / np.sqrt(values[keep])
        self.center_, self.basis_ = center, basis
        self.center32_, self.basis32_ = center.astype(np.float32), basis.astype(np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """A pseudo-healthy reconstruction of one scan ``x`` ``(X, Y, Z)``.

        The iterated fit runs in float32 (the reconstruction agrees with a float64 fit
        to ~1e-5 of the [0, 1] intensity range at half the memory traffic); the small
        normal equations are solved in float64."""
        brain = self.controls_.brain
        basis, basis32 = self.basis_, self.basis32_
        r = np.asarray(x, dtype=np.float32)[brain] - self.center32_
        weights = np.ones_like(r)
        coef = np.zeros(basis.shape[1])
        for _ in range(self.iterations):
            bw = basis32 * weights[:, None]
            coef = np.linalg.lstsq((bw.T @ basis32).astype(np.float64),
                                   (bw.T @ r).astype(np.float64), rcond=None)[0]
            resid = r - basis32 @ coef.astype(np.float32)
            scale = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) + 1e-12
            u = resid / np.float32(self.tukey_c * scale)
            weights = np.where(np.abs(u) < 1, (1 - u ** 2) ** 2, 0).astype(np.float32)
        out = np.zeros(brain.shape, dtype=np.float32)
        out[brain] = np.clip(self.center_ + basis @ coef, 0, None)
        return out

    def build(self, scan_ids: Sequence[str], x: np.ndarray) -> np.ndarray:
        return np.stack([self.transform(xi[0]) for xi in x])


#: kind -> factory of its unfitted estimator (see :func:`register_reference`).
_REGISTRY: dict[str, Callable[[], Reference]] = {}


def register_reference(kind: str, factory: Callable[[], Reference]) -> None:
    """Make the reference ``kind`` buildable: ``factory()`` (e.g. the class) returns an
    unfitted :class:`Reference`. Registering a kind again replaces its estimator.

    Raises
    ------
    ValueError
        ``kind`` is not one of the catalog's reference kinds (:data:`BASE_KINDS`): the
        catalog lists every kind with its label, so a new kind is added there first.
    """
    if kind not in BASE_KINDS:
        raise ValueError(f"{kind!r} is not a reference kind of brainlrp.catalog."
                         f"REFERENCE_LABELS ({', '.join(BASE_KINDS)}); add it there first")
    _REGISTRY[kind] = factory


def reference_estimator(kind: str) -> Reference:
    """A new, unfitted estimator of the built-in ``kind`` (``knn``: a
    :class:`KnnReference`); :meth:`Reference.fit` takes any object with what the kind
    reads of :class:`Controls` (``mean``, ``control_matrix``, ``knn``, ``brain``).

    Raises
    ------
    BrainLRPError
        ``kind`` is not a built-in kind, or no estimator is registered for it.
    """
    factory = _REGISTRY.get(kind)
    if factory is None:
        if kind not in BASE_KINDS:
            raise BrainLRPError(f"unknown reference {kind!r}",
                                f"use one of {', '.join(REFERENCE_KINDS)} or a NIfTI file")
        raise BrainLRPError(f"the {catalog.REFERENCE_LABELS[kind]} reference ({kind!r}) is "
                            "not loaded", "its package registers it when imported: twin and "
                            "rescan come with brainlrp.simulate")
    return factory()


def registered_kinds() -> tuple[str, ...]:
    """The kinds with an estimator now (``twin`` and ``rescan`` once
    :mod:`brainlrp.simulate` is imported)."""
    return tuple(_REGISTRY)


register_reference("mean", MeanReference)
register_reference("knn", KnnReference)
register_reference("pca", PcaReference)
#: Kinds built from every training control's preprocessed array (``knn``, ``pca``).
CONTROL_KINDS = tuple(kind for kind, factory in _REGISTRY.items()
                      if getattr(factory, "reads_controls", False))


class References(Controls):
    """Reference images of a run's scans: every registered kind, fitted on the run's
    training controls (:class:`Controls`, whose parameters it takes) at its first use
    and kept."""

    def __init__(self, run, prep: Preprocessing, cohort=None, cache_dir=None):
        super().__init__(run, prep, cohort=cohort, cache_dir=cache_dir)
        self._fitted: dict[str, Reference] = {}

    def reference(self, kind: str) -> Reference:
        """The estimator of a built-in ``kind``, fitted on the run's controls.

        Raises
        ------
        BrainLRPError
            ``kind`` is not a built-in kind, or no estimator is registered for it.
        """
        if kind not in self._fitted:
            self._fitted[kind] = reference_estimator(kind).fit(self)
        return self._fitted[kind]

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
        if kind in BASE_KINDS:
            return self.reference(kind).build(scan_ids, x)[:, None]
        path = Path(kind)
        if path.is_file():
            return np.stack([self.file(path)] * len(x))[:, None]
        raise BrainLRPError(f"unknown reference {kind!r}",
                            f"use one of {', '.join(REFERENCE_KINDS)} or a NIfTI file")

    def restore(self, x: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """The scan ``x`` with only its lost signal restored from ``reference``: their
        voxel-wise maximum inside the brain, ``x`` outside it (shapes broadcast)."""
        x = np.asarray(x, dtype=np.float32)
        return np.where(self.brain, np.maximum(x, reference), x)

    # One scan's reference of a kind by name (the kinds' estimators do the work).

    def pca(self, x: np.ndarray) -> np.ndarray:
        """The ``pca`` reference of one scan (:meth:`PcaReference.transform`)."""
        return self.reference("pca").transform(x)

    def twin(self, scan_id: str, x: np.ndarray | None = None) -> np.ndarray:
        """The simulated healthy twin of a scan's participant, preprocessed (``twin``,
        registered by :mod:`brainlrp.simulate.references`; ``x``: the scan, which is a
        simulated control's own twin)."""
        return self.reference("twin").build_one(scan_id, x)

    def rescan(self, scan_id: str) -> np.ndarray:
        """The simulated healthy twin of a scan's participant scanned again, preprocessed
        (``rescan``, registered by :mod:`brainlrp.simulate.references`)."""
        return self.reference("rescan").build_one(scan_id)


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
           "Controls", "KnnReference", "MeanReference", "PcaReference", "Reference",
           "References", "mean_image", "reference_estimator", "reference_name",
           "register_reference", "registered_kinds", "training_control_paths"]
