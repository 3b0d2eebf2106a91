"""The ``analyze`` stage: decides which analyses run on a run's heatmaps, and writes them.

Orchestration only. The analyses live in their own modules and share one shape:
each takes a method's streamed region results (:class:`~brainlrp.analysis.regions.
MethodRegions`) or all of them, and returns its tables plus a typed part of the
method's summary (:mod:`brainlrp.analysis.summary`):

========================  ==========================================================
module                    tables (``analysis/<name>.tsv``)
========================  ==========================================================
:mod:`.regions`           ``regions/<method>/subjects|groups.tsv``, ``means/``
:mod:`.totals`            relevance_totals
:mod:`.fingerprints`      fingerprints, fingerprint_similarity
:mod:`.hippocampus`       hippocampus, hippocampus_subjects
:mod:`.groundtruth`       ground_truth, ground_truth_summary
:mod:`.top_areas`         top_areas
:mod:`.claims`            claims
:mod:`.beta_overlap`      beta_overlap (across methods)
:mod:`.checks`            faithfulness, faithfulness_aopc, sanity (need the model)
:mod:`.twins`             twins, restoration (healthy twins of a simulated cohort)
:mod:`.costs`             (each method's cost in input gradients, for the benchmark)
:mod:`.benchmark`         method_benchmark (every method ranked; the recommended one)
========================  ==========================================================

The output files and their columns are listed in :mod:`brainlrp.analysis`.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp._io import remove_temporaries, write_table
from brainlrp._progress import progress_bar
from brainlrp.analysis import groundtruth as gt
from brainlrp.analysis import inputs, metrics
from brainlrp.analysis.benchmark import (
    method_benchmark,
    read_planted,
    run_recommendation,
    with_planted,
)
from brainlrp.analysis.beta_overlap import beta_overlap
from brainlrp.analysis.checks import model_checks
from brainlrp.analysis.claims import CLAIMS_COLUMNS, claims
from brainlrp.analysis.fingerprints import FINGERPRINT_COLUMNS, SIMILARITY_COLUMNS, fingerprints
from brainlrp.analysis.hippocampus import (
    HIPPOCAMPUS_COLUMNS,
    HIPPOCAMPUS_SUBJECT_COLUMNS,
    hippocampus,
    hippocampus_area,
)
from brainlrp.analysis.regions import AtlasRegions, MethodRegions, stream_method, write_groups
from brainlrp.analysis.summary import SUMMARY_KEYS, AnalysisSummary, MethodSummary, read_summary
from brainlrp.analysis.top_areas import TOP_AREAS_COLUMNS, top_areas
from brainlrp.analysis.totals import TOTALS_COLUMNS, relevance_totals
from brainlrp.analysis.twins import restoration_spearman, twin_analysis, unused_change_share
from brainlrp.run import RunDir, inputs_key

#: Columns of the per-method analysis tables, by output name (``analysis/<name>.tsv``).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "fingerprints": FINGERPRINT_COLUMNS, "fingerprint_similarity": SIMILARITY_COLUMNS,
    "relevance_totals": TOTALS_COLUMNS, "hippocampus": HIPPOCAMPUS_COLUMNS,
    "hippocampus_subjects": HIPPOCAMPUS_SUBJECT_COLUMNS,
    "ground_truth": gt.GROUND_TRUTH_COLUMNS,
    "ground_truth_summary": gt.GROUND_TRUTH_SUMMARY_COLUMNS,
    "top_areas": TOP_AREAS_COLUMNS, "claims": CLAIMS_COLUMNS}
#: Tables every analysis writes, even empty.
ALWAYS_WRITTEN = ("fingerprints", "fingerprint_similarity", "relevance_totals", "top_areas",
                  "claims")

#: Every file this stage may write under ``analysis/``; stale ones are removed.
ANALYSIS_FILES = ("summary.json", "summary.tsv", "fingerprints.tsv",
                  "fingerprint_similarity.tsv", "beta_overlap.tsv", "hippocampus.tsv",
                  "hippocampus_subjects.tsv", "relevance_totals.tsv", "ground_truth.tsv",
                  "ground_truth_summary.tsv", "faithfulness.tsv", "faithfulness_aopc.tsv",
                  "sanity.tsv", "top_areas.tsv", "claims.tsv", "twins.tsv",
                  "restoration.tsv", "method_benchmark.tsv")


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
    threshold: float = gt.DEFAULT_THRESHOLD
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


@dataclass
class AnalysisResult:
    """What :func:`analyze` did.

    Attributes
    ----------
    run : Path
    methods : list of str
        Methods analysed, in contract order.
    n_scans : dict
        Scans analysed per method.
    summary : dict
        Contents of ``analysis/summary.json``.
    outputs : list of Path
        Files written.
    notices : list of str
        One-line notices (skipped analyses and why).
    seconds : float
    timings : dict
        Seconds per phase (setup, regions per method, faithfulness, sanity).
    skipped : bool
        The analysis was up to date: nothing was recomputed or written.
    """

    run: Path
    methods: list[str]
    n_scans: dict[str, int]
    summary: dict
    outputs: list[Path] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    skipped: bool = False


def analyze(run: str | os.PathLike, config: AnalysisConfig | None = None, *, model=None,
            inputs_fn: Callable[[list[str]], np.ndarray] | None = None, explain_fn=None,
            progress: bool = True, overwrite: bool = False, **options) -> AnalysisResult:
    """Measure a run's heatmaps per region, subject and group, and check them.

    Parameters
    ----------
    run : path-like
        Run directory with ``predictions.tsv``, ``model/card.json`` and ``heatmaps/``.
    config : AnalysisConfig, optional
        The options; ``**options`` (the same names) override it field by field.
    model : torch.nn.Module, optional
        The trained model; by default ``brainlrp.training.load_model(run)``.
    inputs_fn : callable, optional
        ``inputs_fn(scan_ids) -> (n, 1, X, Y, Z)`` preprocessed inputs; by default
        :func:`brainlrp.data.load_inputs`.
    explain_fn : callable, optional
        ``explain_fn(model, x, method) -> heatmap``; by default
        :func:`brainlrp.explain.explain`.
    progress : bool
    overwrite : bool
        Recompute even when the run's analysis is up to date: a call whose inputs
        (heatmaps, predictions, model, cohort tables and ground truth, options) are
        those of the last finished analysis returns its results without recomputing
        (``AnalysisResult.skipped``). Calls with a custom ``model``, ``inputs_fn`` or
        ``explain_fn`` always recompute.
    **options
        Fields of :class:`AnalysisConfig`.

    Returns
    -------
    AnalysisResult
    """
    config = _config(config, options)
    start = time.perf_counter()
    rd = RunDir.existing(run)
    notices: list[str] = []
    grid = inputs.model_grid(rd)
    predictions = inputs.read_predictions(rd)
    chosen = inputs.select_methods(inputs.discover_methods(rd), config.methods)
    modes = inputs.relevance_modes(chosen, config.relevance)
    subjects, cohort_root = inputs.cohort_tables(rd, config.cohort, notices)
    scans_of = {m: inputs.scans_with_heatmaps(rd, m, predictions, notices) for m in chosen}
    key = _inputs_key(rd, config, chosen, modes, scans_of, cohort_root,
                      custom=model is not None or inputs_fn is not None or explain_fn is not None)
    if not overwrite and key is not None and _up_to_date(rd, key, chosen):
        summary = read_summary(rd.analysis / "summary.json")
        return AnalysisResult(run=rd.root, methods=chosen,
                              n_scans={m: len(s) for m, s in scans_of.items()},
                              summary=summary.to_dict(), notices=list(summary.notices),
                              seconds=time.perf_counter() - start, skipped=True)
    atlas = AtlasRegions.fit(config.atlas, grid)
    area_names = atlas.areas["region"].tolist()
    if atlas.lost:
        notices.append(f"{len(atlas.lost)} label(s) of the atlas {atlas.atlas_name} vanish on "
                       f"the {grid.describe()} grid ({', '.join(atlas.lost[:3])}); they get no "
                       "region values")

    # Temporary files of a killed earlier analysis (every output is rewritten below).
    for folder in (rd.analysis, *(rd.regions / m for m in chosen), *(rd.means / m for m in chosen)):
        remove_temporaries(folder)

    hip_area = hippocampus_area(subjects, atlas, notices)
    truth = gt.prepare_truth(cohort_root, scans_of, atlas, config.threshold, config.top_k,
                             notices)

    timings: dict[str, float] = {"setup": time.perf_counter() - start}
    outputs: list[Path] = []
    results: dict[str, MethodRegions] = {}
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLE_COLUMNS}
    summaries: dict[str, MethodSummary] = {}
    for method in chosen:
        tick = time.perf_counter()
        mr, summaries[method], frames = _analyse_method(
            rd, method, scans_of[method], atlas, modes[method], subjects, hip_area, truth,
            config, progress)
        outputs += [rd.regions / method / "subjects.tsv", rd.regions / method / "groups.tsv",
                    *mr.mean_images]
        results[method] = mr
        for name, frame in frames.items():
            tables[name].append(frame)
        timings[f"regions {method}"] = time.perf_counter() - tick

    # Tables of analyses that did not run this time are not written (and removed below).
    written: dict[str, pd.DataFrame] = {
        name: _concat(frames, TABLE_COLUMNS[name]) for name, frames in tables.items()
        if frames or name in ALWAYS_WRITTEN}
    overlap = beta_overlap(results, area_names, config.top_k)
    if overlap is not None:
        written["beta_overlap"] = overlap
    needs_model = (config.faithfulness or config.sanity or config.costs
                   or (config.restoration and truth))
    ctx = (_model_context(rd, notices, "faithfulness, sanity and restoration checks and "
                          "costs", model, inputs_fn, explain_fn) if needs_model else None)
    if ctx is not None and (config.faithfulness or config.sanity):
        check_tables, parts = model_checks(
            results, atlas, atlas.grid, modes, notices, config, model=ctx.model,
            inputs_fn=ctx.inputs_fn, explain_fn=ctx.explain_fn, timings=timings,
            progress=progress, target=ctx.target)
        written.update(check_tables)
        summaries = {m: s.update(*parts[m]) for m, s in summaries.items()}
    if ctx is not None and config.restoration and truth is not None:
        tick = time.perf_counter()
        twin = _twins(rd, ctx, truth, cohort_root, predictions, atlas, config, notices,
                      progress)
        if twin is not None:
            written["twins"], written["restoration"] = twin.twins, twin.restoration
            for m, mr in results.items():
                ids = [s for s in mr.scans["scan_id"] if s in twin.importance]
                sums = _restored_sums(rd, m, ids, modes[m], atlas.grid, twin.areas)
                rho = restoration_spearman(sums, ids, twin.importance)
                rho = rho[np.isfinite(rho)]
                unused = unused_change_share(sums, ids, twin.importance, twin.changed or {})
                unused = unused[np.isfinite(unused)]
                summaries[m] = summaries[m].update(
                    {"gt_spearman_restoration": float(rho.mean()) if rho.size else None,
                     "gt_unused_change_share": float(unused.mean()) if unused.size else None})
        timings["restoration"] = time.perf_counter() - tick
    # Claims read the finished summaries (fingerprints, totals) and the gain ranking.
    bacc = inputs.test_balanced_accuracy(rd)
    written["claims"] = _concat([claims(m, summaries[m], _gain_ranking(results[m]), bacc)
                                 for m in chosen], CLAIMS_COLUMNS)

    costs = None
    if ctx is not None and config.costs:
        tick = time.perf_counter()
        costs = _costs(ctx, results, atlas.grid.shape, config, notices)
        timings["costs"] = time.perf_counter() - tick
    own = method_benchmark(summaries, costs.seconds if costs is not None else None)
    # Planted-truth scores of `brainlrp benchmark` join the table (a real cohort's only
    # ground truth); the run's recommendation is the one chosen without peeking.
    written["method_benchmark"] = with_planted(own, read_planted(rd.root))
    recommended = run_recommendation(written["method_benchmark"])
    summary = AnalysisSummary(
        atlas=atlas.atlas_name, n_labels=atlas.n_labels, n_areas=atlas.n_areas,
        relevance=modes, top_k=config.top_k,
        threshold=config.threshold if truth else None, seed=config.seed,
        disease_model_top_areas=[area_names[i] for i in truth.disease_top] if truth else None,
        methods=summaries, notices=notices,
        recommended_method=recommended)
    written["summary"] = pd.DataFrame([{"method": m, **asdict(s)} for m, s in summaries.items()],
                                      columns=["method", *SUMMARY_KEYS])
    rd.analysis.mkdir(parents=True, exist_ok=True)
    for name, frame in written.items():
        path = rd.analysis / f"{name}.tsv"
        write_table(path, frame)
        outputs.append(path)
    outputs.append(summary.write(rd.analysis / "summary.json"))
    keep = {p.name for p in outputs if p.parent == rd.analysis}
    for name in ANALYSIS_FILES:
        if name not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.remove(rd.analysis / name)
    seconds = time.perf_counter() - start
    n_scans = {m: len(s) for m, s in scans_of.items()}
    rd.record("analyze", {"atlas": atlas.atlas_name, "methods": chosen, "relevance": modes,
                          "n_scans": n_scans, "faithfulness": config.faithfulness,
                          "sanity": config.sanity, "seed": config.seed,
                          "seconds": round(seconds, 2),
                          "timings": {k: round(v, 2) for k, v in timings.items()},
                          "costs": None if costs is None else {
                              "scans": costs.scan_ids, "repeats": costs.repeats,
                              "clock": costs.clock,
                              "seconds_per_scan": {m: round(v, 4)
                                                   for m, v in costs.seconds.items()}},
                          "notices": notices, "inputs_key": key})
    return AnalysisResult(run=rd.root, methods=chosen, n_scans=n_scans,
                          summary=summary.to_dict(), outputs=outputs, notices=notices,
                          seconds=seconds, timings=timings)


#: Bumped when a score's definition changes, so analyses made before are redone (2: the
#: restoration Spearman sums relevance over the restored, grown areas).
SCORES_VERSION = 3


def _inputs_key(rd: RunDir, config: AnalysisConfig, chosen: list[str], modes: dict[str, str],
                scans_of: dict[str, pd.DataFrame], cohort_root: Path | None,
                custom: bool) -> str | None:
    """The key of everything the analysis reads (``None``: never reuse)."""
    if custom:
        return None
    from brainlrp import __version__

    files = [rd.predictions, rd.card, rd.checkpoint, rd.metrics]
    for m in sorted(chosen):
        files += [rd.heatmap(m, sid) for sid in scans_of[m]["scan_id"]]
    if cohort_root is not None:
        files += sorted(p for p in Path(cohort_root).glob("*") if p.is_file())
        truth = gt.ground_truth_dir(cohort_root)
        if truth.is_dir():
            files += sorted(p for p in truth.rglob("*") if p.is_file())
    explain_options = rd.stage_record("explain").get("method_options") or {}
    # What is analysed, not how it was asked for: the resolved methods, sorted, stand
    # for the requested list (``None``, or any order), so `brainlrp analyze RUN` after
    # the demo's call with its own list is up to date. The seconds explain measured are
    # not read (analyze times the methods itself).
    config_options = asdict(config)
    config_options.pop("methods")
    methods = sorted(chosen)
    options = {"version": __version__, "scores": SCORES_VERSION, "config": config_options,
               "methods": methods, "modes": {m: modes[m] for m in methods},
               "explain_options": {m: explain_options.get(m) for m in methods}}
    return inputs_key(files, options)


def _up_to_date(rd: RunDir, key: str, chosen: list[str]) -> bool:
    """Whether the last finished analysis had these inputs and all its files are there."""
    record = rd.stage_record("analyze")
    if record.get("inputs_key") != key or not (rd.analysis / "summary.json").is_file():
        return False
    return all((rd.regions / m / name).is_file() for m in chosen
               for name in ("subjects.tsv", "groups.tsv"))


def _config(config: AnalysisConfig | None, options: dict) -> AnalysisConfig:
    from dataclasses import fields, replace

    known = {f.name for f in fields(AnalysisConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"analyze() got unexpected option(s) {', '.join(unknown)}")
    return replace(config or AnalysisConfig(), **options)


def _analyse_method(rd: RunDir, method: str, scans: pd.DataFrame, atlas: AtlasRegions,
                    mode: str, subjects: pd.DataFrame | None, hip_area: int | None,
                    truth: gt.Truth | None, config: AnalysisConfig, progress: bool
                    ) -> tuple[MethodRegions, MethodSummary, dict[str, pd.DataFrame]]:
    """One streaming pass over a method's heatmaps, then its per-method analyses.

    Returns the region results, the method's summary and its rows of the analysis
    tables (keyed like :data:`TABLE_COLUMNS`).
    """
    paths = [rd.heatmap(method, s) for s in scans["scan_id"]]
    scorer = truth.scorer() if truth else None
    with progress_bar(len(paths), f"analyze {method}", progress) as advance:
        mr = stream_method(method, paths, scans, atlas, mode,
                           rd.regions / method / "subjects.tsv", rd.means / method,
                           batch_size=config.batch_size, on_batch=scorer, advance=advance)
    write_groups(rd.regions / method / "groups.tsv", mr.groups)
    summary = MethodSummary(relevance=mode, n_scans=len(scans),
                            n_ad=int(round(mr.weights["AD"].sum())),
                            n_hc=int(round(mr.weights["HC"].sum())))
    frames: dict[str, pd.DataFrame] = {}
    frames["relevance_totals"], part = relevance_totals(mr)
    summary = summary.update(part)
    frames["fingerprints"], frames["fingerprint_similarity"], part = fingerprints(mr, atlas)
    summary = summary.update(part)
    if hip_area is not None:
        frames["hippocampus"], frames["hippocampus_subjects"], part = hippocampus(
            mr, hip_area, subjects, config.n_permutations, config.seed)
        summary = summary.update(part)
    if truth:
        frames["ground_truth"], row, part = truth.finish(method, mr, scorer, atlas)
        frames["ground_truth_summary"] = pd.DataFrame([row])
        summary = summary.update(part)
    frames["top_areas"] = top_areas(mr)
    return mr, summary, frames


def _gain_ranking(mr: MethodRegions) -> list[str]:
    """Areas by decreasing gain in the method's ranking group."""
    areas = mr.group_area_means(mr.ranking_group())
    return areas.sort_values("gain", ascending=False)["region"].tolist()


