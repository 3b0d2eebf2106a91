"""brainlrp from Python: the CLI's stages, a run's files as pandas and nibabel objects,
and one call that explains any PyTorch model on a tensor.

``import brainlrp as bl`` gives every name of this module's ``__all__`` (``bl.Run``,
``bl.explain_tensor``, ...); the package imports this module at the first such use, so
``import brainlrp`` and the CLI stay light.

* :class:`Run` (or :func:`open_run`): a run directory. Its methods run the stages on it
  (:meth:`Run.explain`, :meth:`Run.analyze`, :meth:`Run.report`, :meth:`Run.benchmark`,
  each the stage function of the same command with its config dataclass) and read what
  they wrote (:meth:`Run.heatmap` as a nibabel image, :meth:`Run.regions` and
  :meth:`Run.method_benchmark` as DataFrames, :meth:`Run.predictions`, :attr:`Run.card`).
* :func:`simulate` (``bl.simulate_cohort``: ``bl.simulate`` is the subpackage),
  :func:`train` and :func:`import_model`: the stages that make a cohort and a run,
  re-exported as they are.
* :func:`explain_tensor`: any model, any tensor, any method of the catalog, against any
  reference, with the conservation gap of LRP (:class:`Explanation`).
* :func:`method_table`: the catalog of methods as a DataFrame.

Stages run quietly here (``progress=False``) unless asked; every error is a
:class:`~brainlrp.errors.BrainLRPError` with its fix, as on the command line.

The examples run as doctests (``tests/test_api.py``). Those of :class:`Run` use ``bl``
(``import brainlrp as bl``), ``run_dir``, the small run the quickstart notebook makes
(``examples/quickstart.py``: 16 simulated subjects at 8 mm in ``cohort_dir``, the
``tiny`` network trained 3 epochs, explained with the recommended method, ``lrp-b0``,
``gradient`` and ``edges``, and analysed), and ``tmp_dir``, an empty folder.

Examples
--------
The catalog's methods, with what each explains (:func:`explain_tensor` has examples
that explain a model):

>>> import brainlrp as bl
>>> methods = bl.method_table()
>>> list(methods.columns[:4])
['method', 'label', 'family', 'explains']
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from brainlrp import catalog
from brainlrp.configs import (
    AnalysisConfig,
    BenchmarkConfig,
    ExplainConfig,
    TrainConfig,
    with_options,
)
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

# The stages that make cohorts and runs, re-exported as they are (help() shows their
# own signatures and docstrings).
from brainlrp.simulate import simulate
from brainlrp.training import import_model, train

if TYPE_CHECKING:
    import nibabel as nib
    import pandas as pd
    import torch
    from torch import nn

    from brainlrp.analysis.stage import AnalysisResult
    from brainlrp.analysis.summary import AnalysisSummary
    from brainlrp.benchmark import BenchmarkResult
    from brainlrp.card import ModelCard
    from brainlrp.explain.stage import ExplainResult, ScanExplanation
    from brainlrp.report.stage import ReportResult

#: ``bl.simulate_cohort`` is :func:`simulate`: ``bl.simulate`` names the subpackage
#: ``brainlrp.simulate`` (a function cannot take a subpackage's name in the package).
simulate_cohort = simulate


def _silent(line: str) -> None:
    """Drops a stage's step line (the API is quiet unless asked)."""


