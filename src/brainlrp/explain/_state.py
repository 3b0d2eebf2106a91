"""Temporary model state for an explanation, always restored on exit.

Every explanation method needs the same three guarantees: the model runs in eval
mode (dropout off, BatchNorm on its running statistics), no parameter gradient is
computed (only the input gradient is wanted, and weight gradients would double the
work), and float32 stays float32 on GPUs that would otherwise silently use TF32.
Each is a context manager that restores exactly what it found, even on error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from brainlrp.errors import BrainLRPError


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each one's own flag on exit.

    Flags are restored per module, not with ``model.train(was_training)``, so a model
    with deliberately mixed modes (e.g. frozen BatchNorm) comes back unchanged.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


@contextlib.contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[nn.Module]:
    """Switch off ``requires_grad`` on all parameters; restore each flag on exit."""
    flags = [(param, param.requires_grad) for param in model.parameters()]
    for param, _ in flags:
        param.requires_grad_(False)
    try:
        yield model
    finally:
        for param, flag in flags:
            param.requires_grad_(flag)


@contextlib.contextmanager
def exact_float32(device: torch.device) -> Iterator[None]:
    """Disable TF32 on CUDA so that relevance sums are float32-exact; no-op on CPU.

    TF32 convolutions carry ~1e-3 relative error, enough to break relevance
    conservation at the 1e-4 level.
    """
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (CPU float32 if none)."""
    for param in model.parameters():
        return param.device, param.dtype
    return torch.device("cpu"), torch.float32


def prepare_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Validate ``x`` as ``(batch, channel, x, y, z)`` and move it to the model's device/dtype.

    Raises
    ------
    BrainLRPError
        If ``x`` is not a 5-D floating tensor with finite values.
    """
    if not isinstance(x, torch.Tensor):
        raise BrainLRPError(f"the input must be a torch.Tensor, got {type(x).__name__}",
                            "convert the volume with torch.as_tensor(...)")
    if x.ndim != 5:
        raise BrainLRPError(
            f"the input must have shape (batch, channel, x, y, z), got {tuple(x.shape)}",
            "add the missing axes, e.g. volume[None, None] for a single 3-D scan")
    if not x.is_floating_point():
        raise BrainLRPError(f"the input must be floating point, got {x.dtype}",
                            "scale the scan to [0, 1] as float32")
    if not bool(torch.isfinite(x).all()):
        raise BrainLRPError("the input contains NaN or Inf values",
                            "fix or mask the scan before explaining it")
    device, dtype = model_device_dtype(model)
    if x.is_inference():
        # Inference tensors cannot take part in autograd; a clone is an ordinary tensor.
        x = x.clone()
    return x.detach().to(device=device, dtype=dtype)


def prepare_reference(model: nn.Module, x: torch.Tensor,
                      reference: torch.Tensor | None) -> torch.Tensor:
    """The reference image of each scan: validated, broadcast to ``x``'s batch.

    ``x`` must already be prepared (:func:`prepare_input`). ``reference`` is one
    image for the whole batch ``(1, channel, x, y, z)`` or one per scan
    ``(batch, channel, x, y, z)``.

    Raises
    ------
    BrainLRPError
        If ``reference`` is missing, malformed or not shaped like the scans.
    """
    if reference is None:
        raise BrainLRPError("this method explains the difference from a reference image, "
                            "and none was given",
                            "pass reference=<a healthy-looking scan on the same grid, "
                            "shaped (1 or batch, 1, x, y, z)>")
    ref = prepare_input(model, reference)
    if ref.shape[1:] != x.shape[1:] or ref.shape[0] not in (1, x.shape[0]):
        raise BrainLRPError(
            f"the reference of shape {tuple(ref.shape)} does not fit scans of shape "
            f"{tuple(x.shape)}", f"give one reference (1, {', '.join(map(str, x.shape[1:]))}) "
            f"or one per scan ({', '.join(map(str, x.shape))})")
    return ref.expand_as(x).contiguous()


def resolve_target(target: int | Sequence[int] | torch.Tensor, batch: int, n_classes: int,
                   device: torch.device) -> torch.Tensor:
    """Target class per sample as a ``(batch,)`` long tensor, checked against ``n_classes``.

    Raises
    ------
    BrainLRPError
        If a target is not an integer class index in ``[0, n_classes)`` or the number of
        targets does not match the batch.
    """
    values = torch.as_tensor(target).flatten()
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise BrainLRPError(f"target must be an integer class index, got {target!r}",
                            f"use 0 .. {n_classes - 1}")
    if values.numel() == 1:
        values = values.expand(batch)
    if values.numel() != batch:
        raise BrainLRPError(f"got {values.numel()} targets for a batch of {batch}",
                            "give one target for all, or one per sample")
    bad = (values < 0) | (values >= n_classes)
    if bool(bad.any()):
        raise BrainLRPError(
            f"target {values[bad][0].item()} is out of range for a model with "
            f"{n_classes} classes", f"use a class index from 0 to {n_classes - 1} "
            "(1 = AD for the paper's model)")
    return values.to(device=device, dtype=torch.long)


START_CHOICES = ("probability", "logit")


def check_start(start: str) -> str:
    """Validate the ``start`` option: explain the softmax probability or the logit."""
    if start not in START_CHOICES:
        raise BrainLRPError(f"unknown start {start!r}",
                            f"choose one of {', '.join(START_CHOICES)}")
    return start
