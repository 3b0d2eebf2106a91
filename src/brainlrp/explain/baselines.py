"""Comparison methods through Captum: guided backprop, gradient, gradient x input,
integrated gradients, SmoothGrad and 3-D occlusion; their counterparts against a
reference image (integrated gradients from it, atlas-area occlusion by it); and
two model-free floors every benchmark shows (Sobel edges of the scan, noise).

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
    prepare_reference,
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
    return _integrated_gradients(model, x, None, target, start, steps, batch_size)


def integrated_gradients_from_reference(
        model: nn.Module, x: Tensor, target: Target = 1, start: str = "probability",
        steps: int = 32, batch_size: int = 4, *, reference: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Integrated gradients on the straight path from ``reference`` to the scan.

    The attributions sum approximately to ``f(x) - f(reference)``: the evidence
    for the target in what the scan has and the reference has not.

    Parameters
    ----------
    steps, batch_size : int
        See :func:`integrated_gradients`.
    reference : Tensor
        ``(1 or batch, channel, x, y, z)``, e.g. a healthy-looking brain.

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    return _integrated_gradients(model, x, reference, target, start, steps, batch_size,
                                 needs_reference=True)


def _integrated_gradients(model: nn.Module, x: Tensor, reference: Tensor | None,
                          target: Target, start: str, steps: int, batch_size: int,
                          needs_reference: bool = False) -> tuple[Tensor, Tensor]:
    from captum.attr import IntegratedGradients

    steps = _check_positive_int(steps, "steps")
    batch_size = _check_positive_int(batch_size, "batch_size")
    with _prepared(model, x, target, start) as (wrapped, x, tgt):
        baseline = (prepare_reference(model, x, reference) if needs_reference
                    else torch.zeros_like(x))
        attribution = IntegratedGradients(wrapped).attribute(
            x, baselines=baseline, target=tgt, n_steps=steps, internal_batch_size=batch_size)
        return attribution.detach(), _probabilities(wrapped, x, reuse=False)


#: Captum's noise-tunnel aggregations: SmoothGrad (mean gradient), SmoothGrad squared
#: (mean squared gradient, Hooker et al. 2019) and VarGrad (variance of the gradient,
#: Adebayo et al. 2018).
#: The statistic over the noisy copies' gradients -> Captum's ``nt_type`` for it.
NOISE_TUNNELS = {"mean": "smoothgrad",  # Captum's nt_type names, not method names
                 "mean-square": "smoothgrad_sq",
                 "variance": "vargrad"}  # Captum's nt_type names, not method names


def smoothgrad(model: nn.Module, x: Tensor, target: Target = 1,
               start: str = "probability", n_samples: int = 25, noise: float = 0.15,
               batch_size: int = 4, seed: int = 0, statistic: str = "mean"
               ) -> tuple[Tensor, Tensor]:
    """SmoothGrad (Smilkov et al. 2017): the signed gradient averaged over noisy copies,
    or its relatives (``statistic``: :data:`NOISE_TUNNELS`).

    25 copies at 15 % of the scan's range: Smilkov et al. found maps sharpen up to
    10-20 % noise and change little beyond about 50 samples; 25 keeps the cost at 25
    gradients while the map's voxel-wise sampling error is a fifth of one gradient's
    (1/sqrt(25)), below the differences the benchmark measures.

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
    statistic : {"mean", "mean-square", "variance"}
        The mean gradient (SmoothGrad), the mean squared gradient (SmoothGrad squared)
        or the gradient's variance (VarGrad) over the noisy copies.

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    from captum.attr import NoiseTunnel, Saliency

    if statistic not in NOISE_TUNNELS:
        raise BrainLRPError(f"unknown noise-tunnel statistic {statistic!r}",
                            f"use one of {', '.join(NOISE_TUNNELS)}")
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
                    sample, nt_type=NOISE_TUNNELS[statistic], nt_samples=n_samples,
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


