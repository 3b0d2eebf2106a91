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
:mod:`.scans`             scan_areas (each scan's areas ranked), confusion, roc
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
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp._io import remove_temporaries, write_table
from brainlrp._progress import progress_bar
from brainlrp.analysis import groundtruth as gt
from brainlrp.analysis import inputs
from brainlrp.analysis.benchmark import (
    method_benchmark,
    read_planted,
    run_recommendation,
    with_planted,
)
from brainlrp.analysis.beta_overlap import beta_overlap
from brainlrp.analysis.checks import model_checks, model_context
from brainlrp.analysis.claims import CLAIMS_COLUMNS, claims
from brainlrp.analysis.costs import run_costs
from brainlrp.analysis.fingerprints import FINGERPRINT_COLUMNS, SIMILARITY_COLUMNS, fingerprints
from brainlrp.analysis.hippocampus import (
    HIPPOCAMPUS_COLUMNS,
    HIPPOCAMPUS_SUBJECT_COLUMNS,
    hippocampus,
    hippocampus_area,
)
from brainlrp.analysis.regions import AtlasRegions, MethodRegions, stream_method, write_groups
from brainlrp.analysis.scans import SCAN_AREAS_COLUMNS, classification, scan_areas
from brainlrp.analysis.summary import SUMMARY_KEYS, AnalysisSummary, MethodSummary, read_summary
from brainlrp.analysis.top_areas import TOP_AREAS_COLUMNS, top_areas
from brainlrp.analysis.totals import TOTALS_COLUMNS, relevance_totals
from brainlrp.analysis.twins import restoration_scores, run_twins
from brainlrp.configs import AnalysisConfig, with_options
from brainlrp.run import RunDir, inputs_key

#: Columns of the per-method analysis tables, by output name (``analysis/<name>.tsv``).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "fingerprints": FINGERPRINT_COLUMNS, "fingerprint_similarity": SIMILARITY_COLUMNS,
    "relevance_totals": TOTALS_COLUMNS, "hippocampus": HIPPOCAMPUS_COLUMNS,
    "hippocampus_subjects": HIPPOCAMPUS_SUBJECT_COLUMNS,
    "ground_truth": gt.GROUND_TRUTH_COLUMNS,
    "ground_truth_summary": gt.GROUND_TRUTH_SUMMARY_COLUMNS,
    "top_areas": TOP_AREAS_COLUMNS, "claims": CLAIMS_COLUMNS,
    "scan_areas": SCAN_AREAS_COLUMNS}
#: Tables every analysis writes, even empty.
ALWAYS_WRITTEN = ("fingerprints", "fingerprint_similarity", "relevance_totals", "top_areas",
                  "claims", "scan_areas")

#: Every file this stage may write under ``analysis/``; stale ones are removed.
ANALYSIS_FILES = ("summary.json", "summary.tsv", "fingerprints.tsv",
                  "fingerprint_similarity.tsv", "beta_overlap.tsv", "hippocampus.tsv",
                  "hippocampus_subjects.tsv", "relevance_totals.tsv", "ground_truth.tsv",
                  "ground_truth_summary.tsv", "faithfulness.tsv", "faithfulness_aopc.tsv",
                  "sanity.tsv", "top_areas.tsv", "claims.tsv", "twins.tsv",
                  "restoration.tsv", "method_benchmark.tsv", "scan_areas.tsv", "confusion.tsv",
                  "roc.tsv")


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
    config = with_options(config, AnalysisConfig, options, "analyze")
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
    done = _analyse_methods(rd, chosen, scans_of, atlas, modes, subjects, hip_area, truth,
                            config, progress, timings)
    needs_model = (config.faithfulness or config.sanity or config.costs
                   or (config.restoration and truth))
    ctx = (model_context(rd, notices, "faithfulness, sanity and restoration checks and "
                         "costs", model, inputs_fn, explain_fn) if needs_model else None)
    costs = None
    if ctx is not None:
        costs = _model_analyses(rd, ctx, done, atlas, modes, truth, cohort_root, predictions,
                                config, notices, progress, timings)
    # Claims read the finished summaries (fingerprints, totals) and the gain ranking.
    bacc = inputs.test_balanced_accuracy(rd)
    done.written["claims"] = _concat(
        [claims(m, done.summaries[m], _gain_ranking(done.results[m]), bacc) for m in chosen],
        CLAIMS_COLUMNS)
    done.written["confusion"], done.written["roc"] = classification(
        predictions, sorted(set().union(*(s["scan_id"] for s in scans_of.values()))))
    own = method_benchmark(done.summaries, costs.seconds if costs is not None else None)
    # Planted-truth scores of `brainlrp benchmark` join the table (a real cohort's only
    # ground truth); the run's recommendation is the one chosen without peeking.
    done.written["method_benchmark"] = with_planted(own, read_planted(rd.root))
    area_names = atlas.areas["region"].tolist()
    summary = AnalysisSummary(
        atlas=atlas.atlas_name, n_labels=atlas.n_labels, n_areas=atlas.n_areas,
        relevance=modes, top_k=config.top_k,
        threshold=config.threshold if truth else None, seed=config.seed,
        disease_model_top_areas=[area_names[i] for i in truth.disease_top] if truth else None,
        methods=done.summaries, notices=notices,
        recommended_method=run_recommendation(done.written["method_benchmark"]))
    outputs = _write(rd, done, summary)
    seconds = time.perf_counter() - start
    n_scans = {m: len(s) for m, s in scans_of.items()}
    _record(rd, atlas, chosen, modes, n_scans, config, seconds, timings, costs, notices, key)
    return AnalysisResult(run=rd.root, methods=chosen, n_scans=n_scans,
                          summary=summary.to_dict(), outputs=outputs, notices=notices,
                          seconds=seconds, timings=timings)