class Run:
    """A run directory: the stages of the CLI as methods, its files as Python objects.

    Parameters
    ----------
    path : path-like or Run
        A run made by :func:`train` or :func:`import_model` (``brainlrp train``,
        ``brainlrp demo``: ``<out>/run``).

    Attributes
    ----------
    dir : brainlrp.run.RunDir
        The run's named paths (the run-directory contract), from its absolute path.

    Raises
    ------
    BrainLRPError
        When ``path`` is not a directory.

    Examples
    --------
    >>> import brainlrp as bl
    >>> run = bl.Run(run_dir)
    >>> run.card.classes
    ['HC', 'AD']
    >>> bl.Run("no/such/run")
    Traceback (most recent call last):
    ...
    brainlrp.errors.BrainLRPError: run directory no/such/run does not exist - check the path...
    """

    def __init__(self, path: str | os.PathLike | Run):
        # Absolute, so that the stages' resume keys (which name files by path) do not
        # depend on the working directory a run is opened from.
        self.dir = (path.dir if isinstance(path, Run)
                    else RunDir(RunDir.existing(path).root.absolute()))
        self._model = None

    @property
    def path(self) -> Path:
        """The run directory.

        Examples
        --------
        >>> (bl.Run(run_dir).path / "model" / "card.json").is_file()
        True
        """
        return self.dir.root

    def __fspath__(self) -> str:
        return str(self.dir.root)

    def __repr__(self) -> str:
        return f"Run({str(self.dir.root)!r})"

    # ------------------------------------------------------------------ what it holds

    @property
    def card(self) -> ModelCard:
        """The model card (:class:`brainlrp.card.ModelCard`): architecture, grid,
        preprocessing, classes, metrics.

        Examples
        --------
        >>> run = bl.Run(run_dir)
        >>> run.card.architecture, run.card.target_class
        ('tiny', 1)
        """
        from brainlrp.card import read_card

        return read_card(self.dir.root)

    def predictions(self, split: str | None = None) -> pd.DataFrame:
        """``predictions.tsv``: one row per scan, with ``diagnosis``, ``p_ad``,
        ``predicted``, ``outcome`` (TP, TN, FP, FN) and ``split``.

        Parameters
        ----------
        split : {"train", "val", "test"}, optional
            Only that split's scans.

        Examples
        --------
        >>> table = bl.Run(run_dir).predictions("test")
        >>> sorted(set(table["diagnosis"]))
        ['AD', 'HC']
        """
        from brainlrp.analysis.inputs import read_predictions

        self.dir.require(self.dir.predictions, "predictions.tsv",
                         "train a model first: brainlrp.train(cohort, run)")
        table = read_predictions(self.dir)
        return table if split is None else table[table["split"] == split].reset_index(drop=True)

    def scan_ids(self, split: str = "test", label: int | None = None) -> list[str]:
        """The scans of a split (``"all"``: every scan), optionally of one label (1: AD).

        Examples
        --------
        >>> run = bl.Run(run_dir)
        >>> ad = run.scan_ids("test", label=1)
        >>> len(ad) == int((run.predictions("test")["label"] == 1).sum())
        True
        """
        table = self.predictions(None if split == "all" else split)
        if label is not None:
            table = table[table["label"] == label]
        return table["scan_id"].tolist()

    def metrics(self) -> dict:
        """``metrics.json``: balanced accuracy, sensitivity, ... per split.

        Examples
        --------
        >>> 0 <= bl.Run(run_dir).metrics()["test"]["balanced_accuracy"] <= 1
        True
        """
        from brainlrp._io import read_json

        return read_json(self.dir.require(self.dir.metrics, "metrics.json",
                                          "train a model first: brainlrp.train(cohort, run)"))

    def methods(self) -> list[str]:
        """The methods with heatmaps in this run, in table order (empty before
        :meth:`explain`).

        Examples
        --------
        >>> run = bl.Run(run_dir)
        >>> "lrp-b0" in run.methods()
        True
        """
        from brainlrp.analysis.inputs import discover_methods

        try:
            return discover_methods(self.dir)
        except BrainLRPError:
            return []

    def heatmap(self, method: str, scan_id: str) -> nib.Nifti1Image:
        """One scan's heatmap (``heatmaps/<method>/<scan_id>.nii.gz``) on the model grid.

        Examples
        --------
        >>> run = bl.Run(run_dir)
        >>> scan = run.scan_ids("test")[0]
        >>> img = run.heatmap("lrp-b0", scan)
        >>> img.shape == run.card.grid.shape
        True
        """
        import nibabel as nib

        path = self.dir.require(self.dir.heatmap(method, scan_id), f"{method} heatmap of "
                                f"{scan_id}", f"run.explain(methods={[method]!r}) first "
                                f"(split 'all' for scans outside the test split)")
        return nib.load(str(path))

    def group_mean(self, method: str, group: str = "AD") -> nib.Nifti1Image:
        """The mean relevance map of a group (``AD``, ``HC``, ``TP``, ``TN``, ``FP``,
        ``FN``) written by :meth:`analyze` (``means/<method>/<group>.nii.gz``).

        Examples
        --------
        >>> bl.Run(run_dir).group_mean("lrp-b0", "AD").ndim
        3
        """
        import nibabel as nib

        path = self.dir.require(self.dir.group_mean(method, group),
                                f"{group} mean of {method}", "run.analyze() first")
        return nib.load(str(path))

    def regions(self, method: str, level: str = "subjects") -> pd.DataFrame:
        """A method's region table written by :meth:`analyze`.

        Parameters
        ----------
        method : str
        level : {"subjects", "groups"}
            ``subjects``: per scan and atlas label, ``relevance_sum`` and
            ``relevance_density``; ``groups``: per group (AD, HC, TP, ...) and label or
            merged area, ``mean_sum``, ``mean_density`` and ``gain``.

        Examples
        --------
        >>> table = bl.Run(run_dir).regions("lrp-b0", "groups")
        >>> {"group", "area", "mean_density", "gain"} <= set(table.columns)
        True
        """
        import pandas as pd

        if level not in ("subjects", "groups"):
            raise BrainLRPError(f"unknown region table {level!r}", "use subjects or groups")
        path = self.dir.require(self.dir.region_table(method, level),
                                f"{method} region table", "run.analyze() first")
        return pd.read_csv(path, sep="\t", dtype={"participant_id": str, "scan_id": str})

    def summary(self) -> AnalysisSummary:
        """``analysis/summary.json`` (:class:`brainlrp.analysis.summary.AnalysisSummary`):
        the atlas, every method's summary numbers, the recommended method, notices.

        Examples
        --------
        >>> "lrp-b0" in bl.Run(run_dir).summary().methods
        True
        """
        from brainlrp.analysis.summary import read_summary

        return read_summary(self.dir.require(self.dir.analysis / "summary.json",
                                             "analysis/summary.json", "run.analyze() first"))

    def method_benchmark(self, planted: bool = False) -> pd.DataFrame:
        """The method benchmark: every analysed method ranked against the ground truth
        (``analysis/method_benchmark.tsv``; column ``truth``: simulated, planted or none).

        Parameters
        ----------
        planted : bool
            The table :meth:`benchmark` wrote instead (``benchmark/method_benchmark.tsv``:
            the test plants' scores, the recommendation chosen on the validation plants).

        Examples
        --------
        >>> table = bl.Run(run_dir).method_benchmark()
        >>> {"rank", "method", "mass_accuracy", "recommended"} <= set(table.columns)
        True
        """
        import pandas as pd

        from brainlrp.analysis.benchmark import PLANTED_TABLE

        if planted:
            path = self.dir.require(self.dir.root / PLANTED_TABLE, "the planted benchmark",
                                    "run.benchmark() first")
        else:
            path = self.dir.require(self.dir.analysis / "method_benchmark.tsv",
                                    "analysis/method_benchmark.tsv", "run.analyze() first")
        return pd.read_csv(path, sep="\t")

    @property
    def recommended_method(self) -> str:
        """The method the run's benchmark recommends (``summary.json``), else the
        catalog's default (:data:`brainlrp.catalog.DEFAULT_METHODS`' first).

        Examples
        --------
        >>> bl.Run(run_dir).recommended_method in bl.method_table()["method"].tolist()
        True
        """
        path = self.dir.analysis / "summary.json"
        if path.is_file():
            from brainlrp.analysis.summary import read_summary

            recommended = read_summary(path).recommended_method
            if recommended:
                return recommended
        return catalog.default_methods()[0]

    def model(self) -> nn.Module:
        """The trained model (eval mode, CPU), loaded once and kept.

        Examples
        --------
        >>> type(bl.Run(run_dir).model()).__name__
        'ConvBlockCNN'
        """
        if self._model is None:
            from brainlrp.training import load_model

            self._model = load_model(self.dir.root)[0]
        return self._model

    def input_image(self, scan_id: str) -> nib.Nifti1Image:
        """One scan as the model sees it (preprocessed, on the model grid) as a NIfTI
        image: the background for its heatmap.

        Examples
        --------
        >>> run = bl.Run(run_dir)
        >>> img = run.input_image(run.scan_ids()[0])
        >>> img.shape == run.card.grid.shape, float(img.get_fdata().max())
        (True, 1.0)
        """
        import nibabel as nib

        data = self.inputs([scan_id])[0, 0].numpy()
        return nib.Nifti1Image(data, self.card.grid.affine_array)

    def inputs(self, scan_ids: Sequence[str]) -> torch.Tensor:
        """The run's scans as the model sees them: ``(n, 1, X, Y, Z)`` float32,
        preprocessed from the cohort (cached).

        Examples
        --------
        >>> run = bl.Run(run_dir)
        >>> tuple(run.inputs(run.scan_ids()[:2]).shape)[:2]
        (2, 1)
        """
        import torch

        from brainlrp.data import load_inputs

        return torch.from_numpy(np.ascontiguousarray(
            load_inputs(self.dir.root, list(scan_ids), self.card.prep)))

    # ------------------------------------------------------------------ the stages

    def explain(self, methods: str | Sequence[str] | None = None,
                config: ExplainConfig | None = None, *, progress: bool = False,
                **options) -> ExplainResult:
        """``brainlrp explain RUN``: heatmaps of the run's scans
        (:func:`brainlrp.explain.stage.explain_run`), resuming where it stopped.

        Parameters
        ----------
        methods : str or sequence of str, optional
            Catalog names (``"lrp-b0,gb"`` or a list); default: the catalog's
            (:data:`brainlrp.catalog.DEFAULT_METHODS`).
        config : ExplainConfig, optional
        progress : bool
        **options
            Fields of :class:`~brainlrp.configs.ExplainConfig` (``split``,
            ``reference``, ``method_options``, ...).

        Returns
        -------
        brainlrp.explain.stage.ExplainResult
            ``methods``, ``n_scans``, ``n_written``, ``n_skipped``, ``seconds``.

        Examples
        --------
        >>> result = bl.Run(run_dir).explain("lrp-b0")
        >>> result.methods, result.n_scans > 0
        (['lrp-b0'], True)
        """
        from brainlrp.explain.stage import explain_run

        if methods is not None:
            options["methods"] = methods
        config = with_options(config, ExplainConfig, options, "explain")
        return explain_run(self.dir.root, config, progress=progress)

    def explain_scan(self, scan: str | os.PathLike, out: str | os.PathLike,
                     methods: str | Sequence[str] | None = None,
                     **options) -> ScanExplanation:
        """``brainlrp explain RUN --scan FILE --out DIR``: one new scan, preprocessed as
        in training (:func:`brainlrp.explain.stage.explain_scan`).

        Returns
        -------
        brainlrp.explain.stage.ScanExplanation
            ``p_ad`` and the ``files`` written (``input``, one per method, ...).

        Examples
        --------
        >>> run = bl.Run(run_dir)
        >>> scan = cohort_dir / "sub-0001" / "anat" / "sub-0001_T1w.nii.gz"
        >>> done = run.explain_scan(scan, tmp_dir / "sub-0001", methods="lrp-b0")
        >>> 0 <= done.p_ad <= 1, sorted(done.files)
        (True, ['input', 'lrp-b0', 'prediction'])
        """
        from brainlrp.explain.stage import explain_scan

        return explain_scan(self.dir.root, scan, out, methods=methods, **options)

    def explain_tensor(self, x, method: str | None = None, **options) -> Explanation:
        """:func:`explain_tensor` with this run's model, classes and references.

        Examples
        --------
        >>> run = bl.Run(run_dir)
        >>> ids = run.scan_ids("test", label=1)[:1]
        >>> result = run.explain_tensor(run.inputs(ids), "lrp-ref@knn-restore", scan_ids=ids)
        >>> result.method, bool(abs(result.gap).max() < 1e-3)
        ('lrp-ref@knn-restore', True)
        """
        return explain_tensor(self.model(), x, method, run=self, **options)

    def analyze(self, config: AnalysisConfig | None = None, *, progress: bool = False,
                overwrite: bool = False, **options) -> AnalysisResult:
        """``brainlrp analyze RUN``: region tables, group maps, statistics, checks and the
        method benchmark (:func:`brainlrp.analysis.analyze`); up to date, it does nothing.

        Parameters
        ----------
        config : AnalysisConfig, optional
        progress, overwrite : bool
        **options
            Fields of :class:`~brainlrp.configs.AnalysisConfig` (``methods``, ``atlas``,
            ``faithfulness``, ``sanity``, ``restoration``, ``costs``, ...).

        Returns
        -------
        brainlrp.analysis.stage.AnalysisResult
            ``methods``, ``summary`` (a dict), ``outputs``, ``notices``, ``skipped``.

        Examples
        --------
        >>> result = bl.Run(run_dir).analyze(faithfulness=False, sanity=False,
        ...                                  restoration=False, costs=False)
        >>> result.skipped  # the quickstart analysed the run with the same options
        True
        >>> "lrp-b0" in result.methods
        True
        """
        from brainlrp.analysis import analyze

        config = with_options(config, AnalysisConfig, options, "analyze")
        return analyze(self.dir.root, config, progress=progress, overwrite=overwrite)

    def report(self, methods: Sequence[str] | None = None, *, cards: bool = True,
               progress: bool = False, overwrite: bool = False) -> ReportResult:
        """``brainlrp report RUN``: the self-contained HTML report
        (:func:`brainlrp.report.stage.report`).

        Parameters
        ----------
        methods : sequence of str, optional
            Methods shown (default: every analysed one).
        cards : bool
            Also ``report/cards/<scan_id>.png`` per test scan.
        progress, overwrite : bool

        Returns
        -------
        brainlrp.report.stage.ReportResult
            ``index`` (the page), ``cards``, ``sections``, ``main_method``, ``notes``.

        Examples
        --------
        Not run by the doctests (about 10 s even on the quickstart's run; the report's
        own tests run it):

        >>> result = bl.Run(run_dir).report(cards=False)  # doctest: +SKIP
        >>> result.index.name, result.index.is_file()  # doctest: +SKIP
        ('index.html', True)
        """
        from brainlrp.report.stage import report

        return report(self.dir.root, methods=methods, cards=cards, progress=progress,
                      overwrite=overwrite)

    def benchmark(self, config: BenchmarkConfig | None = None, *, progress: bool = False,
                  say: Callable[[str], None] | None = None,
                  **options) -> BenchmarkResult:
        """``brainlrp benchmark RUN``: plant known atrophy into the run's held-out
        controls and rank the methods on it (:func:`brainlrp.benchmark.benchmark`;
        docs/benchmark.md).

        Parameters
        ----------
        config : BenchmarkConfig, optional
        progress : bool
            Progress bars, and the step lines printed (unless ``say`` is given).
        say : callable, optional
            Receives the step lines.
        **options
            Fields of :class:`~brainlrp.configs.BenchmarkConfig` (``n``, ``methods``,
            ``disease_model``, ...).

        Returns
        -------
        brainlrp.benchmark.BenchmarkResult
            ``table`` (the test plants' ranking), ``recommended``, ``response``.

        Examples
        --------
        Not run by the doctests (it plants, explains and analyses two cohorts: 6-20 s even
        with one control each; ``tests/test_benchmark.py`` runs it):

        >>> result = bl.Run(run_dir).benchmark(n=1, methods=["lrp-b0", "edges"],
        ...                                    min_response=-1)  # doctest: +SKIP
        >>> sorted(result.table["method"])  # doctest: +SKIP
        ['edges', 'lrp-b0']
        """
        from brainlrp.benchmark import benchmark

        config = with_options(config, BenchmarkConfig, options, "benchmark")
        say = say or (print if progress else _silent)
        return benchmark(self.dir.root, config, progress=progress, say=say)