def occlusion_from_reference(
        model: nn.Module, x: Tensor, target: Target = 1, start: str = "probability",
        areas=None, dilate: int = 2, batch_size: int = 4, *,
        reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Area occlusion by the reference: the output drop when one atlas area is
    replaced by the reference image's values there.

    Each area (Neuromorphometrics areas, left and right merged, unless ``areas``
    is given) is grown by ``dilate`` voxels into voxels no area holds (CSF and
    background, where atrophy shows as widened spaces), each such voxel going to
    the nearest area; atlas voxels keep their own area, so grown areas never
    overlap. One model pass per area and scan gives ``drop = f(x) - f(x with the
    area from the reference)``, spread evenly over the area's voxels (value =
    drop / n_voxels), so an area's relevance sum equals its drop. Voxels of no
    area get 0.

    Parameters
    ----------
    areas : array-like of int, optional
        Area code per voxel on the input grid (0 = none), shaped like one scan's
        volume. Without it the built-in Neuromorphometrics atlas is resampled to the
        template grid whose shape matches the input (1, 1.5, 2, 3 or 4 mm).
    dilate : int
        Voxels each area grows into unlabelled voxels, ``>= 0``.
    batch_size : int
        Occluded volumes per forward pass (memory bound).
    reference : Tensor
        ``(1 or batch, channel, x, y, z)``, e.g. a healthy-looking brain.

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    batch_size = _check_positive_int(batch_size, "batch_size")
    if int(dilate) != dilate or dilate < 0:
        raise BrainLRPError(f"dilate must be an integer >= 0, got dilate={dilate!r}",
                            "use e.g. dilate=2 (voxels)")
    with _prepared(model, x, target, start) as (wrapped, x, tgt):
        ref = prepare_reference(model, x, reference)
        codes = _grown_areas(_area_codes(areas, tuple(x.shape[2:])), int(dilate))
        labels = torch.as_tensor(codes, device=x.device)
        present = torch.unique(labels)
        present = present[present > 0]
        masks = labels[None] == present[:, None, None, None]  # (areas, X, Y, Z)
        counts = masks.flatten(1).sum(1)
        targets = torch.as_tensor(tgt, device=x.device).expand(x.shape[0])
        out = torch.zeros_like(x)
        with torch.no_grad():
            for i in range(x.shape[0]):
                scan, base = x[i], ref[i]
                full = wrapped(scan[None])[0, targets[i]]
                drops = []
                for chunk in masks.split(batch_size):
                    # (k, C, X, Y, Z): the scan with one area from the reference each.
                    occluded = torch.where(chunk[:, None], base[None], scan[None])
                    drops.append(full - wrapped(occluded)[:, targets[i]])
                drop = torch.cat(drops)
                density = (drop / counts).to(x.dtype)
                voxel = torch.zeros(int(labels.max()) + 1, dtype=x.dtype, device=x.device)
                voxel[present] = density
                out[i] = voxel[labels.long()][None].expand_as(scan)
        return out, _probabilities(wrapped, x, reuse=False)


#: Template resolutions (mm) tried to recognise an input grid by its shape.
_RESOLUTIONS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)


def _area_codes(areas, shape: tuple[int, int, int]):
    """Area code per voxel on the input grid, given or from the built-in atlas."""
    import numpy as np

    if areas is not None:
        codes = np.asarray(areas.cpu() if isinstance(areas, Tensor) else areas)
        if codes.shape != shape or not np.issubdtype(codes.dtype, np.integer):
            raise BrainLRPError(
                f"areas must be an integer code array shaped like one scan {shape}, got "
                f"{codes.dtype} {codes.shape}", "give the atlas areas on the model grid")
        if codes.min() < 0 or codes.max() == 0:
            raise BrainLRPError("areas must be codes >= 0 with at least one area (> 0)",
                                "use 0 outside the areas and 1, 2, ... for the areas")
        return codes.astype(np.int64)
    return _atlas_areas(shape)


def _atlas_areas(shape: tuple[int, int, int]):
    from brainlrp.data.grid import Grid

    for resolution in _RESOLUTIONS:
        grid = Grid.from_resolution(resolution)
        if grid.shape == shape:
            from brainlrp.atlas import area_codes

            return area_codes(grid)
    raise BrainLRPError(
        f"no template grid has the input's shape {shape}, so the atlas cannot be placed",
        "pass areas=<int code array on the model grid> (e.g. RegionReducer(level='area')"
        ".fit(grid).codes_)")


