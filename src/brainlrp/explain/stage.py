"""``brainlrp explain``: heatmaps for a run's scans, or for one new scan.

Heatmaps go to ``heatmaps/<method>/<scan_id>.nii.gz`` on the model grid with the
grid's MNI affine. Each file is written atomically and a scan whose heatmaps all
exist is skipped, so an interrupted run resumes where it stopped and two processes
on the same run never corrupt each other's files. Several GPUs or nodes go through
Lightning's prediction loop with DDP: every rank explains and writes its own share.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainlrp._io import TMP_PREFIX, save_nifti, write_json
from brainlrp._lightning import is_main_process
from brainlrp._progress import progress_bar
from brainlrp.card import ModelCard
from brainlrp.configs import ExplainConfig, with_options
from brainlrp.errors import BrainLRPError
from brainlrp.explain.call import MethodCalls, options_per_method, resolve_methods
from brainlrp.run import RunDir

SPLIT_CHOICES = ("test", "val", "train", "all")


@dataclass
class ExplainResult:
    """What :func:`explain_run` did.

    ``n_written`` counts the heatmaps this call wrote, over all its DDP ranks (a
    separate ``explain`` process on the same run counts its own); ``is_main`` is false
    on the other ranks, which print nothing.
    """

    run: Path
    methods: list[str]
    n_scans: int
    n_written: int
    n_skipped: int
    seconds: float
    notices: list[str] = field(default_factory=list)
    is_main: bool = True


def _select_scans(run: RunDir, split: str) -> pd.DataFrame:
    if split not in SPLIT_CHOICES:
        raise BrainLRPError(f"unknown split {split!r}", f"use one of {', '.join(SPLIT_CHOICES)}")
    path = run.require(run.predictions, "predictions.tsv",
                       "train a model first with `brainlrp train COHORT --out RUN`")
    pred = pd.read_csv(path, sep="\t", dtype={"participant_id": str, "scan_id": str})
    return pred if split == "all" else pred[pred["split"] == split]


def _pending(run: RunDir, scan_ids, methods, since: int | None = None) -> list[str]:
    from brainlrp.explain.loop import written

    return [s for s in scan_ids
            if not all(written(run.heatmap(m, s), since) for m in methods)]


def check_scan_grid(card: ModelCard, path, resample: bool) -> None:
    """Refuse a scan that training-time preprocessing would not have resampled.

    When every training scan already lay on the model grid, preprocessing never
    resampled; a scan on another grid would then be prepared differently from the
    training data, so it needs an explicit ``--resample``.
    """
    from brainlrp.data.nifti import on_grid, ras_geometry

    grid = card.grid
    if resample or not card.training_scans_on_grid:
        return
    if on_grid(path, grid):
        return
    try:
        shape = " x ".join(map(str, ras_geometry(path)[0]))
    except Exception:
        return  # unreadable files get load_scan's own message
    raise BrainLRPError(
        f"{path} is on a {shape} grid, not the model's {grid.describe()} grid that all "
        f"training scans were on", "pass --resample to resample it onto the model grid")


def _scan_arrays(run: RunDir, scan_ids, cohort, cache_dir, prep, card=None,
                 resample: bool = False) -> list[Path]:
    from brainlrp.data.prepare import run_scan_paths
    from brainlrp.data.preprocess import PreprocessCache

    paths = run_scan_paths(run, scan_ids, cohort)
    if card is not None:
        for path in paths:
            check_scan_grid(card, path, resample)
    cache = PreprocessCache(cache_dir)
    return [cache.get(path, prep) for path in paths]


def _remove_stale_temporaries(run: RunDir, methods, claims) -> None:
    """Delete half-written heatmaps of killed processes, once per call.

    A heatmap's temporary is written only under its scan's claim, so a temporary
    whose scan can be claimed now belongs to a process that died.
    """
    for method in methods:
        folder = run.heatmaps / method
        if not folder.is_dir():
            continue
        for tmp in folder.glob(TMP_PREFIX + "*"):
            scan_id = tmp.name[len(TMP_PREFIX):].split(".nii.gz-")[0]
            if claims.acquire(scan_id):
                try:
                    tmp.unlink(missing_ok=True)
                finally:
                    claims.release(scan_id)


def explain_run(run_dir: str | os.PathLike, config: ExplainConfig | None = None, *,
                progress: bool = True, **options) -> ExplainResult:
    """Explain a run's scans with each method; resume where a previous call stopped.

    Parameters
    ----------
    run_dir : path-like
        A trained run (``brainlrp train``).
    config : ExplainConfig, optional
        The options (:class:`brainlrp.configs.ExplainConfig`); ``**options`` (the same
        names) override it field by field, e.g. ``explain_run(run, methods="lrp-b0")``.
    progress : bool
    """
    import lightning.pytorch as pl

    from brainlrp._lightning import quiet_lightning
    from brainlrp.explain.loop import ArrayDataset, HeatmapWriter, ScanClaims
    from brainlrp.training.checkpoint import load_model

    c = with_options(config, ExplainConfig, options, "explain_run")
    run = RunDir.existing(run_dir)
    methods = resolve_methods(c.methods, c.reference)
    if c.batch_size < 1:
        raise BrainLRPError(f"--batch-size must be at least 1, got {c.batch_size}", "use 1-16")
    model, card = load_model(run)
    selected = _select_scans(run, c.split)
    if c.label is not None:
        selected = selected[selected["label"] == c.label]
    scan_ids = selected["scan_id"].tolist()
    # Maps written from now on are this call's (file times in ns); with --overwrite a
    # map counts as done only once this call wrote it.
    called = time.time_ns()
    since = called if c.overwrite else None
    _remove_stale_temporaries(run, methods, ScanClaims(run.heatmaps / ".claims"))
    todo = _pending(run, scan_ids, methods, since)
    start = time.perf_counter()
    written, timing = 0, {}
    if todo:
        arrays = _scan_arrays(run, todo, c.cohort, c.cache_dir, card.prep, card, c.resample)
        loader = torch.utils.data.DataLoader(ArrayDataset(arrays, todo),
                                             batch_size=c.batch_size, shuffle=False)
        # One process: our bar counts scans; under DDP each rank has its own share and
        # Lightning's bar (in batches) is shown instead.
        single = str(c.devices) == "1" and c.num_nodes == 1 and c.strategy == "auto"
        with progress_bar(len(todo), "explain", progress and single) as advance:
            # AD's output index comes from the card (an imported model may order AD first).
            calls = MethodCalls.of_card(run, card, options=c.options,
                                        method_options=c.method_options,
                                        reference=c.reference, cohort=c.cohort,
                                        cache_dir=c.cache_dir)
            module = HeatmapWriter(model, methods, run, card.prep.grid.affine_array, calls,
                                   advance, since=since)
            quiet_lightning()
            trainer = pl.Trainer(accelerator=c.accelerator, devices=c.devices,
                                 strategy=c.strategy, num_nodes=c.num_nodes, logger=False,
                                 inference_mode=False, enable_progress_bar=progress and not single,
                                 enable_model_summary=False, enable_checkpointing=False,
                                 default_root_dir=run.root)
            trainer.predict(module, loader, return_predictions=False)
            # Under DDP every rank writes its own scans; rank 0 counts the finished ones
            # only after all ranks are through.
            trainer.strategy.barrier("explain-done")
            # Every rank's maps: rank 0's own share is not what the call wrote.
            written = int(trainer.strategy.reduce(
                torch.tensor(float(module.written), device=trainer.strategy.root_device),
                reduce_op="sum").item())
        timing = module.timing
    seconds = time.perf_counter() - start
    if is_main_process():
        per_method = options_per_method(methods, c.method_options)
        _record(run, methods, c.split, scan_ids, called, seconds, c.batch_size,
                {m: (c.options or {}) | per_method[m] for m in methods}, timing)
    return ExplainResult(run=run.root, methods=methods, n_scans=len(scan_ids),
                         n_written=written, n_skipped=len(scan_ids) - len(todo),
                         seconds=seconds, is_main=is_main_process())


def _record(run: RunDir, methods: list[str], split: str, scan_ids: list[str], called: int,
            seconds: float, batch_size: int, options: dict[str, dict],
            timing: dict[str, list]) -> None:
    """Merge one call of :func:`explain_run` into run.json's explain record, per method.

    The record describes the heatmaps the run has, not the last call: ``methods`` lists
    every method explained so far (a call naming fewer keeps the others, in the
    catalog's order whatever order a call named them in); ``method_options`` holds the
    options each method's maps were made with (analyze's checks explain again with
    them), changed only for the methods whose maps this call wrote; ``seconds`` sums
    the calls that wrote maps. A call that wrote nothing and names no method the
    record lacks leaves run.json as it was, so ``brainlrp explain RUN`` after a
    finished run is a no-op that cannot replace the record of the call that did the
    work (and so cannot make analyze and report redo theirs).
    """
    from brainlrp import catalog
    from brainlrp.explain.loop import written

    recorded = run.stage_record("explain")
    # Maps written since this call began, by any rank or process (DDP ranks write their
    # own scans; the module's counts are this process's only).
    made = [m for m in methods if any(written(run.heatmap(m, s), called) for s in scan_ids)]
    used = dict(recorded.get("method_options") or {})
    for m in methods:
        if m in made or m not in used:
            used[m] = options[m]
    every = catalog.ordered([*(recorded.get("methods") or []), *methods])
    info = {"methods": every, "method_options": used}
    if made or "split" not in recorded:
        done = len(scan_ids) - len(_pending(run, scan_ids, every))
        info |= {"split": split, "n_scans": len(scan_ids), "complete": done,
                 "seconds": round(float(recorded.get("seconds") or 0) + seconds, 1)
                 if made else round(seconds, 1), "batch_size": batch_size}
    # Seconds per scan of each method while explaining (kept per method; for
    # information: the method benchmark's cost is measured by analyze, brainlrp.
    # analysis.costs, where other processes and first calls do not distort it).
    per_scan = dict(recorded.get("seconds_per_scan") or {})
    for m, (secs, n) in timing.items():
        if n:
            per_scan[m] = round(secs / n, 4)
    if per_scan:
        info["seconds_per_scan"] = per_scan
    if any(recorded.get(k) != v for k, v in info.items()):
        run.record("explain", info, merge=True)


@dataclass
class ScanExplanation:
    """Result of :func:`explain_scan`.

    Attributes
    ----------
    out : Path
    p_ad : float
    files : dict of str to Path
        Every file written, by name (``input``, each method, ``<method>-native``, ...).
    notices : list of str
    seconds : dict of str to float
        Time per step.
    """

    out: Path
    p_ad: float
    files: dict[str, Path]
    notices: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class _Steps:
    """Named steps of :func:`explain_scan`, each announced and timed through ``say``."""

    def __init__(self, say):
        self.say = say or (lambda text: None)
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, what: str):
        import contextlib

        @contextlib.contextmanager
        def step():
            self.say(f"{name}: {what}")
            tick = time.perf_counter()
            yield
            self.seconds[name] = time.perf_counter() - tick
            if self.seconds[name] >= 1:
                self.say(f"  {self.seconds[name]:.1f} s")
        return step()


def _read_scan(run: RunDir, card: ModelCard, scan, resample: bool, registering: bool):
    """The scan as a RAS+ image, validated before any advice about grids: a 4D file or a
    scan outside MNI space gets its own message first (``--register`` is the fix for the
    latter), and only a valid MNI-space scan on another grid is told to ``--resample``.
    A scan with its skull is refused for a model trained on brain-extracted scans unless
    it is registered (:mod:`brainlrp.data.brain`); a model whose preprocessing keeps the
    skull (no brain mask, e.g. ClinicaDL's t1-linear) takes it as it is."""
    from brainlrp.data.brain import has_skull, skull_fraction
    from brainlrp.data.grid import brain_mask
    from brainlrp.data.nifti import load_scan
    from brainlrp.data.preprocess import on_grid

    img = load_scan(scan, check_mni=not registering)
    if registering:
        return img
    check_scan_grid(card, scan, resample)
    grid = card.grid
    data = on_grid(img, grid)
    if card.prep.mask and has_skull(data, brain_mask(grid), grid.affine_array) and not (
            _trained_with_skull(run, card)):
        share = skull_fraction(data, brain_mask(grid), grid.affine_array)
        raise BrainLRPError(
            f"{scan} still has its skull (tissue in {share:.0%} of a shell around the "
            "brain) but the model was trained on brain-extracted scans, and the template's "
            "brain mask alone leaves dura and muscle where those had none",
            "pass --register (it fits the brain, not the head, to the template) or strip "
            "the skull first (e.g. FSL BET, HD-BET)")
    return img


def _trained_with_skull(run: RunDir, card: ModelCard, n: int = 5) -> bool:
    """Whether most of (up to ``n``) training scans of the run still have their skull
    (after a brain mask a pipeline wrote next to them); ``False`` when none can be read."""
    from brainlrp.data.brain import has_skull
    from brainlrp.data.cohort import load_cohort
    from brainlrp.data.grid import brain_mask
    from brainlrp.data.layouts import apply_sidecar_mask
    from brainlrp.data.nifti import load_scan
    from brainlrp.data.preprocess import on_grid

    try:
        splits = pd.read_csv(run.splits, sep="\t", dtype={"participant_id": str})
        scans = load_cohort(run.cohort_source(), allow_external_paths=True).scans
    except Exception:  # no split or cohort left: nothing to compare with
        return False
    train = set(splits.loc[splits["split"] == "train", "participant_id"])
    paths = [Path(p) for p in scans.loc[scans["participant_id"].isin(train), "path"]][:n]
    grid, votes = card.grid, []
    for path in paths:
        try:
            data = on_grid(apply_sidecar_mask(path, load_scan(path)), grid)
        except BrainLRPError:
            continue
        votes.append(has_skull(data, brain_mask(grid), grid.affine_array))
    return bool(votes) and sum(votes) > len(votes) / 2


def _intensity_check(run: RunDir, card: ModelCard, x: np.ndarray, cache_dir):
    """How the preprocessed scan's brain intensities compare with the training scans'
    (``None`` when the run has no profile and no cached training scan to make one)."""
    from brainlrp.data.grid import brain_mask
    from brainlrp.data.intensity import IntensityProfile

    mask = brain_mask(card.grid)
    profile = IntensityProfile.from_dict(card.preprocessing.get("intensity_profile"))
    if profile is None:  # a run trained before profiles: its cached training scans
        arrays = _cached_training_arrays(run, card, cache_dir)
        if not arrays:
            return None
        profile = IntensityProfile.fit(arrays, mask)
    return profile.check(x, mask)


def _cached_training_arrays(run: RunDir, card: ModelCard, cache_dir) -> list[Path]:
    """Cached arrays of the run's training scans (never preprocesses anything)."""
    from brainlrp.data.cohort import load_cohort
    from brainlrp.data.preprocess import PreprocessCache

    try:
        splits = pd.read_csv(run.splits, sep="\t", dtype={"participant_id": str})
        scans = load_cohort(run.cohort_source(), allow_external_paths=True).scans
    except Exception:  # no split or cohort left: nothing to compare with
        return []
    train = set(splits.loc[splits["split"] == "train", "participant_id"])
    cache = PreprocessCache(cache_dir)
    paths = [cache.array_path(Path(p), card.prep) for p in
             scans.loc[scans["participant_id"].isin(train), "path"] if Path(p).is_file()]
    return [p for p in paths if p.is_file()]


def explain_scan(run_dir: str | os.PathLike, scan: str | os.PathLike, out: str | os.PathLike,
                 methods=None, device: str = "cpu", options: dict | None = None,
                 overwrite: bool = False, resample: bool = False, register=None,
                 cache_dir: str | os.PathLike | None = None,
                 reference: str | None = None, say=None) -> ScanExplanation:
    """Explain one new scan, preprocessed exactly as in training (from the model card).

    Writes ``OUT/<method>.nii.gz`` per method, ``OUT/input.nii.gz`` (the scan as the
    model saw it) and ``OUT/prediction.json`` (AD probability and class, intensity QC).
    A scan is registered to the template when the model was trained on registered scans
    or ``register`` (a :class:`~brainlrp.data.register.Registration`) is given; then
    ``OUT/native/<method>.nii.gz`` holds each heatmap on the scan's own grid (relevance
    moved with its sum kept) and ``OUT/registration.png`` the registration check.

    Only the scan is registered: reference methods explain against references built
    from the run's training controls as the model saw them in training (the
    preprocessing cache), never registered again. Everything is written into a work
    folder next to ``OUT`` and moved into ``OUT`` at the end, so an interrupted call
    leaves ``OUT`` as it was (a later call removes the work folder).

    Parameters
    ----------
    methods : str or sequence of str, optional
        Default: the catalog's default methods.
    say : callable, optional
        Receives one line per step (the CLI prints them).
    """
    from brainlrp import catalog
    from brainlrp._io import publish_files, remove_stale_work_folders, work_folder
    from brainlrp.data.preprocess import preprocess_image
    from brainlrp.training.checkpoint import load_model

    methods = resolve_methods(methods or catalog.default_methods(), reference)
    out = Path(out)
    if (out / "prediction.json").exists() and not overwrite:
        raise BrainLRPError(f"{out} already holds an explanation",
                            "pass --overwrite or choose another --out")
    run = RunDir.existing(run_dir)
    # Every check of the input comes before the first step is announced, so bad input
    # gets its one line and nothing else.
    model, card = load_model(run, device=device)
    registering = register is not None or card.prep.registration is not None
    img = _read_scan(run, card, scan, resample, registering)
    steps = _Steps(say)
    steps.say(f"scan {scan}: {' x '.join(map(str, img.shape))} voxels; model "
              f"{card.architecture} on the {card.grid.describe()} grid")
    notices: list[str] = []
    remove_stale_work_folders(out.parent, out.name)
    with work_folder(out.parent, out.name) as work:
        prep, registered = card.prep, None
        if registering:
            prep, registered, img = _register_step(steps, scan, card, register, cache_dir,
                                                   out, notices)
        with steps("preprocess", f"onto the {prep.grid.describe()} grid, "
                                 f"{card.normalisation or prep.normalisation}"):
            array = preprocess_image(img, prep)
            check = _intensity_check(run, card, array, cache_dir)
            if check is not None and check.flagged:
                notices.append(f"{Path(scan).name}: {check.reason}; its p(AD) may not mean "
                               "what it means for the training scans")
        x = torch.from_numpy(array)[None, None].to(device)
        with torch.no_grad():
            p_ad = float(torch.softmax(model(x), dim=1)[0, card.target_class])
        steps.say(f"  AD probability {p_ad:.3f} ({'AD' if p_ad >= 0.5 else 'HC'})")
        save_nifti(work / "input.nii.gz", array, prep.grid.affine_array)
        _explain_step(steps, work, run, card, model, x, scan, methods, options, reference,
                      cache_dir, prep, registered)
        extra: dict = {} if check is None else {"intensity": check.to_dict()}
        if registered is not None:
            from brainlrp.explain import native as reg

            extra["registration"] = reg.registration_summary(registered)
            extra["native"] = {"values": reg.NATIVE_VALUES, "folder": "native/"}
            reg.qc_figure(work / "registration.png", registered,
                          f"r = {registered.correlation:.3f} with the template")
        write_json(work / "prediction.json", {
            "scan": str(scan), "p_ad": p_ad, "predicted": "AD" if p_ad >= 0.5 else "HC",
            "model": str(run.root.resolve()), "grid": prep.grid.to_dict(),
            "methods": methods, "seconds": {k: round(v, 2) for k, v in steps.seconds.items()}}
            | extra)
        written = publish_files(work, out, last="prediction.json")
    files = {_file_key(p.relative_to(out)): p for p in written}
    return ScanExplanation(out=out, p_ad=p_ad, files=files, notices=notices,
                           seconds=steps.seconds)


def _register_step(steps: _Steps, scan, card: ModelCard, register, cache_dir, out: Path,
                   notices: list[str]):
    """Register the scan to the template (cached): the preprocessing for the registered
    image, the registration and the registered image."""
    from brainlrp.explain import native as reg

    with steps("register", "N4 bias correction, rigid and affine registration to "
                           "the ICBM 2009c template with ANTsPy (about a minute at "
                           "2 mm; cached)"):
        prep, registered = reg.register_for_model(scan, card.prep, register, cache_dir)
    summary = reg.registration_summary(registered)
    steps.say(f"  correlation with the template {registered.correlation:.3f}"
              + (f" - {summary['reason']}" if summary["flagged"] else ""))
    if summary["flagged"]:
        notices.append(f"registration looks wrong ({summary['reason']}); check "
                       f"{out / 'registration.png'}")
    return prep, registered, registered.image()


def _explain_step(steps: _Steps, work: Path, run: RunDir, card: ModelCard, model, x, scan,
                  methods: list[str], options, reference, cache_dir, prep, registered) -> None:
    """Each method's heatmap on the model grid (and, registered, on the scan's own)."""
    from brainlrp import catalog
    from brainlrp.data.reference import CONTROL_KINDS, RESTORE

    # References come from the training controls as the model saw them: the model's own
    # preprocessing (card.prep), never the registration added for this scan.
    calls = MethodCalls.of_card(run, card, options=options, reference=reference,
                                cache_dir=cache_dir)
    kinds = {catalog.lookup(m).reference for m in methods} - {None}
    if {k.removesuffix(RESTORE) for k in kinds} & set(CONTROL_KINDS):
        missing = calls.references.uncached_controls()
        if missing:
            steps.say(f"references: {len(missing)} training controls are not in the "
                      "cache; preprocessing them as in training"
                      + (" (registration included)" if card.prep.registration else ""))
    for method in methods:
        with steps(method, "explaining"):
            heat = calls(model, x, method, [Path(scan).name])
            heat = heat[0, 0].detach().float().cpu().numpy()
            save_nifti(work / f"{method}.nii.gz", heat, prep.grid.affine_array,
                       description=f"brainlrp {method} AD relevance")
            if registered is not None:
                from brainlrp.explain import native as reg

                reg.write_native(work / "native" / f"{method}.nii.gz", registered, scan,
                                 heat, f"brainlrp {method} AD relevance")


def _file_key(relative: Path) -> str:
    """``lrp-b0.nii.gz`` -> ``lrp-b0``; ``native/lrp-b0.nii.gz`` -> ``lrp-b0-native``."""
    name = relative.name
    for suffix in (".nii.gz", ".json", ".png"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return f"{name}-native" if relative.parent.name == "native" else name
