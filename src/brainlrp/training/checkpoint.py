"""The saved model: a plain-tensor checkpoint plus a JSON model card.

``model/best.ckpt`` holds only tensors and plain values (architecture name, input
shape, model arguments, state dict), so it loads with ``torch.load(...,
weights_only=True)``: a checkpoint is data, never code. ``model/card.json`` says how
the model was made: architecture, grid (shape and MNI affine), preprocessing,
classes, training cohort, metrics, library versions, seeds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from brainlrp._io import atomic_path, read_json
from brainlrp.data.grid import Grid
from brainlrp.data.preprocess import Preprocessing
from brainlrp.errors import BrainLRPError
from brainlrp.models import build_model

CHECKPOINT_FORMAT = "brainlrp-checkpoint-1"


def save_checkpoint(path: str | os.PathLike, model: nn.Module, arch: str,
                    input_shape, model_kwargs: dict | None = None) -> None:
    """Write a weights-only checkpoint atomically."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "arch": arch,
               "input_shape": [int(s) for s in input_shape],
               "model_kwargs": dict(model_kwargs or {}), "state_dict": state}
    with atomic_path(path, suffix=".ckpt") as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True``; a clear error when it is broken."""
    path = Path(path)
    if not path.is_file():
        raise BrainLRPError(f"checkpoint not found: {path}",
                            "train a model first with `brainlrp train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise BrainLRPError(f"cannot read the checkpoint {path} ({reason})",
                            "it is corrupted or not a brainlrp checkpoint; retrain with "
                            "`brainlrp train --overwrite`") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise BrainLRPError(f"{path} is not a brainlrp checkpoint",
                            "retrain with `brainlrp train --overwrite`")
    return payload


def model_from_checkpoint(payload: dict) -> nn.Module:
    """Rebuild the model from a checkpoint payload (eval mode)."""
    model = build_model(payload["arch"], tuple(payload["input_shape"]),
                        **payload.get("model_kwargs", {}))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise BrainLRPError(f"the checkpoint's weights do not fit the {payload['arch']} "
                            f"architecture ({str(exc).splitlines()[0][:120]})",
                            "retrain with `brainlrp train --overwrite`") from None
    return model.eval()


def read_card(run_dir: str | os.PathLike) -> dict:
    """Read ``model/card.json`` of a run."""
    path = Path(run_dir) / "model" / "card.json"
    if not path.is_file():
        raise BrainLRPError(f"no model card in {run_dir} ({path} is missing)",
                            "train a model first with `brainlrp train COHORT --out RUN`")
    try:
        return read_json(path)
    except Exception:
        raise BrainLRPError(f"cannot read the model card {path}",
                            "retrain with `brainlrp train --overwrite`") from None


def card_preprocessing(card: dict) -> Preprocessing:
    """The preprocessing the model was trained with."""
    return Preprocessing.from_dict(card["preprocessing"])


def check_grid(card: dict, grid: Grid, what: str) -> None:
    """Fail clearly when ``grid`` (of ``what``) differs from the model's grid."""
    model_grid = Grid.from_dict(card["grid"])
    if model_grid.shape != grid.shape or not np.allclose(model_grid.affine_array,
                                                         grid.affine_array, atol=1e-3):
        raise BrainLRPError(
            f"{what} is on the {grid.describe()} grid but the model expects "
            f"{model_grid.describe()}",
            f"use --resolution {model_grid.resolution:g} (or retrain on this grid)")


def load_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict]:
    """The trained model of a run (eval mode, on ``device``) and its card.

    A checkpoint whose input shape differs from the card's grid is refused.
    """
    card = read_card(run_dir)
    payload = read_checkpoint(Path(run_dir) / "model" / "best.ckpt")
    grid = Grid.from_dict(card["grid"])
    if tuple(payload["input_shape"]) != grid.shape:
        raise BrainLRPError(
            f"the checkpoint in {run_dir} was made for a "
            f"{' x '.join(map(str, payload['input_shape']))} grid, but the model card says "
            f"{grid.describe()}", "retrain with `brainlrp train --overwrite`")
    return model_from_checkpoint(payload).to(device), card