def open_run(path: str | os.PathLike | Run) -> Run:
    """The run at ``path`` (:class:`Run`).

    Examples
    --------
    >>> bl.open_run(run_dir).path == bl.Run(run_dir).path
    True
    """
    return Run(path)


# ---------------------------------------------------------------------- explanations


@dataclass(frozen=True, eq=False)
class Explanation:
    """What :func:`explain_tensor` returns.

    Attributes
    ----------
    method : str
        The catalog name explained, with its reference (``lrp-ref@knn``; a reference
        method given a tensor or image keeps its bare name, a NIfTI file adds its stem).
    relevance : torch.Tensor
        The heatmap, shaped like the (batched) input, float32.
    probabilities : torch.Tensor
        ``(batch, n_classes)`` softmax of the model at the input.
    target : torch.Tensor
        ``(batch,)`` the class explained per scan.
    reference : torch.Tensor or None
        What a reference method explained against, ``(batch, 1, X, Y, Z)``.
    explained : torch.Tensor or None
        LRP methods: ``(batch,)`` the quantity relevance starts from: the target's
        probability (or logit), with a reference its difference ``f(x) - f(ref)``.
    gap : torch.Tensor or None
        LRP methods: ``(batch,)`` float64 ``relevance.sum() - explained`` per scan, as
        Captum's ``return_convergence_delta``; near zero where ``conserves``, otherwise
        what the rules absorb by design (epsilon, z+, biases). ``None`` for the others.
    conserves : bool
        Whether the LRP composite conserves relevance on this network (so the engine
        checked the gap).
    affine : numpy.ndarray or None
        The grid's affine when a run was given (for :meth:`to_nifti`).

    Examples
    --------
    >>> run = bl.Run(run_dir)
    >>> result = run.explain_tensor(run.inputs(run.scan_ids()[:2]), "lrp-b0")
    >>> result.method, tuple(result.target.tolist()), tuple(result.p_target.shape)
    ('lrp-b0', (1, 1), (2,))
    >>> bool((result.totals - result.explained - result.gap).abs().max() < 1e-9)
    True
    """

    method: str
    relevance: Any
    probabilities: Any
    target: Any
    reference: Any = None
    explained: Any = None
    gap: Any = None
    conserves: bool = False
    affine: Any = None

    @property
    def totals(self) -> torch.Tensor:
        """``(batch,)`` each scan's relevance summed (float64)."""
        return self.relevance.double().sum(tuple(range(1, self.relevance.ndim)))

    @property
    def p_target(self) -> torch.Tensor:
        """``(batch,)`` the probability of the class explained."""
        rows = np.arange(self.probabilities.shape[0])
        return self.probabilities[rows, self.target.cpu().numpy()]

    def to_nifti(self, index: int = 0, affine=None) -> nib.Nifti1Image:
        """Scan ``index``'s heatmap as a NIfTI image (float32).

        Parameters
        ----------
        index : int
        affine : array-like, optional
            ``(4, 4)``; default: the run's grid (:attr:`affine`).

        Examples
        --------
        >>> import numpy as np
        >>> run = bl.Run(run_dir)
        >>> result = run.explain_tensor(run.inputs(run.scan_ids()[:2]), "gradient")
        >>> result.to_nifti(1).shape == run.card.grid.shape
        True
        >>> np.allclose(result.to_nifti(1).affine, run.card.grid.affine_array)
        True
        """
        import nibabel as nib

        affine = self.affine if affine is None else affine
        if affine is None:
            raise BrainLRPError("this explanation has no grid to place it in MNI space",
                                "pass affine=<4 x 4 array> or explain with run=<a run>")
        data = self.relevance[index, 0].detach().cpu().numpy().astype(np.float32)
        return nib.Nifti1Image(data, np.asarray(affine, dtype=float))


