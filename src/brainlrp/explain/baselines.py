"""Comparison methods through Captum: guided backprop, gradient, gradient x input,
integrated gradients, SmoothGrad and 3-D occlusion.

All of them explain the same output as LRP by default, the softmax probability
of the target class (``start="probability"``), or its logit (``start="logit"``).
Every method runs the model in eval mode without parameter gradients and
restores it afterwards. Methods that evaluate the model many times per scan
(integrated gradients, SmoothGrad, occlusion) do so in internal batches of
``batch_size`` volumes, so memory stays bounded on full-resolution
193 x 229 x 193 scans: at that size one volume needs roughly 1.2 GB for a
forward and backward pass of the paper's network on CPU.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain._state import (
    check_start,
    eval_mode,
    exact_float32,
    frozen_parameters,
    prepare_input,
    resolve_target,
)

Target = int | Sequence[int] | Tensor


class _Explained(nn.Module):
    """The model's output that a baseline explains: softmax probabilities or logits.

    It also checks the target against the number of classes on the first call
    (Captum would fail with a bare IndexError) and keeps the logits of that call,
    which for single-pass methods are the logits of the input itself.
    """

    def __init__(self, model: nn.Module, start: str, target: Tensor):
        super().__init__()
        self.model = model
        self.start = start
        self.target = target
        self.first_logits: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(x)
        if self.first_logits is None:
            if logits.ndim != 2:
                raise BrainLRPError(
                    f"the model must return (batch, n_classes) logits, got shape "
                    f"{tuple(logits.shape)}", "end the model with a Linear layer")
            resolve_target(self.target, self.target.numel(), logits.shape[1], logits.device)
            self.first_logits = logits.detach()
        if self.start == "probability":
            return torch.softmax(logits, dim=1)
        return logits


@contextlib.contextmanager
def _prepared(model: nn.Module, x: Tensor, target: Target, start: str
              ) -> Iterator[tuple[_Explained, Tensor, Tensor]]:
    """Checked input and target, the wrapped model, and the explanation-time state."""
    check_start(start)
    x = prepare_input(model, x)
    with (eval_mode(model), frozen_parameters(model), exact_float32(x.device),
          torch.enable_grad()):
        # Type and count are checked now, the range once the class count is known.
        tgt = resolve_target(target, x.shape[0], torch.iinfo(torch.long).max, x.device)
        wrapped = _Explained(model, start, tgt)
        captum_target = int(tgt[0]) if torch.as_tensor(target).numel() == 1 else tgt.tolist()
        yield wrapped, x, captum_target


def _leaf(x: Tensor) -> Tensor:
    """``x`` requiring grad (Captum warns when it has to switch that on itself)."""
    return x.requires_grad_(True)


def _check_positive_int(value: int, name: str) -> int:
    if int(value) != value or value < 1:
        raise BrainLRPError(f"{name} must be a positive integer, got {name}={value!r}",
                            f"use e.g. {name}=4")
    return int(value)


def _probabilities(wrapped: _Explained, x: Tensor, reuse: bool) -> Tensor:
    """Softmax probabilities of ``x``, from the first call when it saw ``x`` itself."""
    logits = wrapped.first_logits
    if not reuse or logits is None or logits.shape[0] != x.shape[0]:
        with torch.no_grad():
            logits = wrapped.model(x)
    return torch.softmax(logits.float(), dim=1)


def guided_backprop(model: nn.Module, x: Tensor, target: Target = 1,
                    start: str = "probability") -> tuple[Tensor, Tensor]:
    """Guided backpropagation (Springenberg et al. 2015), the paper's comparison method.

    Gradients pass a ReLU only where both its input and the incoming gradient are
    positive. Needs the model's ReLUs to be ``nn.ReLU`` modules.

    Returns
    -------
    attribution : Tensor
        Shaped like ``x``.
    probabilities : Tensor
        ``(batch, n_classes)`` softmax of the model's output for ``x``.
    """
    from captum.attr import GuidedBackprop

    with _prepared(model, x, target, start) as (wrapped, x, tgt), warnings.catch_warnings():
        # Captum announces that it hooks the ReLUs (and removes the hooks again).
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        attribution = GuidedBackprop(wrapped).attribute(_leaf(x), target=tgt)
        return attribution.detach(), _probabilities(wrapped, x, reuse=True)


def gradient(model: nn.Module, x: Tensor, target: Target = 1,
             start: str = "probability") -> tuple[Tensor, Tensor]:
    """The signed gradient of the target output with respect to the input (saliency).

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    from captum.attr import Saliency

    with _prepared(model, x, target, start) as (wrapped, x, tgt):
        attribution = Saliency(wrapped).attribute(_leaf(x), target=tgt, abs=False)
        return attribution.detach(), _probabilities(wrapped, x, reuse=True)