def _costs(ctx: _ModelContext, results: dict[str, MethodRegions], shape: tuple[int, ...],
           config: AnalysisConfig, notices: list[str]):
    """Every method's cost on a seeded sample of AD test scans (``None`` without one)."""
    import torch

    from brainlrp.analysis.checks import check_sample, load_model_inputs
    from brainlrp.analysis.costs import measure_costs
    from brainlrp.errors import BrainLRPError

    ids = check_sample(results, config.cost_subjects, config.seed)
    if not ids:
        notices.append("no AD scan was explained by every method: costs not measured")
        return None
    x = torch.from_numpy(load_model_inputs(ctx.inputs_fn, ids, shape))
    model = copy.deepcopy(ctx.model).eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = x.to(device)
    explain_fn = (ctx.explain_fn.for_scans(ids) if hasattr(ctx.explain_fn, "for_scans")
                  else ctx.explain_fn)
    if device.type == "cuda":  # CPU time says nothing about a GPU's work: wall time
        def run_method(method):
            explain_fn(model, x, method)
            torch.cuda.synchronize(device)

        costs = measure_costs(run_method, results, n_scans=len(ids),
                              repeats=config.cost_repeats, clock=time.perf_counter,
                              threads=None, skip=(BrainLRPError,))
    else:  # one thread's CPU time: see brainlrp.analysis.costs
        costs = measure_costs(lambda method: explain_fn(model, x, method), results,
                              n_scans=len(ids), repeats=config.cost_repeats,
                              skip=(BrainLRPError,))
    for method, reason in costs.skipped.items():
        notices.append(f"{method}: cost not measured ({reason})")
    return replace(costs, scan_ids=list(ids))