def explain_tensor(model: nn.Module, x, method: str | None = None, *,
                   target: int | str | Sequence[int] | torch.Tensor = "AD", reference=None,
                   run: Run | str | os.PathLike | None = None, controls=None,
                   scan_ids: Sequence[str] | None = None,
                   classes: Sequence[str] | None = None, **options) -> Explanation:
    """Explain ``model``'s decision for ``target`` on the scans ``x`` with one method.

    Parameters
    ----------
    model : torch.nn.Module
        Any classifier returning ``(batch, n_classes)`` logits; it is not changed.
    x : torch.Tensor or numpy.ndarray
        ``(X, Y, Z)`` one scan, ``(n, X, Y, Z)`` or ``(n, 1, X, Y, Z)`` scans, as the
        model takes them (brainlrp's models: preprocessed to [0, 1] on the model grid).
    method : str, optional
        A catalog name (:func:`method_table`; ``lrp-b<beta>``; ``<method>@<reference>``).
        Default: the run's recommended method, without a run the catalog's default.
    target : int, str, sequence of int or Tensor
        The class explained: a class name (``"AD"``; ``classes`` says the order) or an
        output index, for all scans or one per scan.
    reference : str, Tensor, ndarray, nibabel image or path-like, optional
        What a reference method (``lrp-ref``, ``ig-ref``, ``occlusion-ref``, ``diff``)
        explains against:

        * a kind (``mean``, ``knn``, ``pca``, ``twin``, ``rescan``, each also with
          ``-restore``; or in the method's name, ``lrp-ref@knn``): built from the
          ``controls`` given, else from the run's training controls; default
          :data:`brainlrp.catalog.DEFAULT_REFERENCE`. ``twin``/``rescan`` need a
          simulated run and ``scan_ids``;
        * a tensor or array, ``(X, Y, Z)`` or ``(1 or n, 1, X, Y, Z)``: used as is;
        * a NIfTI file or nibabel image: with a run a T1 scan preprocessed like the
          run's scans, without one used as is (on ``x``'s grid).

        Methods that explain against their own baseline refuse one.
    run : Run or path-like, optional
        Supplies the class order, the grid's affine (:meth:`Explanation.to_nifti`), the
        training controls for reference kinds, the atlas areas of ``occlusion-ref`` and
        the input range of the box rule.
    controls : Tensor or ndarray, optional
        Healthy scans on ``x``'s grid, ``(m, X, Y, Z)`` or ``(m, 1, X, Y, Z)``, to build
        a reference kind from instead of the run's (the brain is where any control is
        non-zero).
    scan_ids : sequence of str, optional
        The run's ids of the scans in ``x`` (needed by ``twin`` and ``rescan``).
    classes : sequence of str, optional
        Class names by output index; default the run's, else ``("HC", "AD")``.
    **options
        Options of the method (:func:`brainlrp.explain.explain`): ``start="logit"``,
        ``epsilon``, ``steps``, ``n_samples``, ...

    Returns
    -------
    Explanation
        ``relevance``, ``probabilities``, ``target``, and for LRP the explained
        quantity and the conservation ``gap``.

    Raises
    ------
    BrainLRPError
        An unknown method, class or option; a reference the method cannot take or
        that cannot be built (a kind without controls or run); a malformed input.

    Examples
    --------
    >>> import torch
    >>> import brainlrp as bl
    >>> from brainlrp.models import build_model
    >>> _ = torch.manual_seed(0)
    >>> model = build_model("tiny", (16, 20, 18))
    >>> scans = torch.rand(2, 1, 16, 20, 18)

    The paper's LRP (beta = 0), and LRP against a reference (DeepLIFT's rescale rule:
    relevance sums to p(AD | scan) - p(AD | reference), the gap is rounding):

    >>> bl.explain_tensor(model, scans, "lrp-b0", target="AD").relevance.shape
    torch.Size([2, 1, 16, 20, 18])
    >>> healthy = torch.rand(1, 1, 16, 20, 18)
    >>> result = bl.explain_tensor(model, scans, "lrp-ref", reference=healthy)
    >>> result.conserves, bool(result.gap.abs().max() < 1e-4)
    (True, True)
    >>> torch.allclose(result.totals, result.explained.double(), atol=1e-4)
    True

    A reference kind built from healthy scans held in memory:

    >>> controls = torch.rand(6, 1, 16, 20, 18)
    >>> bl.explain_tensor(model, scans, "lrp-ref@knn-restore", controls=controls).method
    'lrp-ref@knn-restore'

    What cannot work is refused with its fix:

    >>> bl.explain_tensor(model, scans, "lrp-ref@knn")
    Traceback (most recent call last):
    ...
    brainlrp.errors.BrainLRPError: the nearest controls reference ('knn') is built from ...
    >>> bl.explain_tensor(model, scans, "gradient", reference=healthy)
    Traceback (most recent call last):
    ...
    brainlrp.errors.BrainLRPError: method 'gradient' explains against its own baseline ...
    """
    run = None if run is None else Run(run)
    x = _as_batch(x, "x")
    name = method or (run.recommended_method if run is not None
                      else catalog.default_methods()[0])
    spec = _method(name)
    calls = None
    if run is not None:
        from brainlrp.explain.call import MethodCalls

        calls = MethodCalls.of_card(run.dir, run.card)
    name, ref = _method_and_reference(spec.info, x, reference, run, calls, controls,
                                      scan_ids)
    opts = (calls.method_kwargs(name) if calls is not None else {}) | options
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise BrainLRPError(
            f"method {spec.name!r} takes no option {', '.join(map(repr, unknown))}",
            f"it takes: {', '.join(spec.options)}")
    tgt = _target_index(target, classes if classes is not None
                        else run.card.classes if run is not None else None)
    affine = run.card.grid.affine_array if run is not None else None
    return _explain(model, x, name, spec, tgt, ref, opts, affine)


