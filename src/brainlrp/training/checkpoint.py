"""The saved model: a plain-tensor checkpoint plus a JSON model card.

``model/best.ckpt`` holds only tensors and plain values (architecture name, input
shape, model arguments, state dict), so it loads with ``torch.load(...,
weights_only=True)``: a checkpoint is data, never code. ``model/card.json`` says how
the model was made (:mod:`brainlrp.card`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from brainlrp._io import atomic_path
from brainlrp.card import ModelCard, read_card
from brainlrp.errors import BrainLRPError
from brainlrp.models import build_model
from brainlrp.run import RunDir

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


def load_weights_only(path: str | os.PathLike, what: str, missing_fix: str,
                      broken_fix: str):
    """``torch.load(path, weights_only=True)`` on the CPU: a file is data, never code.

    Raises
    ------
    BrainLRPError
        ``"<what> not found"`` or ``"cannot read the <what>"`` with the given fixes.
    """
    path = Path(path)
    if not path.is_file():
        raise BrainLRPError(f"{what} not found: {path}", missing_fix)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise BrainLRPError(f"cannot read the {what} {path} ({reason})", broken_fix) from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True``; a clear error when it is broken."""
    payload = load_weights_only(path, "checkpoint", "train a model first with `brainlrp train`",
                                "it is corrupted or not a brainlrp checkpoint; retrain with "
                                "`brainlrp train --overwrite`")
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


def load_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, ModelCard]:
    """The trained model of a run (eval mode, on ``device``) and its card.

    A checkpoint whose input shape differs from the card's grid is refused.
    """
    run_dir = run_dir.root if isinstance(run_dir, RunDir) else Path(run_dir)
    card = read_card(run_dir)
    payload = read_checkpoint(run_dir / "model" / "best.ckpt")
    grid = card.grid
    if tuple(payload["input_shape"]) != grid.shape:
        raise BrainLRPError(
            f"the checkpoint in {run_dir} was made for a "
            f"{' x '.join(map(str, payload['input_shape']))} grid, but the model card says "
            f"{grid.describe()}", "retrain with `brainlrp train --overwrite`")
    return model_from_checkpoint(payload).to(device), card
