"""Sanity check by cascading model randomisation (Adebayo et al. 2018, "Sanity checks
for saliency maps").

The weight layers (convolutions and linear layers) of a copy of the model are
re-initialised one after another from the top (the classifier's last layer first),
cumulatively. After each step every method explains the same inputs again, and the
Spearman rank correlation with the trained model's heatmap is recorded over a fixed
random sample of brain voxels. A method that explains the model, not the image,
loses its correlation as the weights it depends on are destroyed.

The given model is never changed: the randomisation happens on a deep copy, with
its own seeded random stream (the global torch generator is left as it was).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from brainlrp import catalog
from brainlrp.analysis import metrics

#: Columns of ``analysis/sanity.tsv`` (one row per method, scan and randomisation stage).
SANITY_COLUMNS = ("method", "scan_id", "stage", "layer", "spearman")

ExplainFn = Callable[[nn.Module, torch.Tensor, str], torch.Tensor]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolution and linear layers in forward (registration) order."""
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def reinitialise(module: nn.Module, seed: int) -> None:
    """Draw fresh default-initialised weights for ``module`` from a seeded stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:  # pragma: no cover - every layer of weight_layers has it
            for p in module.parameters(recurse=False):
                nn.init.normal_(p, std=0.02)


def _heatmaps(model: nn.Module, x: torch.Tensor, methods: Sequence[str],
              explain_fn: ExplainFn, modes: Mapping[str, str], voxels: np.ndarray,
              advance: Callable[[int], None]) -> dict[str, np.ndarray]:
    """Sampled relevance of every method: ``(n_subjects, n_sampled_voxels)``."""
    out = {}
    for method in methods:
        heat = explain_fn(model, x, method).detach().cpu().numpy().astype(np.float32)
        flat = heat.reshape(len(heat), -1)[:, voxels]
        out[method] = metrics.apply_relevance(flat, modes[method])
        advance(1)
    return out


def cascading_randomization(model: nn.Module, inputs: np.ndarray, explain_fn: ExplainFn,
                            methods: Sequence[str], mask: np.ndarray | None = None,
                            relevance: Mapping[str, str] | None = None,
                            scan_ids: Sequence[str] | None = None, n_voxels: int = 20000,
                            seed: int = 0, advance: Callable[[int], None] | None = None
                            ) -> pd.DataFrame:
    """Spearman between trained and progressively randomised heatmaps.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode; not modified.
    inputs : array (n_subjects, 1, X, Y, Z)
    explain_fn : callable
        ``explain_fn(model, x, method) -> heatmap`` like ``x``.
    methods : sequence of str
    mask : bool array (X, Y, Z), optional
        Voxels to compare (the brain); all voxels by default.
    relevance : mapping, optional
        method -> relevance mode (default per method), applied before ranking.
    scan_ids : sequence of str, optional
    n_voxels : int
        Voxels sampled (without replacement, seeded) for the rank correlation.
    seed : int
    advance : callable, optional
        Called with 1 after each method's heatmaps at each stage (a progress bar of
        ``(n_weight_layers + 1) * len(methods)`` steps).

    Returns
    -------
    pandas.DataFrame
        :data:`SANITY_COLUMNS`; stage ``k`` has the top ``k`` weight layers
        randomised, ``layer`` names the layer randomised at that stage.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    n_subjects = len(inputs)
    scan_ids = list(scan_ids) if scan_ids is not None else [str(i) for i in range(n_subjects)]
    spatial = inputs.shape[2:]
    candidates = (np.flatnonzero(np.asarray(mask, dtype=bool).reshape(-1)) if mask is not None
                  else np.arange(int(np.prod(spatial))))
    rng = np.random.default_rng(seed)
    voxels = np.sort(rng.choice(candidates, size=min(int(n_voxels), candidates.size),
                                replace=False))
    modes = {m: (relevance or {}).get(m, catalog.describe(m).relevance) for m in methods}

    work = copy.deepcopy(model).eval()
    param = next(work.parameters(), None)
    x = torch.from_numpy(inputs)
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    advance = advance or (lambda n=1: None)
    reference = _heatmaps(work, x, methods, explain_fn, modes, voxels, advance)
    rows = []
    layers = weight_layers(work)
    for stage, (name, module) in enumerate(reversed(layers), start=1):
        reinitialise(module, seed + stage)
        randomised = _heatmaps(work, x, methods, explain_fn, modes, voxels, advance)
        for method in methods:
            for i, sid in enumerate(scan_ids):
                rows.append({"method": method, "scan_id": sid, "stage": stage, "layer": name,
                             "spearman": metrics.spearman(reference[method][i],
                                                          randomised[method][i])})
    return pd.DataFrame(rows, columns=list(SANITY_COLUMNS))