def _method(name: str):
    """The method ``name`` with its runner (unknown names listed with the known ones)."""
    from brainlrp.explain.methods import get_method

    return get_method(name)


def _explain(model, x, name: str, spec, target, reference, options: dict,
             affine) -> Explanation:
    """Run the method: LRP through the engine (for its gap), the others through
    :func:`brainlrp.explain.explain`."""
    import torch

    from brainlrp.explain import explain

    device = next((p.device for p in model.parameters()), x.device)
    x = x.to(device)
    reference = None if reference is None else reference.to(device)
    info = spec.info
    if info.is_lrp:
        from brainlrp.explain.lrp import lrp

        result = lrp(model, x, info.composite, target=target, reference=reference,
                     **dict(info.params), **options)
        return Explanation(name, result.relevance.float(), result.probabilities,
                           result.target, reference, result.explained, result.gap,
                           result.conserves, affine)
    heat, probabilities = explain(model, x, name, target=target, reference=reference,
                                  return_probabilities=True, **options)
    target = torch.as_tensor(target, device=heat.device).long()
    if target.ndim == 0:
        target = target.repeat(len(x))
    return Explanation(name, heat, probabilities, target, reference, affine=affine)


def _as_batch(value, what: str) -> torch.Tensor:
    """A float32 tensor ``(n, 1, X, Y, Z)`` from ``(X, Y, Z)``, ``(n, X, Y, Z)`` or
    ``(n, 1, X, Y, Z)``."""
    import torch

    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(
        np.ascontiguousarray(np.asarray(value, dtype=np.float32)))
    if tensor.ndim == 3:
        tensor = tensor[None, None]
    elif tensor.ndim == 4:
        tensor = tensor[:, None]
    if tensor.ndim != 5:
        raise BrainLRPError(f"{what} has shape {tuple(tensor.shape)}",
                            "give (X, Y, Z), (n, X, Y, Z) or (n, 1, X, Y, Z)")
    return tensor.float()