def gradient_x_input(model: nn.Module, x: Tensor, target: Target = 1,
                     start: str = "probability") -> tuple[Tensor, Tensor]:
    """Gradient times input.

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    from captum.attr import InputXGradient

    with _prepared(model, x, target, start) as (wrapped, x, tgt):
        attribution = InputXGradient(wrapped).attribute(_leaf(x), target=tgt)
        return attribution.detach(), _probabilities(wrapped, x, reuse=True)


def integrated_gradients(model: nn.Module, x: Tensor, target: Target = 1,
                         start: str = "probability", steps: int = 32,
                         batch_size: int = 4) -> tuple[Tensor, Tensor]:
    """Integrated gradients (Sundararajan et al. 2017) from an all-zero baseline.

    The attributions sum approximately to ``f(x) - f(0)`` (completeness); more
    ``steps`` make the Gauss-Legendre quadrature more exact.

    Parameters
    ----------
    steps : int
        Points on the path from the baseline to ``x``.
    batch_size : int
        Volumes per internal forward/backward pass (memory bound).

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    from captum.attr import IntegratedGradients

    steps = _check_positive_int(steps, "steps")
    batch_size = _check_positive_int(batch_size, "batch_size")
    with _prepared(model, x, target, start) as (wrapped, x, tgt):
        attribution = IntegratedGradients(wrapped).attribute(
            x, baselines=torch.zeros_like(x), target=tgt, n_steps=steps,
            internal_batch_size=batch_size)
        return attribution.detach(), _probabilities(wrapped, x, reuse=False)


def smoothgrad(model: nn.Module, x: Tensor, target: Target = 1,
               start: str = "probability", n_samples: int = 25, noise: float = 0.15,
               batch_size: int = 4, seed: int = 0) -> tuple[Tensor, Tensor]:
    """SmoothGrad (Smilkov et al. 2017): the signed gradient averaged over noisy copies.

    Parameters
    ----------
    n_samples : int
        Noisy copies per scan.
    noise : float
        Noise standard deviation as a fraction of each scan's value range
        (max - min); the SmoothGrad paper recommends 0.1-0.2.
    batch_size : int
        Noisy volumes per internal forward/backward pass (memory bound).
    seed : int
        Seed of the noise, so the result is reproducible; the global random state
        is left untouched.

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    from captum.attr import NoiseTunnel, Saliency

    n_samples = _check_positive_int(n_samples, "n_samples")
    batch_size = _check_positive_int(batch_size, "batch_size")
    if not noise >= 0:
        raise BrainLRPError(f"noise must be >= 0, got noise={noise!r}",
                            "use a fraction of the value range such as 0.15")
    with _prepared(model, x, target, start) as (wrapped, x, tgt):
        tunnel = NoiseTunnel(Saliency(wrapped))
        devices = [x.device] if x.device.type == "cuda" else []
        parts = []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            # The noise level is per scan (its own range), and Captum takes one
            # level per call, hence one call per scan.
            for i in range(x.shape[0]):
                sample = x[i:i + 1]
                std = float(noise) * float(sample.max() - sample.min())
                sample_target = tgt if isinstance(tgt, int) else tgt[i]
                parts.append(tunnel.attribute(
                    sample, nt_type="smoothgrad", nt_samples=n_samples,
                    nt_samples_batch_size=batch_size, stdevs=std, target=sample_target,
                    abs=False).detach())
        return torch.cat(parts), _probabilities(wrapped, x, reuse=False)


def occlusion(model: nn.Module, x: Tensor, target: Target = 1,
              start: str = "probability", window: int | Sequence[int] = 16,
              stride: int | Sequence[int] | None = None, batch_size: int = 4,
              ) -> tuple[Tensor, Tensor]:
    """3-D occlusion (Zeiler & Fergus 2014): the output drop when a cube is set to 0.

    Each voxel gets the mean drop over the windows that cover it. At the paper's
    grid with the defaults this is 1,320 forward passes per scan.

    Parameters
    ----------
    window : int or 3 ints
        Side of the occluding box in voxels.
    stride : int or 3 ints, optional
        Step between boxes; defaults to ``window`` (boxes tile the volume).
    batch_size : int
        Occluded volumes per forward pass (memory bound).

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    from captum.attr import Occlusion

    batch_size = _check_positive_int(batch_size, "batch_size")
    sides = _triple(window, "window")
    steps = sides if stride is None else _triple(stride, "stride")
    with _prepared(model, x, target, start) as (wrapped, x, tgt):
        if any(s > n for s, n in zip(sides, x.shape[2:], strict=True)):
            raise BrainLRPError(f"occlusion window {sides} is larger than the volume "
                                f"{tuple(x.shape[2:])}", "use a smaller window")
        channels = x.shape[1]
        with torch.no_grad():
            attribution = Occlusion(wrapped).attribute(
                x, sliding_window_shapes=(channels, *sides), strides=(channels, *steps),
                baselines=0.0, target=tgt, perturbations_per_eval=batch_size)
        return attribution.detach(), _probabilities(wrapped, x, reuse=False)


def _triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(values) != 3 or any(int(v) != v or v < 1 for v in values):
        raise BrainLRPError(f"{name} must be a positive integer or three of them, got {value!r}",
                            f"use e.g. {name}=16")
    return tuple(int(v) for v in values)


__all__ = ["gradient", "gradient_x_input", "guided_backprop", "integrated_gradients",
           "occlusion", "smoothgrad"]