@dataclass
class _ModelContext:
    """The run's model, its inputs and explainer (the caller's where given)."""

    model: object
    inputs_fn: Callable[[list[str]], np.ndarray]
    explain_fn: Callable | None
    #: AD's output index (the card's ``target_class``; an imported model may put AD first).
    target: int = 1


def _model_context(rd: RunDir, notices: list[str], what: str, model, inputs_fn,
                   explain_fn) -> _ModelContext | None:
    if model is None:
        if not rd.checkpoint.is_file():
            notices.append(f"no model checkpoint ({rd.checkpoint}): {what} skipped - run "
                           "`brainlrp train`")
            return None
        from brainlrp.training import load_model

        model, _card = load_model(rd.root)
    from brainlrp.card import read_card

    card = read_card(rd.root) if rd.card.is_file() or inputs_fn is None else None
    # AD's output index from the card: an imported model may put AD first.
    target = card.target_class if card is not None else 1
    if inputs_fn is None:
        from brainlrp.data import load_inputs

        prep = card.prep

        def inputs_fn(ids):
            return load_inputs(rd.root, ids, prep)
    if explain_fn is None:
        explain_fn = _RunExplainer(rd, target, card.prep if card is not None else None)
    return _ModelContext(model, inputs_fn, explain_fn, target)