def _target_index(target, classes: Sequence[str] | None):
    """An output index for a class name (``"AD"``); other targets unchanged."""
    if not isinstance(target, str):
        return target
    from brainlrp.data.cohort import CLASS_NAMES

    names = list(classes if classes is not None else CLASS_NAMES)
    if target not in names:
        raise BrainLRPError(f"the model has no class {target!r}; its classes are "
                            f"{', '.join(names)}", "pass target=<one of them> or an output "
                            "index, or classes=<the model's class names in output order>")
    return names.index(target)


def _method_and_reference(info, x, reference, run: Run | None, calls, controls,
                          scan_ids) -> tuple[str, Any]:
    """The full method name and the reference tensor it explains against (``None`` for
    a method without one)."""
    from brainlrp.data.reference import REFERENCE_KINDS, reference_name

    if not info.needs_reference:
        if reference is not None:
            raise BrainLRPError(
                f"method {info.name!r} explains against its own baseline and takes no "
                "reference", "leave reference out, or use a reference method, e.g. "
                f"{catalog.default_methods()[0]}")
        return info.name, None
    given = reference if isinstance(reference, str) and reference in REFERENCE_KINDS else None
    if reference is None:
        given = info.reference or catalog.DEFAULT_REFERENCE
    elif info.reference is not None:
        raise BrainLRPError(f"method {info.name!r} names its reference already, and "
                            "reference= gives another",
                            f"name it once: {info.base_name} with reference=..., or "
                            f"{info.name} alone")
    if given is not None:
        name = catalog.with_reference(info.name, given)
        return name, _kind_reference(name, given, x, run, calls, controls, scan_ids)
    image = _reference_image(reference, x, run)
    if isinstance(reference, (str, os.PathLike)):
        return catalog.with_reference(info.name, reference_name(str(reference))), image
    return info.name, image