@dataclass
class _Analysed:
    """What the per-method pass produced, and the tables to write."""

    results: dict[str, MethodRegions]
    summaries: dict[str, MethodSummary]
    written: dict[str, pd.DataFrame]
    outputs: list[Path]


def _analyse_methods(rd: RunDir, chosen: list[str], scans_of, atlas: AtlasRegions,
                     modes: dict[str, str], subjects, hip_area, truth, config: AnalysisConfig,
                     progress: bool, timings: dict[str, float]) -> _Analysed:
    """One pass per method (:func:`_analyse_method`), then the analyses across methods
    that need no model (beta overlap)."""
    done = _Analysed({}, {}, {}, [])
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLE_COLUMNS}
    for method in chosen:
        tick = time.perf_counter()
        mr, done.summaries[method], frames = _analyse_method(
            rd, method, scans_of[method], atlas, modes[method], subjects, hip_area, truth,
            config, progress)
        done.outputs += [rd.regions / method / "subjects.tsv",
                         rd.regions / method / "groups.tsv", *mr.mean_images]
        done.results[method] = mr
        for name, frame in frames.items():
            tables[name].append(frame)
        timings[f"regions {method}"] = time.perf_counter() - tick
    # Tables of analyses that did not run this time are not written (and removed later).
    done.written = {name: _concat(frames, TABLE_COLUMNS[name])
                    for name, frames in tables.items() if frames or name in ALWAYS_WRITTEN}
    overlap = beta_overlap(done.results, atlas.areas["region"].tolist(), config.top_k)
    if overlap is not None:
        done.written["beta_overlap"] = overlap
    return done


def _model_analyses(rd: RunDir, ctx, done: _Analysed, atlas: AtlasRegions,
                    modes: dict[str, str], truth, cohort_root, predictions: pd.DataFrame,
                    config: AnalysisConfig, notices: list[str], progress: bool,
                    timings: dict[str, float]):
    """The analyses that run the model: faithfulness and randomisation checks, the twins'
    restoration importance and the costs (returned; ``None`` when not measured)."""
    if config.faithfulness or config.sanity:
        check_tables, parts = model_checks(
            done.results, atlas, atlas.grid, modes, notices, config, model=ctx.model,
            inputs_fn=ctx.inputs_fn, explain_fn=ctx.explain_fn, timings=timings,
            progress=progress, target=ctx.target)
        done.written.update(check_tables)
        done.summaries = {m: s.update(*parts[m]) for m, s in done.summaries.items()}
    if config.restoration and truth is not None:
        tick = time.perf_counter()
        twin = run_twins(rd, ctx, truth, cohort_root, predictions, atlas, config, notices,
                         progress)
        if twin is not None:
            done.written["twins"], done.written["restoration"] = twin.twins, twin.restoration
            scores = restoration_scores(rd, done.results, modes, atlas.grid, twin)
            done.summaries = {m: s.update(scores[m]) for m, s in done.summaries.items()}
        timings["restoration"] = time.perf_counter() - tick
    if not config.costs:
        return None
    tick = time.perf_counter()
    costs = run_costs(ctx, done.results, atlas.grid.shape, config, notices)
    timings["costs"] = time.perf_counter() - tick
    return costs


def _write(rd: RunDir, done: _Analysed, summary: AnalysisSummary) -> list[Path]:
    """Every table and summary.json (each atomically); analysis files of checks that did
    not run this time are removed. Returns the files written."""
    done.written["summary"] = pd.DataFrame(
        [{"method": m, **asdict(s)} for m, s in done.summaries.items()],
        columns=["method", *SUMMARY_KEYS])
    rd.analysis.mkdir(parents=True, exist_ok=True)
    outputs = list(done.outputs)
    for name, frame in done.written.items():
        path = rd.analysis / f"{name}.tsv"
        write_table(path, frame)
        outputs.append(path)
    outputs.append(summary.write(rd.analysis / "summary.json"))
    keep = {p.name for p in outputs if p.parent == rd.analysis}
    for name in ANALYSIS_FILES:
        if name not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.remove(rd.analysis / name)
    return outputs


def _record(rd: RunDir, atlas: AtlasRegions, chosen: list[str], modes: dict[str, str],
            n_scans: dict[str, int], config: AnalysisConfig, seconds: float,
            timings: dict[str, float], costs, notices: list[str], key: str | None) -> None:
    """The analyze record of run.json (with the inputs key a later call compares)."""
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


#: Bumped when a score's definition changes, so analyses made before are redone (2: the
#: restoration Spearman sums relevance over the restored, grown areas; 4: each scan's
#: ranked areas and the classification tables are analysis outputs).
SCORES_VERSION = 4


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
    for name in ("cohort", "atlas"):  # a file or folder is keyed by its real path
        value = config_options[name]
        if isinstance(value, (str, os.PathLike)) and Path(value).exists():
            config_options[name] = os.path.realpath(value)
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
    # Ranked from the table as written, so the report's rankings are the file's numbers.
    written = pd.read_csv(rd.regions / method / "subjects.tsv", sep="\t",
                          dtype={"participant_id": str, "scan_id": str})
    areas = mr.groups.loc[mr.groups["level"] == "area", "region"]
    frames["scan_areas"] = scan_areas(method, written, list(dict.fromkeys(areas)))
    return mr, summary, frames


def _gain_ranking(mr: MethodRegions) -> list[str]:
    """Areas by decreasing gain in the method's ranking group."""
    areas = mr.group_area_means(mr.ranking_group())
    return areas.sort_values("gain", ascending=False)["region"].tolist()


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)[list(columns)]


__all__ = ["ANALYSIS_FILES", "TABLE_COLUMNS", "AnalysisConfig", "AnalysisResult", "analyze"]
