"""``brainlrp train``: the paper's training on any cohort, on CPU or many GPUs.

The loop is Lightning's (early stopping, checkpoints, CSV logs, DDP over GPUs or
nodes). Only the main process (global rank 0) writes the run's files; the others
train and return.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainlrp._io import read_json, write_json, write_table
from brainlrp._lightning import global_rank, quiet_lightning
from brainlrp.card import ModelCard
from brainlrp.configs import TrainConfig
from brainlrp.data.cohort import CLASS_NAMES
from brainlrp.data.prepare import (
                                   PreparedCohort,
                                   prepare_cohort,
                                   record_registration,
                                   write_splits,
)
from brainlrp.data.register import Registration
from brainlrp.data.splits import read_splits
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir, library_versions
from brainlrp.training.checkpoint import read_checkpoint, save_checkpoint
from brainlrp.training.evaluate import classification_metrics, predict_proba, prediction_table

METRIC_KEYS = ("balanced_accuracy", "sensitivity", "specificity", "roc_auc", "accuracy")


@dataclass
class TrainResult:
    """What :func:`train` produced (on the main process)."""

    run: Path
    metrics: dict
    trials: list[dict]
    seconds: float
    selected_trial: int
    notices: list[str]
    is_main: bool = True


def _delayed_early_stopping(monitor: str, patience: int, start_epoch: int):
    from lightning.pytorch.callbacks import EarlyStopping

    class DelayedEarlyStopping(EarlyStopping):
        """Early stopping that ignores the first ``start_epoch`` epochs (the paper's rule)."""

        def _run_early_stopping_check(self, trainer):
            if trainer.current_epoch < start_epoch:
                return
            super()._run_early_stopping_check(trainer)

    return DelayedEarlyStopping(monitor=monitor, patience=patience, mode="min")


def _batch_seeder(seed: int):
    """Seed dropout from (seed, epoch, batch, rank) at every training step, so a resumed
    run draws the same masks as an uninterrupted one (data order and augmentation are
    seeded by :class:`~brainlrp.training.data.EpochSampler`)."""
    from lightning.pytorch.callbacks import Callback

    class BatchSeeder(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            key = ((seed * 1009 + trainer.current_epoch) * 100_003 + batch_idx) * 64
            torch.manual_seed(key + trainer.global_rank)

    return BatchSeeder()


LOG_COLUMNS = ("train_loss", "train_bacc", "val_loss", "val_bacc")


def _epoch_log(path: Path, trial: int, printing: bool):
    """Append each epoch's metrics to ``training_log.csv`` (and print a line).

    Rows of epochs a resumed run repeats are replaced, so the log of an interrupted
    and resumed run equals an uninterrupted run's.
    """
    from lightning.pytorch.callbacks import Callback

    class EpochLog(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if not trainer.is_global_zero:
                return
            epoch = trainer.current_epoch + 1
            m = trainer.callback_metrics
            row = {"trial": trial, "epoch": epoch}
            row |= {k: float(m[k]) for k in LOG_COLUMNS if k in m}
            old = pd.read_csv(path) if path.is_file() else pd.DataFrame()
            if not old.empty:
                old = old[(old["trial"] != trial) | (old["epoch"] < epoch)]
            write_table(path, pd.concat([old, pd.DataFrame([row])], ignore_index=True))
            if printing:
                parts = [f"trial {trial} epoch {epoch:3d}"]
                parts += [f"{k} {row[k]:.4f}" for k in ("train_loss", "val_loss", "val_bacc")
                          if k in row]
                print("  ".join(parts), flush=True)

    return EpochLog()


def _check_classes(prepared: PreparedCohort) -> None:
    counts = prepared.cohort.counts()
    missing = [name for name, n in counts.items() if n == 0]
    if missing:
        raise BrainLRPError(
            f"the cohort {prepared.cohort.source} has no {missing[0]} subjects "
            f"(only {', '.join(k for k in counts if counts[k])})",
            "training needs both HC and AD subjects")
    for split in ("train", "val"):
        labels = set(prepared.scans.loc[prepared.scans["split"] == split, "label"])
        if labels != {0, 1}:
            raise BrainLRPError(f"the {split} split lacks a class",
                                "add subjects or change --test/--val")


def _loader(prepared: PreparedCohort, split: str, config: TrainConfig, seed: int,
            train: bool):
    from torch.utils.data import DataLoader

    from brainlrp.training.data import EpochSampler, ScanDataset, paper_augmentation

    rows = prepared.scans[prepared.scans["split"] == split]
    transform = paper_augmentation(config.flip, config.shift) if train else None
    dataset = ScanDataset(rows["array"].tolist(), rows["label"].tolist(),
                          prepared.prep.grid.affine_array, transform, seed=seed)
    # Training data are sharded over DDP ranks by EpochSampler; every rank validates on
    # the whole validation split, so validation metrics are exact.
    sampler = EpochSampler(len(dataset), seed, shuffle=True) if train else None
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler,
                      num_workers=config.workers, persistent_workers=config.workers > 0,
                      drop_last=False)


def _fit_trial(prepared: PreparedCohort, config: TrainConfig, run: RunDir, trial: int,
               progress: bool) -> dict:
    import sys

    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from brainlrp.training.module import ADClassifier

    quiet_lightning()  # after the import: Lightning sets its loggers up when imported
    trial_dir = run.model_dir / "lightning" / f"trial-{trial}"
    done = trial_dir / "done.json"
    if done.is_file() and (trial_dir / "best.ckpt").is_file():
        # Finished before an interruption: fitting again from last.ckpt would run
        # extra epochs past an early stop.
        return read_json(done) | {"best_checkpoint": str(trial_dir / "best.ckpt"),
                                  "is_main": global_rank() == 0}
    seed = config.seed + trial
    pl.seed_everything(seed, workers=True, verbose=False)
    module = ADClassifier(config.arch, prepared.prep.grid.shape, lr=config.lr,
                          weight_decay=config.weight_decay, model_kwargs=config.model_kwargs)
    # Checkpoints are saved at the end of the training epoch, after the epoch's log row
    # (Lightning runs checkpoint callbacks last): a run killed at any moment resumes
    # from a checkpoint whose epochs are all in training_log.csv.
    best = ModelCheckpoint(dirpath=trial_dir, filename="best", monitor="val_bacc", mode="max",
                           save_last=True, save_top_k=1, enable_version_counter=False,
                           save_on_train_epoch_end=True)
    callbacks = [best, _delayed_early_stopping("val_loss", config.patience,
                                               config.early_stopping_start),
                 _batch_seeder(seed), _epoch_log(run.root / "training_log.csv", trial, progress)]
    trainer = pl.Trainer(
        max_epochs=config.epochs, accelerator=config.accelerator, devices=config.devices,
        strategy=config.strategy, num_nodes=config.num_nodes, precision=config.precision,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=progress and sys.stderr.isatty(), enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=1, default_root_dir=run.root,
        use_distributed_sampler=False)
    last = trial_dir / "last.ckpt"
    start = time.perf_counter()
    trainer.fit(module, _loader(prepared, "train", config, seed, True),
                _loader(prepared, "val", config, seed, False),
                ckpt_path=str(last) if last.is_file() else None)
    seconds = time.perf_counter() - start
    info = {"trial": trial, "seed": seed, "epochs": int(trainer.current_epoch),
            "world_size": int(trainer.world_size),
            "seconds": round(seconds, 1), "is_main": trainer.is_global_zero,
            "best_val_bacc": float(best.best_model_score) if best.best_model_score is not None
            else float("nan"), "best_checkpoint": best.best_model_path}
    if trainer.is_global_zero:
        write_json(done, {k: v for k, v in info.items()
                          if k not in ("best_checkpoint", "is_main")})
    return info


def _trial_model(info: dict, prepared: PreparedCohort, config: TrainConfig):
    from brainlrp.training.module import ADClassifier

    payload = torch.load(info["best_checkpoint"], map_location="cpu", weights_only=True)
    module = ADClassifier(config.arch, prepared.prep.grid.shape,
                          model_kwargs=config.model_kwargs)
    module.load_state_dict(payload["state_dict"])
    return module.model.eval()


def train(cohort: str | os.PathLike, out: str | os.PathLike,
          config: TrainConfig | None = None, overwrite: bool = False,
          cache_dir: str | os.PathLike | None = None, jobs: int = 1,
          allow_external_paths: bool = False, progress: bool = True) -> TrainResult:
    """Train the classifier on ``cohort`` into the run directory ``out``.

    Parameters
    ----------
    cohort : path-like
        BIDS-like folder or CSV/TSV table.
    out : path-like
        Run directory (created). A finished run is refused unless ``overwrite``;
        an interrupted one resumes from its last checkpoint.
    config : TrainConfig
    overwrite : bool
    cache_dir : path-like, optional
        Preprocessing cache.
    jobs : int
        Preprocessing processes.
    progress : bool
        Print one line per epoch (and a bar on a terminal).

    Returns
    -------
    TrainResult
    """
    config = config or TrainConfig()
    run = RunDir(out)
    is_main = global_rank() == 0
    quiet_lightning()
    if config.trials < 1:
        raise BrainLRPError(f"--trials must be at least 1, got {config.trials}", "use 1-10")
    from brainlrp.data.grid import Grid
    from brainlrp.models import check_grid_fits

    # Before any scan is read: a grid the architecture cannot take is refused at once.
    check_grid_fits(config.arch, Grid.from_resolution(config.resolution).shape,
                    **config.model_kwargs)
    if is_main:
        if run.card.is_file() and not overwrite:
            raise BrainLRPError(f"{run.root} already holds a trained model",
                                "pass --overwrite to retrain, or choose another --out")
        if overwrite:
            shutil.rmtree(run.model_dir / "lightning", ignore_errors=True)
            (run.root / "training_log.csv").unlink(missing_ok=True)
    if is_main and not overwrite:
        _check_resumable(run, config)
    splits = None
    if run.splits.is_file() and not overwrite:
        splits = read_splits(run.splits)
    start = time.perf_counter()
    prepared = prepare_cohort(cohort, resolution=config.resolution, test=config.test,
                              val=config.val, seed=config.seed, cache_dir=cache_dir,
                              n_jobs=jobs, splits=splits,
                              allow_external_paths=allow_external_paths,
                              progress=progress and is_main,
                              registration=Registration.from_dict(
                                  {"method": config.registration} if config.registration
                                  else None),
                              normalisation=config.normalisation)
    _check_classes(prepared)
    if is_main:
        write_splits(run, prepared.splits, overwrite=True)
        prepared.notices.extend(record_registration(run, prepared, "train"))
        run.set_cohort(prepared.cohort.summary())
        run.record("train", {"status": "running", "config": _config_dict(config),
                             "grid": prepared.prep.grid.to_dict()})
    prep_seconds = time.perf_counter() - start
    trials = [_fit_trial(prepared, config, run, k, progress) for k in range(config.trials)]
    if not is_main:
        return TrainResult(run=run.root, metrics={}, trials=trials, seconds=0.0,
                           selected_trial=-1, notices=[], is_main=False)
    return _finish(run, prepared, config, trials, prep_seconds,
                   time.perf_counter() - start)


def _finish(run: RunDir, prepared: PreparedCohort, config: TrainConfig, trials: list[dict],
            prep_seconds: float, seconds: float) -> TrainResult:
    scans = prepared.scans
    for info in trials:
        model = _trial_model(info, prepared, config)
        for split in ("val", "test"):
            rows = scans[scans["split"] == split]
            p = predict_proba(model, rows["array"].tolist(), config.batch_size)
            info[split] = classification_metrics(rows["label"], p)
    # The model kept is the trial with the best validation balanced accuracy
    # (ties: lower index); the test split never influences the choice.
    selected = max(range(len(trials)), key=lambda k: (trials[k]["val"]["balanced_accuracy"],
                                                      -k))
    model = _trial_model(trials[selected], prepared, config)
    save_checkpoint(run.checkpoint, model, config.arch, prepared.prep.grid.shape,
                    config.model_kwargs)
    read_checkpoint(run.checkpoint)  # the file we hand on must load weights-only
    p_all = predict_proba(model, scans["array"].tolist(), config.batch_size)
    predictions = prediction_table(scans, p_all)
    write_table(run.predictions, predictions)
    test = predictions[predictions["split"] == "test"]
    metrics = {"test": classification_metrics(test["label"], test["p_ad"]),
               "selected_trial": selected,
               "trials": [{k: v for k, v in t.items() if k != "best_checkpoint"}
                          for t in trials]}
    if len(trials) > 1:
        metrics["trials_summary"] = {
            key: {"mean": float(np.nanmean([t["test"][key] for t in trials])),
                  "sd": float(np.nanstd([t["test"][key] for t in trials], ddof=1))}
            for key in METRIC_KEYS}
    write_json(run.metrics, metrics)
    from brainlrp.data.nifti import on_grid

    preprocessing = prepared.prep.to_dict()
    # Whether training scans were resampled: if they were all already on the grid, a new
    # scan on another grid would be preprocessed differently from the training data.
    preprocessing["training_scans_on_grid"] = all(on_grid(p, prepared.prep.grid)
                                                  for p in scans["path"])
    preprocessing["intensity_profile"] = prepared.intensity_profile().to_dict()
    ModelCard(
        architecture=config.arch, model_kwargs=config.model_kwargs, preprocessing=preprocessing,
        classes=list(CLASS_NAMES), target_class=1,
        normalisation=prepared.prep.describe(),
        training_cohort=prepared.cohort.summary()
        | {"split_counts": prepared.splits.groupby(["split", "diagnosis"]).size()
           .unstack(fill_value=0).to_dict(orient="index")},
        training=_config_dict(config),
        metrics={"test": metrics["test"], "val": trials[selected]["val"]},
        selected_trial=selected, seed=config.seed + selected, libraries=library_versions(),
    ).write(run.root)
    _write_reference(run, prepared)
    run.record("train", {"status": "done", "config": _config_dict(config),
                         "grid": prepared.prep.grid.to_dict(), "seconds": round(seconds, 1),
                         "preprocess_seconds": round(prep_seconds, 1),
                         "trials": metrics["trials"], "selected_trial": selected})
    return TrainResult(run=run.root, metrics=metrics, trials=metrics["trials"],
                       seconds=seconds, selected_trial=selected,
                       notices=list(prepared.notices))


def _check_resumable(run: RunDir, config: TrainConfig) -> None:
    """An interrupted run resumes only with the grid and architecture it started with."""
    started = run.read_run().get("stages", {}).get("train", {})
    if started.get("status") != "running":
        return
    old = started.get("config", {})
    for key in ("resolution", "arch", "normalisation"):
        if key in old and old[key] != getattr(config, key):
            raise BrainLRPError(
                f"{run.root} holds an interrupted training with {key} {old[key]}, not "
                f"{getattr(config, key)}; its checkpoints are for that grid",
                f"use --{key} {old[key]} to resume, or --overwrite to start again")


def _write_reference(run: RunDir, prepared: PreparedCohort) -> None:
    """The mean training control (``model/reference_mean.nii.gz``): the default reference
    of the reference methods (:mod:`brainlrp.data.reference`)."""
    from brainlrp._io import save_nifti
    from brainlrp.data.reference import MEAN_FILE, mean_image

    scans = prepared.scans
    controls = scans[(scans["split"] == "train") & (scans["label"] == 0)]
    if controls.empty:
        return
    grid = prepared.prep.grid
    save_nifti(run.root / MEAN_FILE, mean_image(list(controls["array"]), grid.shape),
               grid.affine_array, description="brainlrp mean training control")


def _config_dict(config: TrainConfig) -> dict:
    d = asdict(config)
    d["shift"] = list(config.shift) if config.shift is not None else None
    return d


__all__ = ["TrainConfig", "TrainResult", "train"]