class _RunExplainer:
    """``explain`` as the run's heatmaps were made: the recorded method options (e.g.
    fewer IG steps), the reference of ``<method>@<reference>`` methods and the grid's
    areas for region occlusion. :meth:`for_scans` binds the scans (a twin reference
    is per scan)."""

    def __init__(self, rd: RunDir, target: int, prep, scan_ids: list[str] | None = None):
        self.rd, self.target, self.prep, self.scan_ids = rd, target, prep, scan_ids
        self.options = rd.stage_record("explain").get("method_options") or {}
        self._references = None

    def for_scans(self, scan_ids: list[str]) -> _RunExplainer:
        """The same explainer for the scans of the batches it will see."""
        bound = copy.copy(self)
        bound.scan_ids = list(scan_ids)
        return bound

    def __call__(self, model, x, method):
        import torch

        from brainlrp import catalog
        from brainlrp.explain import explain, get_method

        opts = dict(self.options.get(method, {}))
        info = catalog.lookup(method)
        if "areas" in get_method(method).options and self.prep is not None:
            from brainlrp.explain.stage import area_codes

            opts.setdefault("areas", area_codes(self.prep.grid))
        if info.reference is not None:
            if self._references is None:
                from brainlrp.data.reference import References

                self._references = References(self.rd, self.prep)
            ref = self._references.get(info.reference, self.scan_ids or [],
                                       x.detach().cpu().numpy())
            opts["reference"] = torch.from_numpy(ref).to(x)
        return explain(model, x, method, target=self.target, **opts)


