"""The options of every stage, as dataclasses: one home for each default.

A stage takes its config (``train(cohort, out, TrainConfig(...))``) or the same names as
keywords; the CLI reads its option defaults from these classes, so a default is typed
once. This module is light (no torch, no NumPy) so that ``brainlrp --help`` stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

from brainlrp import catalog

#: Tissue loss above which a voxel counts as truly atrophied (ground truth).
DEFAULT_THRESHOLD = 0.05
#: The model must raise p(AD) by this much on average for planted scans to judge by.
MIN_RESPONSE = 0.1


def with_options(config, default_class, options: dict, where: str):
    """``config`` (or the class's defaults) with ``options`` replacing fields by name;
    an unknown name is a ``TypeError`` naming ``where``."""
    known = {f.name for f in fields(default_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"{where}() got unexpected option(s) {', '.join(unknown)}")
    return replace(config or default_class(), **options)


@dataclass
class TrainConfig:
    """Training settings; the defaults are the paper's.

    Attributes
    ----------
    arch : str
        Registered architecture.
    resolution : float
        Grid resolution in mm.
    epochs : int
        Maximum epochs (paper: 200).
    patience : int
        Early-stopping patience on validation loss (paper: 8).
    early_stopping_start : int
        Epochs ignored by early stopping (paper: 15).
    batch_size : int
    lr, weight_decay : float
        Adam (paper: 1e-4, 1e-4).
    trials : int
        Repeats with seeds ``seed, seed + 1, ...`` (paper: 4).
    seed : int
    test, val : float
        Per-class counts or fractions (paper: 30 and 18 per class).
    flip : bool
        Random left-right flip.
    shift : tuple of int or None
        Random left-right translation range in voxels (paper: -2..+3).
    accelerator, devices, strategy, num_nodes, precision
        Passed to Lightning's Trainer.
    workers : int
        DataLoader worker processes.
    model_kwargs : dict
        Extra architecture arguments.
    registration : str, optional
        ``"affine"`` or ``"syn"``: register native-space scans to the template with
        ANTsPy before preprocessing (see :mod:`brainlrp.data.register`).
    normalisation : str
        How each scan is scaled to [0, 1] (:data:`brainlrp.data.preprocess.NORMALISATIONS`):
        the paper's ``minmax`` (default) or ``robust``.
    """

    arch: str = "paper"
    resolution: float = 2.0
    epochs: int = 200
    patience: int = 8
    early_stopping_start: int = 15
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 1e-4
    trials: int = 1
    seed: int = 0
    test: float = 30
    val: float = 18
    flip: bool = True
    shift: tuple[int, int] | None = (-2, 3)
    accelerator: str = "auto"
    devices: str | int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    workers: int = 0
    model_kwargs: dict = field(default_factory=dict)
    registration: str | None = None
    normalisation: str = "minmax"


@dataclass(frozen=True)
class AnalysisConfig:
    """The options of :func:`analyze`.

    Attributes
    ----------
    atlas : str, path-like or Atlas
        Built-in atlas name or a NIfTI label image (Neuromorphometrics, the
        paper's atlas, by default).
    methods : sequence of str, optional
        Methods to analyse; by default every method with heatmaps.
    cohort : path-like, optional
        Cohort folder or table (participants' covariates, ground truth); by
        default the one recorded in ``run.json``.
    relevance : {"auto", "positive", "signed", "absolute"}
        How heatmaps become relevance; ``"auto"`` uses each method's default
        (:attr:`brainlrp.catalog.MethodInfo.relevance`).
    threshold : float
        Tissue loss above which a voxel counts as truly atrophied.
    top_k : int
        Areas compared in beta overlaps and ground-truth recall.
    n_permutations : int
        Permutations of the hippocampus correlation test.
    faithfulness, sanity : bool
        Run region perturbation / cascading randomisation (they need the model).
    faithfulness_subjects, sanity_subjects : int
        AD test scans sampled (seeded) for each check; the sanity scans are the
        first of the faithfulness sample. The defaults (4 and 1) keep both checks
        to about a minute at 2 mm on 2 CPU cores for seven methods.
    faithfulness_steps : int
        Areas replaced one by one.
    random_orders : int
        Random area orders averaged for the perturbation baseline.
    sanity_voxels : int
        Brain voxels sampled for the rank correlations.
    restoration : bool
        On cohorts with healthy twins (simulated), the model's own ground truth:
        p(AD) of the twins and the restoration importance of every area
        (:mod:`brainlrp.analysis.twins`; needs the model).
    restoration_subjects : int
        AD test scans with a twin sampled (seeded) for it (68 forward passes each).
    restoration_dilate : int
        Voxels by which an area grows before it is restored from the twin.
    costs : bool
        Time every method in this process for the benchmark's cost column
        (:mod:`brainlrp.analysis.costs`; needs the model).
    cost_subjects : int
        AD test scans timed (explained by every method; sampled with ``seed``, like the
        checks' scans).
    cost_repeats : int
        Rounds over all methods; the median is kept.
    batch_size : int
        Heatmaps read (and inputs forwarded) at a time.
    seed : int
    """

    atlas: object = "neuromorphometrics"
    methods: Sequence[str] | None = None
    cohort: str | os.PathLike | None = None
    relevance: str = "auto"
    threshold: float = DEFAULT_THRESHOLD
    top_k: int = 10
    n_permutations: int = 1000
    faithfulness: bool = True
    sanity: bool = True
    faithfulness_subjects: int = 4
    faithfulness_steps: int = 20
    random_orders: int = 2
    sanity_subjects: int = 1
    sanity_voxels: int = 20000
    restoration: bool = True
    restoration_subjects: int = 10
    restoration_dilate: int = 2
    costs: bool = True
    cost_subjects: int = 1
    cost_repeats: int = 5
    batch_size: int = 8
    seed: int = 0


@dataclass(frozen=True)
class ExplainConfig:
    """The options of :func:`brainlrp.explain.stage.explain_run` (``brainlrp explain``).

    Attributes
    ----------
    methods : str or sequence of str
        Method names (comma-separated string or list); by default the catalog's
        (:data:`brainlrp.catalog.DEFAULT_METHODS`).
    split : {"test", "val", "train", "all"}
    cohort : path-like, optional
        The cohort (default: the one recorded in run.json).
    batch_size : int
    overwrite : bool
        Recompute heatmaps that exist (each is replaced when its new map is written, so a
        run that stops keeps the maps it did not reach).
    cache_dir : path-like, optional
        Preprocessing cache (default: ``BRAINLRP_CACHE_DIR`` or the user cache).
    accelerator, devices, strategy, num_nodes
        Lightning settings; ``devices=4, strategy="ddp"`` explains on 4 GPUs.
    options : dict, optional
        Options for :func:`brainlrp.explain.explain`, for every method.
    method_options : dict of dict, optional
        Options for single methods, e.g. ``{"ig": {"steps": 16}}`` (a bare reference
        method's apply to each of its references).
    resample : bool
        Resample scans that are not on the grid the training scans were on.
    reference : str, optional
        What a bare reference method (``lrp-ref``, ``ig-ref``, ``occlusion-ref``)
        explains against: a kind of :mod:`brainlrp.data.reference` (default
        :data:`brainlrp.catalog.DEFAULT_REFERENCE`) or a NIfTI file; the heatmaps go to
        ``heatmaps/<method>@<reference>/``. ``<method>@<reference>`` names choose per
        method.
    label : int, optional
        Only scans of this label (1: AD), e.g. for a benchmark scored on patients.
    """

    methods: str | Sequence[str] = catalog.DEFAULT_METHODS
    split: str = "test"
    cohort: str | os.PathLike | None = None
    batch_size: int = 4
    overwrite: bool = False
    cache_dir: str | os.PathLike | None = None
    accelerator: str = "auto"
    devices: str | int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    options: dict | None = None
    method_options: dict | None = None
    resample: bool = False
    reference: str | None = None
    label: int | None = None


@dataclass(frozen=True)
class BenchmarkConfig:
    """The options of :func:`benchmark`.

    Attributes
    ----------
    disease_model : str or path-like
        A shipped disease model's name or a JSON file (docs/simulation.md).
    n : int
        Most controls planted per split (validation, test).
    seed : int
        Which controls are chosen and which patients are drawn.
    methods : sequence of str, optional
        Methods benchmarked (default: the catalog's ``benchmark`` set,
        :data:`brainlrp.catalog.METHOD_SETS`).
    batch_size : int
    min_response : float
        Mean rise of p(AD) from the originals to the planted scans below which nothing
        is ranked (:data:`MIN_RESPONSE`).
    """

    disease_model: str | os.PathLike = "default"
    n: int = 20
    seed: int = 0
    methods: Sequence[str] | None = None
    batch_size: int = 4
    min_response: float = MIN_RESPONSE


__all__ = ["DEFAULT_THRESHOLD", "MIN_RESPONSE", "AnalysisConfig", "BenchmarkConfig",
           "ExplainConfig", "TrainConfig", "with_options"]