def _kind_reference(name: str, kind: str, x, run: Run | None, calls, controls, scan_ids):
    """The reference ``kind`` of the scans ``x``: from ``controls`` held in memory, else
    from the run's training controls."""
    import torch

    from brainlrp.data.reference import RESTORE

    base = kind[: -len(RESTORE)] if kind.endswith(RESTORE) else kind
    label = catalog.REFERENCE_LABELS.get(base, base)
    if base in catalog.TWIN_REFERENCES:
        if run is None or scan_ids is None:
            raise BrainLRPError(f"the {label} reference ({base!r}) exists only for the scans "
                                "of a simulated run", "pass run=<the run> and scan_ids=<the "
                                "run's ids of the scans in x>, or another reference")
    elif controls is not None:
        return torch.from_numpy(TensorControls(controls, tuple(x.shape[2:])).get(
            kind, x.detach().cpu().numpy()))
    if run is None:
        raise BrainLRPError(f"the {label} reference ({base!r}) is built from training "
                            "controls, and none were given",
                            "pass run=<a run> or controls=<healthy scans on x's grid>, or "
                            "reference=<a tensor or NIfTI image>")
    ids = list(scan_ids) if scan_ids is not None else [""] * len(x)
    if len(ids) != len(x):
        raise BrainLRPError(f"{len(ids)} scan_ids for {len(x)} scans", "give one id per scan")
    return calls.reference(name, x, ids).cpu()


def _reference_image(reference, x, run: Run | None):
    """A reference given as a tensor, array, nibabel image or NIfTI file, as a tensor
    ``(1 or n, 1, X, Y, Z)`` (an image preprocessed like the run's scans)."""
    import nibabel as nib

    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference)
        if not path.is_file():
            from brainlrp.data.reference import REFERENCE_KINDS

            raise BrainLRPError(f"reference image not found: {path}",
                                f"use one of {', '.join(REFERENCE_KINDS)}, a tensor or an "
                                "existing NIfTI file")
        if run is None:
            reference = nib.load(str(path))
        else:
            from brainlrp.data.nifti import load_scan

            reference = load_scan(path)
    if isinstance(reference, nib.spatialimages.SpatialImage):
        if run is None:
            data = np.asarray(reference.dataobj, dtype=np.float32)
        else:
            from brainlrp.data.preprocess import preprocess_image

            data = preprocess_image(nib.as_closest_canonical(reference), run.card.prep)
        reference = data
    ref = _as_batch(reference, "reference")
    if ref.shape[2:] != x.shape[2:]:
        raise BrainLRPError(f"the reference's grid {tuple(ref.shape[2:])} is not the scans' "
                            f"{tuple(x.shape[2:])}", "give a reference on the scans' grid "
                            "(or a NIfTI file with run=..., which is preprocessed onto it)")
    return ref