def _grown_areas(codes, dilate: int):
    """``codes`` with each unlabelled voxel within ``dilate`` voxels of an area given
    to the nearest area (atlas voxels keep theirs)."""
    import numpy as np
    from scipy import ndimage

    if dilate == 0:
        return codes
    distance, nearest = ndimage.distance_transform_edt(codes == 0, return_indices=True)
    grown = codes[tuple(nearest)]
    return np.where((codes == 0) & (distance > dilate), 0, grown)


def edges(model: nn.Module, x: Tensor, target: Target = 1,
          start: str = "probability") -> tuple[Tensor, Tensor]:
    """A model-free floor: the Sobel gradient magnitude of the scan itself.

    ``sqrt(sum_axis sobel(x, axis)^2)`` per channel (scipy.ndimage, edges
    reflected). A method whose heatmap scores no better than this only shows
    where the anatomy has edges. ``model``, ``target`` and ``start`` are used
    for the probabilities only.

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    import numpy as np
    from scipy import ndimage

    with _prepared(model, x, target, start) as (wrapped, x, _):
        volumes = x.detach().cpu().double().numpy()
        out = np.zeros_like(volumes)
        for index in np.ndindex(*volumes.shape[:2]):
            volume = volumes[index]
            out[index] = np.sqrt(sum(ndimage.sobel(volume, axis=a) ** 2 for a in range(3)))
        attribution = torch.as_tensor(out, dtype=x.dtype, device=x.device)
        return attribution, _floor_probabilities(wrapped, x)


def reference_difference(model: nn.Module, x: Tensor, target: Target = 1,
                         start: str = "probability", *, reference: Tensor | None = None
                         ) -> tuple[Tensor, Tensor]:
    """A model-free floor: the reference minus the scan.

    Where the scan is darker than its healthy reference (lost tissue in a T1 image) the
    map is positive. Against a ``-restore`` reference (the voxel-wise maximum of scan and
    reference) it is one-sided by construction. An explanation against that reference
    that scores no better than this map adds nothing the reference did not already show.
    ``model``, ``target`` and ``start`` are used for the probabilities only.

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    with _prepared(model, x, target, start) as (wrapped, x, _):
        ref = torch.as_tensor(reference, dtype=x.dtype, device=x.device).expand_as(x)
        return (ref - x).detach(), _floor_probabilities(wrapped, x)


def random_floor(model: nn.Module, x: Tensor, target: Target = 1,
                 start: str = "probability", seed: int = 0) -> tuple[Tensor, Tensor]:
    """A model-free floor: uniform noise in [0, 1) per voxel.

    Scan ``i`` of the batch gets the noise of ``numpy.random.default_rng([seed, i])``,
    reproducible and independent of the global random state.

    Returns
    -------
    attribution, probabilities : Tensor
        See :func:`guided_backprop`.
    """
    import numpy as np

    with _prepared(model, x, target, start) as (wrapped, x, _):
        noise = np.stack([np.random.default_rng([int(seed), i]).random(x.shape[1:])
                          for i in range(x.shape[0])])
        attribution = torch.as_tensor(noise, dtype=x.dtype, device=x.device)
        return attribution, _floor_probabilities(wrapped, x)


def _floor_probabilities(wrapped: _Explained, x: Tensor) -> Tensor:
    """The probabilities of ``x`` from one pass that also checks the target's range."""
    with torch.no_grad():
        wrapped(x)
    return _probabilities(wrapped, x, reuse=True)


def _triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    values = (value,) * 3 if isinstance(value, int) else tuple(value)
    if len(values) != 3 or any(int(v) != v or v < 1 for v in values):
        raise BrainLRPError(f"{name} must be a positive integer or three of them, got {value!r}",
                            f"use e.g. {name}=16")
    return tuple(int(v) for v in values)


__all__ = ["edges", "gradient", "gradient_x_input", "guided_backprop", "integrated_gradients",
           "integrated_gradients_from_reference", "occlusion", "occlusion_from_reference",
           "random_floor", "smoothgrad"]