def _twins(rd: RunDir, ctx: _ModelContext, truth: gt.Truth | None, cohort_root: Path,
           predictions: pd.DataFrame, atlas: AtlasRegions, config: AnalysisConfig,
           notices: list[str], progress: bool):
    """The twin analysis over a seeded sample of AD test scans with a healthy twin."""
    import copy

    import torch

    from brainlrp._progress import progress_bar
    from brainlrp.analysis.checks import load_model_inputs
    from brainlrp.card import read_card
    from brainlrp.data.grid import brain_mask
    from brainlrp.data.preprocess import PreprocessCache
    from brainlrp.simulate.ground_truth import healthy_twin_path

    ad = predictions[(predictions["label"] == 1)]
    test = ad[ad["split"] == "test"]
    pool = test if len(test) else ad
    has = pool["participant_id"].map(lambda p: healthy_twin_path(cohort_root, p).is_file())
    pool = pool[has.to_numpy(bool)]
    if pool.empty:
        notices.append("no AD scan has a healthy twin (a cohort simulated before twins were "
                       "written?): restoration importance skipped - re-run `brainlrp "
                       "simulate` on the cohort to add them")
        return None
    if len(pool) > config.restoration_subjects:
        rng = np.random.default_rng(config.seed)
        pool = pool.iloc[np.sort(rng.choice(len(pool), config.restoration_subjects,
                                            replace=False))]
    prep = read_card(rd.root).prep
    cache = PreprocessCache()
    twin_of = dict(zip(pool["scan_id"], pool["participant_id"], strict=True))

    def twin_inputs(ids):
        paths = [cache.get(healthy_twin_path(cohort_root, twin_of[s]), prep) for s in ids]
        return np.stack([np.load(p)[None] for p in paths]).astype(np.float32)

    model = copy.deepcopy(ctx.model).eval()
    param = next(model.parameters(), None)

    def predict(x):
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if param is not None:
            t = t.to(device=param.device)
        with torch.no_grad():
            return torch.softmax(model(t), dim=1)[:, ctx.target].double().cpu().numpy()

    shape = atlas.grid.shape
    evidence_dir = rd.analysis / "evidence"
    evidence_dir.mkdir(parents=True, exist_ok=True)
    for old in evidence_dir.glob("*.nii.gz"):
        old.unlink()
    with progress_bar(len(pool), "restoration", progress) as advance:
        return twin_analysis(
            pool, lambda ids: load_model_inputs(ctx.inputs_fn, ids, shape), twin_inputs,
            predict, atlas.area_codes, atlas.areas["region"].tolist(), brain_mask(atlas.grid),
            truth.masks.mask if truth is not None else None, dilate=config.restoration_dilate,
            batch_size=min(config.batch_size, 4), evidence_dir=evidence_dir,
            affine=atlas.grid.affine_array, advance=advance)


def _restored_sums(rd: RunDir, method: str, scan_ids: list[str], mode: str, grid,
                   areas) -> np.ndarray:
    """The method's relevance (``mode`` applied) over each restored area of the scans."""
    from brainlrp.analysis.regions import read_heatmap
    from brainlrp.analysis.twins import restored_area_sums

    out = np.zeros((len(scan_ids), areas.shape[1]))
    for i, sid in enumerate(scan_ids):
        maps = read_heatmap(rd.heatmap(method, sid), grid)[None]
        metrics.apply_relevance(maps, mode, out=maps)
        out[i] = restored_area_sums(maps, areas)[0]
    return out


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)[list(columns)]


__all__ = ["ANALYSIS_FILES", "TABLE_COLUMNS", "AnalysisConfig", "AnalysisResult", "analyze"]
