"""``brainlrp import-model``: a model trained elsewhere, made into a run directory.

The result is what ``brainlrp train`` leaves behind (``model/best.ckpt`` in brainlrp's
weights-only format, ``model/card.json``, ``splits.tsv``, ``predictions.tsv``,
``metrics.json`` and a ``run.json`` record), so ``explain``, ``analyze`` and
``report`` run on it unchanged.

What brainlrp cannot know about a model trained elsewhere is asked for and recorded
in the card: the architecture (a registered name, or ``module:factory``), the grid
(``resolution``), the class order (``classes``; the card's ``target_class`` is AD's
output index) and which scans it was trained on (``splits``: without one every scan
of the cohort is a test scan). Preprocessing is brainlrp's own: scans resampled to the
template grid, multiplied by the template brain mask, min-max scaled to [0, 1]; a
model trained on other inputs gives meaningless predictions and heatmaps.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from brainlrp._io import write_json, write_table
from brainlrp.card import InputFormat, ModelCard, ModelSource
from brainlrp.data.cohort import CLASS_NAMES, load_cohort, normalise_diagnosis
from brainlrp.data.grid import Grid
from brainlrp.data.prepare import prepare_cohort, write_splits
from brainlrp.data.preprocess import Preprocessing
from brainlrp.data.splits import read_splits
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir, library_versions
from brainlrp.training.checkpoint import read_checkpoint, save_checkpoint
from brainlrp.training.evaluate import classification_metrics, predict_proba, prediction_table

#: BatchNorm's step counter: absent from some exported state dicts, never used at inference.
OPTIONAL_KEYS = ("num_batches_tracked",)


@dataclass
class ImportResult:
    """What :func:`import_model` made."""

    run: Path
    architecture: str
    classes: list[str]
    target_class: int
    n_parameters: int
    n_scans: int
    metrics: dict
    seconds: float
    notices: list[str] = field(default_factory=list)


def parse_classes(classes: str | Sequence[str]) -> tuple[list[str], int]:
    """The class names by output index (HC written for any control label) and AD's index.

    ``"HC,AD"``, ``"CN,AD"`` and ``"AD,HC"`` are valid; the order must name AD once and
    one control label once.

    Raises
    ------
    BrainLRPError
        Naming what is wrong with the order.
    """
    names = ([c.strip() for c in classes.split(",")] if isinstance(classes, str)
             else [str(c).strip() for c in classes])
    text = ",".join(names)
    fix = "give the model's outputs in order, e.g. --classes HC,AD or --classes AD,HC"
    if len(names) != 2 or not all(names):
        raise BrainLRPError(f"--classes {text!r} must name two classes, one per model output",
                            fix)
    normal = [normalise_diagnosis(n) for n in names]
    if normal.count("AD") == 0:
        raise BrainLRPError(f"--classes {text!r} does not name AD", fix)
    if normal.count("AD") > 1:
        raise BrainLRPError(f"--classes {text!r} names AD twice", fix)
    other = names[normal.index("AD") - 1]
    if "HC" not in normal:
        raise BrainLRPError(f"--classes {text!r}: {other!r} is not a healthy-control label "
                            "(HC, CN, control, normal)", fix)
    return normal, normal.index("AD")


def stated_classes(classes: str | Sequence[str] | None, stated: Sequence[str] | None,
                   source: Path, where: str, example: str = "HC,AD") -> list[str]:
    """The class order: ``classes`` when the user gave one, else the one ``source`` (a
    model folder's metadata file) states at ``where``.

    Raises
    ------
    BrainLRPError
        When neither gives an order, or the stated one is not a valid order; the message
        names ``source``.
    """
    fix = f"pass the outputs in order, e.g. --classes {example}"
    if classes is not None:
        return parse_classes(classes)[0]
    if stated is None:
        raise BrainLRPError(f"{source} names no class order ({where})", fix)
    text = ",".join(stated)
    try:
        return parse_classes(stated)[0]
    except BrainLRPError as exc:
        reason = exc.message.removeprefix(f"--classes {text!r}").strip(" :")
        raise BrainLRPError(f"{source}: {where} {text} {reason}", fix) from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, loaded with ``torch.load(weights_only=True)``.

    A raw state dict, a dict holding one under ``"state_dict"`` (brainlrp and Lightning
    checkpoints, many training scripts), ``"model_state_dict"`` or ``"model"`` (MONAI's
    ``CheckpointSaver``); a ``module.`` prefix
    (DistributedDataParallel) is removed.
    """
    from brainlrp.training.checkpoint import load_weights_only

    payload = load_weights_only(path, "weights file",
                                "save the model with torch.save(model.state_dict(), PATH)",
                                "save the state dict, not the model object: "
                                "torch.save(model.state_dict(), PATH)")
    state = payload
    if isinstance(payload, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(payload.get(key), Mapping):
                state = payload[key]
                break
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise BrainLRPError(f"{path} holds no state dict (a mapping of parameter names to "
                            "tensors)", "save it with torch.save(model.state_dict(), PATH)")
    state = dict(state)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], arch: str,
                   path: str | os.PathLike) -> None:
    """Load ``state`` into ``model`` strictly, or fail naming the first key that differs.

    A ``model.`` prefix (a Lightning module's attribute) is removed when that makes the
    keys fit; BatchNorm's ``num_batches_tracked`` may be missing.
    """
    expected = model.state_dict()
    if set(state) != set(expected) and all(k.startswith("model.") for k in state):
        stripped = {k[len("model."):]: v for k, v in state.items()}
        if set(stripped) <= set(expected):
            state = stripped
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_KEYS)]
    unexpected = [k for k in state if k not in expected]
    fix = (f"the weights were made for another network: check --arch {arch} and "
           "--model-kwargs")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), first {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
        raise BrainLRPError(f"the weights in {path} do not fit the {arch!r} architecture: "
                            + "; ".join(parts), fix)
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise BrainLRPError(
                f"the weights in {path} do not fit the {arch!r} architecture: {key!r} has "
                f"shape {tuple(value.shape)} in the file but {tuple(expected[key].shape)} in "
                "the network", fix)
    full = dict(expected) | state  # the optional counters the file lacks keep their value
    model.load_state_dict(full, strict=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _all_test_splits(cohort_path, allow_external_paths: bool) -> pd.DataFrame:
    subjects = load_cohort(cohort_path, allow_external_paths=allow_external_paths).subjects
    return pd.DataFrame({"participant_id": subjects["participant_id"].to_numpy(),
                         "split": "test",
                         "diagnosis": [CLASS_NAMES[int(v)] for v in subjects["label"]]})


def import_model(cohort: str | os.PathLike, out: str | os.PathLike, arch: str,
                 weights: str | os.PathLike, classes: str | Sequence[str] = "HC,AD",
                 resolution: float = 2.0, model_kwargs: dict | None = None,
                 splits: str | os.PathLike | None = None, batch_size: int = 4,
                 overwrite: bool = False, cache_dir: str | os.PathLike | None = None,
                 jobs: int = 1, allow_external_paths: bool = False,
                 progress: bool = True, normalisation: str = "minmax",
                 input_format: InputFormat | None = None,
                 source: ModelSource | None = None,
                 preprocessing: Preprocessing | None = None) -> ImportResult:
    """Make the run directory ``out`` from a model trained outside brainlrp.

    Parameters
    ----------
    cohort : path-like
        BIDS-like folder or CSV/TSV table; every scan is preprocessed and predicted.
    out : path-like
        Run directory (created). One that holds a model is refused unless ``overwrite``.
    arch : str
        A registered architecture (:data:`brainlrp.models.MODELS`) or ``module:factory``
        with ``factory(input_shape, **model_kwargs) -> nn.Module``, importable with this
        Python's path. The card records it; loading the run imports the module again.
    weights : path-like
        A state dict saved with ``torch.save`` (raw, or under ``"state_dict"``).
    classes : str or sequence of str
        The model's outputs in order, e.g. ``"HC,AD"`` or ``"AD,CN"``.
    resolution : float
        The template grid the model takes, in mm (2 = 97 x 115 x 97).
    model_kwargs : dict, optional
        Keyword arguments of the architecture.
    splits : path-like, optional
        A splits.tsv (participant_id, split) marking the scans the model was trained
        (train) and validated (val) on. Without it every scan is a test scan, so test
        metrics are honest only when the cohort holds no training scan.
    batch_size : int
        Scans per forward pass.
    overwrite, cache_dir, jobs, allow_external_paths, progress
        As for :func:`brainlrp.training.train`.
    normalisation : str
        How the model's inputs were scaled to [0, 1]
        (:data:`~brainlrp.data.preprocess.NORMALISATIONS`); default ``minmax``, the
        scaling most pipelines train with (ClinicaDL's too).
    input_format : InputFormat, optional
        The value range and channels the network takes (the LRP box rule's bounds);
        default brainlrp's [0, 1], one channel.
    source : ModelSource, optional
        Where the model came from (e.g. a MONAI bundle, :mod:`brainlrp.training.bundle`),
        recorded in the card and in run.json.
    preprocessing : Preprocessing, optional
        How the model's inputs were made, instead of ``resolution`` and ``normalisation``
        (e.g. a ClinicaDL MAPS's t1-linear crop, :mod:`brainlrp.training.maps`); the card
        keeps it, so every later stage prepares scans the same way.

    Returns
    -------
    ImportResult
    """
    from brainlrp.models import build_model, check_grid_fits, count_parameters

    start = time.perf_counter()
    run = RunDir(out)
    weights = Path(weights)
    model_kwargs = dict(model_kwargs or {})
    names, target = parse_classes(classes)
    if batch_size < 1:
        raise BrainLRPError(f"--batch-size must be at least 1, got {batch_size}", "use 1-16")
    prep = preprocessing or Preprocessing(grid=Grid.from_resolution(resolution),
                                          normalisation=normalisation)  # a bad name fails
    grid = prep.grid
    # Every check on the arguments comes before a scan is read or a file is written.
    check_grid_fits(arch, grid.shape, **model_kwargs)
    state = read_state_dict(weights)
    model = build_model(arch, grid.shape, **model_kwargs)
    fit_state_dict(model, state, arch, weights)
    model.eval()
    if run.card.is_file() and not overwrite:
        raise BrainLRPError(f"{run.root} already holds a model",
                            "pass --overwrite to replace it, or choose another --out")
    split_table = (read_splits(splits) if splits is not None
                   else _all_test_splits(cohort, allow_external_paths))
    prepared = prepare_cohort(cohort, resolution=resolution, splits=split_table,
                              cache_dir=cache_dir, n_jobs=jobs,
                              allow_external_paths=allow_external_paths, progress=progress,
                              preprocessing=prep)
    scans = prepared.scans
    if not (scans["split"] == "test").any():
        raise BrainLRPError(f"{splits} puts no scan of the cohort in the test split",
                            "mark the scans the model never saw as test")
    if "diagnosis" not in split_table:
        labels = prepared.cohort.subjects.set_index("participant_id")["label"]
        split_table = split_table.assign(diagnosis=[
            CLASS_NAMES[int(labels[p])] if p in labels.index else ""
            for p in split_table["participant_id"]])
    write_splits(run, split_table, overwrite=True)
    run.set_cohort(prepared.cohort.summary())

    run.model_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run.checkpoint, model, arch, grid.shape, model_kwargs)
    read_checkpoint(run.checkpoint)  # the file we hand on must load weights-only
    metrics = _predict(run, model, scans, batch_size, target)
    origin = _write_card(run, arch, model_kwargs, names, target, grid, normalisation, weights,
                         resolution, splits, split_table, prepared, metrics,
                         input_format, source)
    seconds = time.perf_counter() - start
    n_params = count_parameters(model)
    run.record("import", {"status": "done", "architecture": arch,
                          "model_kwargs": json.loads(json.dumps(model_kwargs, default=str)),
                          "classes": names, "target_class": target,
                          "weights": origin["weights"], "weights_sha256": origin["weights_sha256"],
                          "n_parameters": n_params, "grid": grid.to_dict(),
                          "n_scans": len(scans), "seconds": round(seconds, 1),
                          "source": source.to_dict() if source is not None else None})
    return ImportResult(run=run.root, architecture=arch, classes=names, target_class=target,
                        n_parameters=n_params, n_scans=len(scans), metrics=metrics,
                        seconds=seconds, notices=list(prepared.notices))


def _predict(run: RunDir, model, scans, batch_size: int, target: int) -> dict:
    """predictions.tsv of every scan, and metrics.json of the test and validation scans
    (returned)."""
    p_ad = predict_proba(model, scans["array"].tolist(), batch_size, target=target)
    predictions = prediction_table(scans, p_ad)
    write_table(run.predictions, predictions)
    metrics = {}
    for split in ("test", "val"):
        rows = predictions[predictions["split"] == split]
        if len(rows):
            metrics[split] = classification_metrics(rows["label"], rows["p_ad"])
    metrics["imported"] = True
    write_json(run.metrics, metrics)
    return metrics


def _write_card(run: RunDir, arch: str, model_kwargs: dict, names, target: int, grid,
                normalisation: str, weights: Path, resolution: float, splits, split_table,
                prepared, metrics: dict, input_format: InputFormat | None = None,
                source: ModelSource | None = None) -> dict:
    """The model card of an imported model; returns where the model came from."""
    preprocessing = prepared.prep.to_dict()
    # Unknown for a model trained elsewhere: new scans are resampled like the cohort's.
    preprocessing["training_scans_on_grid"] = False
    preprocessing["intensity_profile"] = prepared.intensity_profile().to_dict()
    origin = {"imported": True, "weights": str(weights.absolute()),
              "weights_sha256": _file_sha256(weights), "resolution": float(grid.resolution),
              "splits": str(Path(splits).absolute()) if splits is not None
              else "every scan of the cohort is a test scan",
              "preprocessing": f"{grid.describe()} grid, {prepared.prep.describe()}"}
    if ":" in arch:
        origin["code"] = (f"architecture {arch} is user code: loading this run imports "
                          f"{arch.partition(':')[0]}")
    ModelCard(architecture=arch, model_kwargs=model_kwargs, preprocessing=preprocessing,
              classes=names, target_class=target,
              normalisation=prepared.prep.describe(),
              training_cohort=prepared.cohort.summary()
              | {"split_counts": split_table.groupby(["split", "diagnosis"]).size()
                 .unstack(fill_value=0).to_dict(orient="index")},
              training=origin, metrics={k: v for k, v in metrics.items() if k != "imported"},
              libraries=library_versions(), input=input_format or InputFormat(),
              source=source).write(run.root)
    return origin


__all__ = ["ImportResult", "fit_state_dict", "import_model", "parse_classes",
           "read_state_dict"]
