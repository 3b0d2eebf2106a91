"""Faithfulness by region perturbation: does removing relevant areas hurt the AD output?

For each subject the atlas areas are ranked by the subject's own relevance density
(most relevant first). At step ``k`` the voxels of the ``k`` first areas are
replaced by the healthy controls' mean image and the model's AD probability is
recorded. The same is done in random area orders (the baseline). A faithful
heatmap makes the probability fall faster than random: ``AOPC_relevance -
AOPC_random > 0`` (Samek et al. 2017, "Evaluating the visualization of what a deep
neural network has learned").

Perturbations that coincide (e.g. two LRP betas agreeing on the first areas) are
evaluated once: every distinct set of replaced areas is one forward pass. The
forward passes run on a private inference copy of the model (each BatchNorm folded
into the convolution before it, max pooling before ReLU, channels-last memory
layout), which gives the same outputs (to float rounding) about twice as fast on
CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from brainlrp import catalog
from brainlrp.analysis import metrics
from brainlrp.atlas import region_sums
from brainlrp.explain.lrp import MAXPOOL_TYPES, fold_batchnorm

#: Columns of ``analysis/faithfulness.tsv`` (one row per method, scan and step; the
#: random-order baseline is the method ``random``, averaged over its orders).
FAITHFULNESS_COLUMNS = ("method", "scan_id", "order", "step", "n_areas_replaced", "p_ad",
                        "p_ad_drop")
#: Columns of ``analysis/faithfulness_aopc.tsv`` (one row per method).
AOPC_COLUMNS = ("method", "n_subjects", "steps", "aopc_relevance", "aopc_random",
                "aopc_difference")

ExplainFn = Callable[[nn.Module, torch.Tensor, str], torch.Tensor]


def relevance_order(density: np.ndarray) -> np.ndarray:
    """Region codes (1-based) from most to least relevant, per row.

    Parameters
    ----------
    density : array (n_subjects, n_regions)

    Returns
    -------
    array (n_subjects, n_regions) of int
    """
    d = np.asarray(density, dtype=np.float64)
    return np.stack([metrics.top_k(row, row.size) for row in d]) + 1


def random_orders(n_orders: int, n_subjects: int, n_regions: int, seed: int = 0) -> np.ndarray:
    """``(n_orders, n_subjects, n_regions)`` random region orders (1-based codes)."""
    rng = np.random.default_rng(seed)
    base = np.tile(np.arange(1, n_regions + 1), (n_orders, n_subjects, 1))
    return rng.permuted(base, axis=-1)


def _pool_before_relu(module: nn.Module) -> None:
    """Swap ReLU -> MaxPool into MaxPool -> ReLU (in place) inside every Sequential.

    Both are monotone, so ``relu(maxpool(x)) == maxpool(relu(x))`` exactly, and the
    ReLU then touches pool-size^3 times fewer values.
    """
    for child in module.children():
        if isinstance(child, nn.Sequential):
            for i in range(len(child) - 1):
                if isinstance(child[i], nn.ReLU) and isinstance(child[i + 1], MAXPOOL_TYPES):
                    child[i], child[i + 1] = child[i + 1], nn.ReLU(inplace=True)
        _pool_before_relu(child)


def inference_copy(model: nn.Module) -> nn.Module:
    """A private, faster copy for forward passes with the same outputs.

    Eval mode, BatchNorm folded into the layer that feeds it (the LRP engine's
    :func:`~brainlrp.explain.lrp.fold_batchnorm`), max pooling moved before ReLU,
    channels-last memory layout for 3D convolutions.
    """
    fast = copy.deepcopy(model).eval()
    with torch.no_grad():
        fold_batchnorm(fast)
        _pool_before_relu(fast)
    if any(isinstance(m, nn.Conv3d) for m in fast.modules()):
        fast = fast.to(memory_format=torch.channels_last_3d)
    return fast


def predict_ad(model: nn.Module, x: np.ndarray, batch_size: int = 4,
               target: int = 1) -> np.ndarray:
    """Softmax probability of AD (output ``target``, the card's ``target_class``) for
    inputs ``(n, 1, X, Y, Z)``."""
    out = []
    param = next(model.parameters(), None)
    # A model converted by inference_copy has channels-last 3D weights: feed it likewise.
    channels_last = any(isinstance(m, nn.Conv3d) and not m.weight.is_contiguous()
                        for m in model.modules())
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start: start + batch_size]))
            if param is not None:
                batch = batch.to(device=param.device, dtype=param.dtype)
            if channels_last and batch.dim() == 5:
                batch = batch.contiguous(memory_format=torch.channels_last_3d)
            out.append(torch.softmax(model(batch), dim=1)[:, target].double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def perturbation_curves(model: nn.Module, inputs: np.ndarray, baseline: np.ndarray,
                        codes: np.ndarray, orders: np.ndarray, steps: int,
                        batch_size: int = 4, target: int = 1) -> np.ndarray:
    """AD probability after replacing the first 0..``steps`` regions of each order.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode.
    inputs : array (n_subjects, 1, X, Y, Z)
    baseline : array (X, Y, Z)
        What replaces a region (the HC mean image).
    codes : int array (X, Y, Z)
        Region code per voxel (0 = no region).
    orders : int array (n_orders, n_subjects, n_regions)
        Region codes in the order they are replaced.
    steps : int
    batch_size : int
    target : int
        AD's output index.

    Returns
    -------
    array (n_orders, n_subjects, steps + 1)
        Column 0 is the unperturbed input.
    """
    orders = np.asarray(orders)
    n_orders, n_subjects, n_regions = orders.shape
    steps = min(int(steps), n_regions)
    codes = np.asarray(codes)
    base = np.asarray(baseline, dtype=np.float32)
    out = np.zeros((n_orders, n_subjects, steps + 1))
    for s in range(n_subjects):
        # Distinct sets of replaced regions for this subject, in first-seen order.
        keys: dict[frozenset, int] = {}
        where = np.zeros((n_orders, steps + 1), dtype=int)
        for o in range(n_orders):
            for k in range(steps + 1):
                key = frozenset(orders[o, s, :k].tolist())
                where[o, k] = keys.setdefault(key, len(keys))
        sets = list(keys)
        probs = np.zeros(len(sets))
        x = np.asarray(inputs[s], dtype=np.float32)
        for start in range(0, len(sets), batch_size):
            chunk = sets[start: start + batch_size]
            batch = np.empty((len(chunk), *x.shape), dtype=np.float32)
            for j, regions in enumerate(chunk):
                lut = np.zeros(int(codes.max()) + 1, dtype=bool)
                lut[list(regions)] = True
                batch[j] = np.where(lut[codes], base, x)
            probs[start: start + len(chunk)] = predict_ad(model, batch, batch_size, target)
        out[:, s, :] = probs[where]
    return out


@dataclass
class FaithfulnessResult:
    """Perturbation curves and AOPC.

    Attributes
    ----------
    curves : pandas.DataFrame
        :data:`FAITHFULNESS_COLUMNS`.
    aopc : pandas.DataFrame
        :data:`AOPC_COLUMNS`.
    """

    curves: pd.DataFrame
    aopc: pd.DataFrame


def faithfulness(model: nn.Module, inputs: np.ndarray, baseline: np.ndarray, codes: np.ndarray,
                 n_regions: int, methods: Sequence[str],
                 density: Mapping[str, np.ndarray] | None = None,
                 explain_fn: ExplainFn | None = None, relevance: Mapping[str, str] | None = None,
                 scan_ids: Sequence[str] | None = None, steps: int = 20, n_random: int = 2,
                 seed: int = 0, batch_size: int = 4, target: int = 1) -> FaithfulnessResult:
    """Region perturbation for several methods, with a shared random-order baseline.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode; never modified.
    inputs : array (n_subjects, 1, X, Y, Z)
        Preprocessed inputs in [0, 1].
    baseline : array (X, Y, Z)
        The HC mean image.
    codes : int array (X, Y, Z)
        Area code per voxel; ``n_regions`` areas.
    n_regions : int
    methods : sequence of str
    density : mapping, optional
        method -> ``(n_subjects, n_regions)`` relevance density, e.g. from the
        stored heatmaps. Methods missing here are explained with ``explain_fn``.
    explain_fn : callable, optional
        ``explain_fn(model, x, method) -> heatmap`` like ``x``.
    relevance : mapping, optional
        method -> relevance mode for explained heatmaps (default per method).
    scan_ids : sequence of str, optional
        Names of the subjects in the curves table.
    steps : int
        Areas replaced one by one (at most ``n_regions``).
    n_random : int
        Random orders averaged for the baseline.
    seed : int
    batch_size : int
    target : int
        AD's output index (the card's ``target_class``).

    Returns
    -------
    FaithfulnessResult
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    n_subjects = len(inputs)
    scan_ids = list(scan_ids) if scan_ids is not None else [str(i) for i in range(n_subjects)]
    codes = np.asarray(codes)
    counts = np.bincount(codes.reshape(-1), minlength=n_regions + 1)[1:n_regions + 1]
    density = dict(density or {})
    for method in methods:
        if method in density:
            continue
        if explain_fn is None:
            raise ValueError(f"no relevance for {method!r} and no explain_fn to compute it")
        heat = explain_fn(model, torch.from_numpy(inputs), method)
        heat = heat.detach().cpu().numpy().reshape(n_subjects, *codes.shape).astype(np.float32)
        mode = (relevance or {}).get(method, catalog.describe(method).relevance)
        metrics.apply_relevance(heat, mode, out=heat)
        density[method] = metrics.density(region_sums(heat, codes, n_regions), counts)
    steps = min(int(steps), n_regions)
    fast = inference_copy(model)
    order_list = [relevance_order(density[m]) for m in methods]
    rand = random_orders(max(int(n_random), 1), n_subjects, n_regions, seed)
    all_orders = np.concatenate([np.stack(order_list), rand]) if order_list else rand
    curves = perturbation_curves(fast, inputs, baseline, codes, all_orders, steps, batch_size,
                                 target)
    random_curve = curves[len(order_list):].mean(axis=0)  # (n_subjects, steps + 1)
    random_aopc = metrics.aopc(random_curve)

    frames = []
    aopc_rows = []
    for name, curve, order in [*[(m, curves[i], "relevance") for i, m in enumerate(methods)],
                               ("random", random_curve, "random")]:
        k = np.tile(np.arange(steps + 1), n_subjects)
        frames.append(pd.DataFrame({
            "method": name, "scan_id": np.repeat(scan_ids, steps + 1), "order": order,
            "step": k, "n_areas_replaced": k, "p_ad": curve.reshape(-1),
            "p_ad_drop": (curve[:, :1] - curve).reshape(-1)}))
        if name != "random":
            a_rel = float(np.mean(metrics.aopc(curve)))
            a_rand = float(np.mean(random_aopc))
            aopc_rows.append({"method": name, "n_subjects": n_subjects, "steps": steps,
                              "aopc_relevance": a_rel, "aopc_random": a_rand,
                              "aopc_difference": a_rel - a_rand})
    return FaithfulnessResult(
        curves=pd.concat(frames, ignore_index=True)[list(FAITHFULNESS_COLUMNS)],
        aopc=pd.DataFrame(aopc_rows, columns=list(AOPC_COLUMNS)))
