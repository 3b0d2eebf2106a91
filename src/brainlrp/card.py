"""The model card (``model/card.json``): how a run's model was made, read and written here.

Every stage that needs to know the model's architecture, grid, preprocessing or
classes reads a :class:`ModelCard` through :func:`read_card`; only the training
stage (and model import) writes one, through :meth:`ModelCard.write`. The JSON
keeps the run-directory contract's names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainlrp._io import read_json, write_json
from brainlrp.data.grid import Grid
from brainlrp.data.preprocess import Preprocessing
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

CARD_PATH = Path("model") / "card.json"


@dataclass(frozen=True)
class InputFormat:
    """What the network takes, as MONAI bundles' ``network_data_format`` says it: the
    value range of its input (the LRP box rule's bounds) and the number of channels.

    brainlrp's own preprocessing scales each scan to [0, 1] (one channel).
    """

    value_range: tuple[float, float] = (0.0, 1.0)
    channels: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"value_range": [float(v) for v in self.value_range], "channels": self.channels}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> InputFormat:
        if not data:
            return cls()
        low, high = (float(v) for v in data.get("value_range", (0.0, 1.0)))
        if not low < high:
            raise ValueError(f"input value_range must rise, got [{low}, {high}]")
        return cls(value_range=(low, high), channels=int(data.get("channels", 1)))


@dataclass(frozen=True)
class ModelSource:
    """Where an imported model came from (``card.json`` ``source``; ``None`` for a model
    brainlrp trained or one imported from a bare weights file).

    Attributes
    ----------
    kind : str
        What the model was read from, e.g. ``"monai-bundle"``.
    path : str
        The folder or file as it was when imported (absolute); it may have moved since:
        the run does not read it again.
    name, version : str
        The source's own name and version (a bundle's ``metadata.json``).
    config : str
        The file within ``path`` the network was built from, e.g.
        ``configs/inference.json``.
    sha256 : str
        SHA-256 of the weights file.
    notes : tuple of str
        What the import noticed (inputs that differ from brainlrp's, code that loading
        the run runs).
    split : int, optional
        The cross-validation split the model is (a ClinicaDL MAPS's ``split-<k>``).
    selection_metric : str
        The metric that chose the model (a MAPS's ``best-<metric>``), e.g. ``"loss"``.
    preprocessing : str
        The source's own name for how it prepared its inputs, e.g. ``"t1-linear,
        cropped, MinMax"`` (what brainlrp does is the card's ``preprocessing``).
    """

    kind: str
    path: str
    name: str = ""
    version: str = ""
    config: str = ""
    sha256: str = ""
    notes: tuple[str, ...] = ()
    split: int | None = None
    selection_metric: str = ""
    preprocessing: str = ""

    def describe(self) -> str:
        """One line for readers: ``monai-bundle 'name' 1.0 (path)``."""
        parts = [self.kind, repr(self.name) if self.name else "", self.version]
        return f"{' '.join(p for p in parts if p)} ({self.path})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "name": self.name,
                "version": self.version, "config": self.config, "sha256": self.sha256,
                "notes": list(self.notes), "split": self.split,
                "selection_metric": self.selection_metric, "preprocessing": self.preprocessing}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelSource | None:
        if not data:
            return None
        return cls(kind=str(data["kind"]), path=str(data.get("path", "")),
                   name=str(data.get("name", "")), version=str(data.get("version", "")),
                   config=str(data.get("config", "")), sha256=str(data.get("sha256", "")),
                   notes=tuple(str(n) for n in data.get("notes") or ()),
                   split=None if data.get("split") is None else int(data["split"]),
                   selection_metric=str(data.get("selection_metric", "")),
                   preprocessing=str(data.get("preprocessing", "")))


@dataclass(frozen=True)
class SplitMetrics:
    """A split's classification metrics (``metrics.json``, the card's ``metrics``)."""

    balanced_accuracy: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    accuracy: float | None = None
    roc_auc: float | None = None
    n: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SplitMetrics | None:
        if not data:
            return None
        return cls(**{k: data.get(k) for k in ("balanced_accuracy", "sensitivity",
                                               "specificity", "accuracy", "roc_auc")},
                   n=int(data.get("n") or 0))


@dataclass
class ModelCard:
    """What a trained model is and how its inputs were prepared.

    Attributes
    ----------
    architecture : str
        Registered architecture name, or ``module:factory`` for a user's network
        (:func:`brainlrp.models.build_model`; loading such a model imports that module,
        i.e. runs its code - docs/models.md).
    model_kwargs : dict
        Keyword arguments of the architecture.
    preprocessing : dict
        :meth:`Preprocessing.to_dict` plus ``training_scans_on_grid`` (whether every
        training scan already lay on the model grid, i.e. was never resampled).
    classes : list of str
        Class names by output index.
    target_class : int
        AD's output index: the class explained and whose softmax is ``p_ad``. 1 for
        models brainlrp trains; an imported model may put AD first.
    normalisation : str
        One line for readers (:data:`~brainlrp.data.preprocess.NORMALISATIONS`).
    training_cohort, training, metrics, libraries : dict
        Cohort summary, training configuration (or, imported, where the model came
        from), test/validation metrics, versions; typed through :attr:`train_config` and
        :meth:`split_metrics`.
    selected_trial, seed : int
    input : InputFormat
        The input's value range and channels (the LRP box rule's bounds).
    source : ModelSource, optional
        Where an imported model came from (e.g. a MONAI bundle); ``None`` otherwise and
        in cards written before it existed.
    """

    architecture: str
    model_kwargs: dict[str, Any]
    preprocessing: dict[str, Any]
    classes: list[str] = field(default_factory=lambda: ["HC", "AD"])
    target_class: int = 1
    normalisation: str = ""
    training_cohort: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    selected_trial: int = 0
    seed: int = 0
    libraries: dict[str, str] = field(default_factory=dict)
    input: InputFormat = field(default_factory=InputFormat)
    source: ModelSource | None = None

    @property
    def train_config(self):
        """The :class:`~brainlrp.configs.TrainConfig` brainlrp trained with (``None`` for
        an imported model, whose ``training`` record says where it came from)."""
        from dataclasses import fields

        from brainlrp.configs import TrainConfig

        if not self.training or self.training.get("imported"):
            return None
        known = {f.name for f in fields(TrainConfig)}
        values = {k: v for k, v in self.training.items() if k in known}
        if isinstance(values.get("shift"), list):
            values["shift"] = tuple(values["shift"])
        return TrainConfig(**values)

    def split_metrics(self, split: str = "test") -> SplitMetrics | None:
        """The classification metrics of ``split`` (``None`` when not measured)."""
        return SplitMetrics.from_dict(self.metrics.get(split))

    @property
    def prep(self) -> Preprocessing:
        """The preprocessing the model was trained with."""
        return Preprocessing.from_dict(self.preprocessing)

    @property
    def grid(self) -> Grid:
        """The model grid."""
        return Grid.from_dict(self.preprocessing["grid"])

    @property
    def training_scans_on_grid(self) -> bool:
        """Whether every training scan already lay on the model grid."""
        return bool(self.preprocessing.get("training_scans_on_grid", False))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the contract's keys, in their order)."""
        grid = self.grid
        return {
            "architecture": {"name": self.architecture, "kwargs": self.model_kwargs,
                             "input_shape": list(grid.shape)},
            "grid": grid.to_dict(), "resolution": grid.resolution,
            "preprocessing": self.preprocessing, "normalisation": self.normalisation,
            "classes": list(self.classes), "target_class": self.target_class,
            "training_cohort": self.training_cohort, "training": self.training,
            "metrics": self.metrics, "selected_trial": self.selected_trial, "seed": self.seed,
            "libraries": self.libraries, "input": self.input.to_dict(),
            "source": self.source.to_dict() if self.source is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Rebuild from :meth:`to_dict` (``KeyError``/``TypeError`` when malformed)."""
        arch = data["architecture"]
        preprocessing = dict(data["preprocessing"])
        preprocessing["grid"] = data["grid"]  # the top-level grid is authoritative
        card = cls(architecture=arch["name"] if isinstance(arch, dict) else str(arch),
                   model_kwargs=dict((arch.get("kwargs") if isinstance(arch, dict) else None)
                                     or {}),
                   preprocessing=preprocessing,
                   classes=list(data.get("classes", ["HC", "AD"])),
                   target_class=int(data.get("target_class", 1)),
                   normalisation=str(data.get("normalisation", "")),
                   training_cohort=dict(data.get("training_cohort") or {}),
                   training=dict(data.get("training") or {}),
                   metrics=dict(data.get("metrics") or {}),
                   selected_trial=int(data.get("selected_trial", 0) or 0),
                   seed=int(data.get("seed", 0) or 0),
                   libraries=dict(data.get("libraries") or {}),
                   input=InputFormat.from_dict(data.get("input")),
                   source=ModelSource.from_dict(data.get("source")))
        card.grid  # noqa: B018  (validates the grid now, not at first use)
        return card

    def write(self, run_dir: str | os.PathLike) -> Path:
        """Write ``model/card.json`` of ``run_dir`` atomically."""
        path = Path(run_dir) / CARD_PATH
        write_json(path, self.to_dict())
        return path

    def check_grid(self, grid: Grid, what: str) -> None:
        """Fail clearly when ``grid`` (of ``what``) differs from the model's grid."""
        model_grid = self.grid
        if model_grid.shape != grid.shape or not np.allclose(model_grid.affine_array,
                                                             grid.affine_array, atol=1e-3):
            raise BrainLRPError(
                f"{what} is on the {grid.describe()} grid but the model expects "
                f"{model_grid.describe()}",
                f"use --resolution {model_grid.resolution:g} (or retrain on this grid)")


def read_card(run_dir: str | os.PathLike) -> ModelCard:
    """Read ``model/card.json`` of a run.

    Raises
    ------
    BrainLRPError
        When the card is missing, unreadable or malformed.
    """
    root = run_dir.root if isinstance(run_dir, RunDir) else Path(run_dir)
    path = root / CARD_PATH
    if not path.is_file():
        raise BrainLRPError(f"no model card in {root} ({path} is missing)",
                            "train a model first with `brainlrp train COHORT --out RUN`")
    try:
        return ModelCard.from_dict(read_json(path))
    except Exception as exc:
        reason = " ".join(str(exc).split())[:100] or type(exc).__name__
        raise BrainLRPError(f"cannot read the model card {path} ({reason})",
                            "retrain with `brainlrp train --overwrite`") from None


__all__ = ["CARD_PATH", "InputFormat", "ModelCard", "ModelSource", "SplitMetrics",
           "read_card"]