class TensorControls:
    """Healthy scans held in memory, fitted by the reference kinds of
    :mod:`brainlrp.data.reference` as they fit a run's training controls.

    Parameters
    ----------
    controls : Tensor or ndarray
        ``(m, X, Y, Z)`` or ``(m, 1, X, Y, Z)`` scans as the model sees them.
    shape : tuple of int
        The scans' grid, which the controls must share.

    Attributes
    ----------
    arrays : numpy.ndarray
        ``(m, X, Y, Z)`` float32.
    brain : numpy.ndarray
        Where any control is non-zero (a masked scan is zero outside the brain).

    Examples
    --------
    >>> import numpy as np
    >>> controls = TensorControls(np.ones((3, 4, 5, 6)), (4, 5, 6))
    >>> controls.get("mean-restore", np.zeros((2, 1, 4, 5, 6))).shape
    (2, 1, 4, 5, 6)
    """

    def __init__(self, controls, shape: tuple[int, ...]):
        arrays = np.asarray(controls.detach().cpu() if hasattr(controls, "detach")
                            else controls, dtype=np.float32)
        if arrays.ndim == 5 and arrays.shape[1] == 1:
            arrays = arrays[:, 0]
        if arrays.ndim != 4 or arrays.shape[1:] != tuple(shape) or not len(arrays):
            raise BrainLRPError(f"controls of shape {arrays.shape} do not fit scans on a "
                                f"{tuple(shape)} grid", "give (m, X, Y, Z) or "
                                "(m, 1, X, Y, Z) healthy scans on the scans' grid")
        self.arrays = arrays
        self.brain = (arrays != 0).any(axis=0)
        self._fitted: dict = {}

    def mean(self) -> np.ndarray:
        """The voxel-wise mean control."""
        return self.arrays.mean(axis=0)

    def control_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """The controls' brain voxels ``(m, n_voxels)`` and their squared norms."""
        data = self.arrays[:, self.brain]
        return data, np.einsum("ij,ij->i", data, data, dtype=np.float64)

    def knn(self, x: np.ndarray, k: int) -> np.ndarray:
        """The mean of the ``k`` controls closest to ``x`` inside the brain."""
        data, norms = self.control_matrix()
        dist = norms - 2.0 * (data @ np.asarray(x, np.float32)[self.brain]).astype(np.float64)
        nearest = np.argsort(dist, kind="stable")[: max(1, min(k, len(data)))]
        return self.arrays[nearest].mean(axis=0)

    def get(self, kind: str, x: np.ndarray) -> np.ndarray:
        """References ``(n, 1, X, Y, Z)`` of the scans ``x`` ``(n, 1, X, Y, Z)``."""
        from brainlrp.data.reference import RESTORE, reference_estimator

        x = np.asarray(x, dtype=np.float32)
        if kind.endswith(RESTORE):
            reference = self.get(kind[: -len(RESTORE)], x)
            return np.where(self.brain, np.maximum(x, reference), x)
        if kind not in self._fitted:
            self._fitted[kind] = reference_estimator(kind).fit(self)
        return self._fitted[kind].build([""] * len(x), x)[:, None].astype(np.float32)


def method_table() -> pd.DataFrame:
    """The catalog's listed methods, in table order: ``method``, ``label``, ``family``,
    ``explains`` (what the map adds up to), ``needs_reference``, ``relevance`` (the sign
    the analyses keep), ``default`` (computed by ``explain`` without ``methods``) and
    ``description``. Parametrised names (``lrp-b<beta>``, ``<method>@<reference>``)
    are accepted too (:func:`brainlrp.catalog.family_examples`).

    Examples
    --------
    >>> table = bl.method_table()
    >>> table.loc[table["default"], "method"].tolist()
    ['lrp-b0', 'lrp-ref@knn-restore']
    """
    import pandas as pd

    names = catalog.ordered(catalog.listed() + catalog.default_methods())
    rows = [{"method": i.name, "label": i.label, "family": i.family,
             "explains": i.explained_quantity, "needs_reference": i.needs_reference,
             "relevance": i.relevance, "default": i.name in catalog.default_methods(),
             "description": i.description} for i in map(catalog.lookup, names)]
    return pd.DataFrame(rows)


__all__ = ["AnalysisConfig", "BenchmarkConfig", "ExplainConfig", "Explanation", "Run",
           "TensorControls", "TrainConfig", "explain_tensor", "import_model",
           "method_table", "open_run", "simulate", "simulate_cohort", "train"]
