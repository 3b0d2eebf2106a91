"""The checks that need the model: region perturbation (AOPC) and cascading randomisation.

Both run on a seeded sample of AD test scans explained by every method; the
sanity scans are the first of the faithfulness sample.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainlrp.analysis.faithfulness import AOPC_COLUMNS, FAITHFULNESS_COLUMNS
from brainlrp.analysis.faithfulness import faithfulness as run_faithfulness
from brainlrp.analysis.regions import AtlasRegions, MethodRegions
from brainlrp.analysis.sanity import SANITY_COLUMNS, cascading_randomization
from brainlrp.data.grid import Grid, brain_mask
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir

InputsFn = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class AopcSummary:
    """A method's summary part from region perturbation."""

    aopc_relevance: float
    aopc_random: float
    aopc_difference: float


@dataclass(frozen=True)
class SanitySummary:
    """A method's summary part from cascading randomisation (mean Spearman over scans)."""

    sanity_spearman_top_layer: float | None
    sanity_spearman_all_layers: float | None


def load_model_inputs(inputs_fn: InputsFn, scan_ids: list[str], shape: tuple[int, ...]
                      ) -> np.ndarray:
    x = np.asarray(inputs_fn(list(scan_ids)), dtype=np.float32)
    if x.ndim == 4:
        x = x[:, None]
    if x.shape != (len(scan_ids), 1, *shape):
        raise BrainLRPError(f"model inputs have shape {x.shape}, expected "
                            f"{(len(scan_ids), 1, *shape)}",
                            "re-run `brainlrp prepare` with the run's resolution")
    return x


def hc_mean_image(inputs_fn, scan_ids: list[str], shape: tuple[int, ...], batch_size: int
             ) -> np.ndarray:
    """Mean input image of the healthy controls, read in batches (running sum)."""
    total = np.zeros(shape)
    for start in range(0, len(scan_ids), batch_size):
        batch = load_model_inputs(inputs_fn, scan_ids[start: start + batch_size], shape)
        total += batch[:, 0].sum(axis=0, dtype=np.float64)
    return (total / max(len(scan_ids), 1)).astype(np.float32)


def check_sample(results: dict[str, MethodRegions], n: int, seed: int) -> list[str]:
    """AD test scans explained by every method, a seeded sample of ``n`` (sorted)."""
    common = None
    for mr in results.values():
        s = mr.scans
        ad = s[s["label"] == 1]
        test = ad[ad["split"] == "test"]
        ids = set((test if len(test) else ad)["scan_id"])
        common = ids if common is None else common & ids
    pool = sorted(common or [])
    if len(pool) <= n:
        return pool
    rng = np.random.default_rng(seed)
    return sorted(np.asarray(pool)[rng.choice(len(pool), size=n, replace=False)].tolist())


def model_checks(results: dict[str, MethodRegions], atlas: AtlasRegions, grid: Grid,
                 modes: dict[str, str], notices: list[str], config, *, model, inputs_fn: InputsFn,
                 explain_fn, timings: dict[str, float], progress: bool = False,
                 target: int = 1) -> tuple[dict[str, pd.DataFrame], dict[str, list]]:
    """Run the faithfulness and sanity checks the config asks for.

    Parameters
    ----------
    results : dict of str to MethodRegions
    atlas : AtlasRegions
    grid : Grid
    modes : dict
        Relevance mode per method.
    notices : list of str
        Receives one line per skipped check.
    config : AnalysisConfig
    model : torch.nn.Module
        The trained model (a private eval-mode copy is used).
    inputs_fn : callable
        ``inputs_fn(scan_ids) -> (n, 1, X, Y, Z)``.
    explain_fn : callable
        ``explain_fn(model, x, method) -> heatmap``.
    timings : dict
        Receives seconds per check.
    progress : bool
        Show the randomisation check's progress (explanations computed).
    target : int
        AD's output index (the card's ``target_class``).

    Returns
    -------
    tables : dict of str to DataFrame
        ``faithfulness``, ``faithfulness_aopc``, ``sanity`` (those that ran).
    summaries : dict of str to list
        Per method, its summary parts (:class:`AopcSummary`, :class:`SanitySummary`).
    """
    out: dict[str, pd.DataFrame] = {}
    parts: dict[str, list] = {m: [] for m in results}
    # A private copy in eval mode: the caller's model keeps its mode and weights.
    model = copy.deepcopy(model).eval()
    methods = list(results)
    n_sample = max(config.faithfulness_subjects if config.faithfulness else 0,
                   config.sanity_subjects if config.sanity else 0)
    sample = check_sample(results, n_sample, config.seed)
    if not sample:
        notices.append("no AD scan was explained by every method: faithfulness and sanity "
                       "checks skipped")
        return out, parts
    if config.faithfulness:
        tick = time.perf_counter()
        f_ids = sample[: config.faithfulness_subjects]
        hc_ids = sorted({s for mr in results.values()
                         for s in mr.scans.loc[mr.scans["label"] == 0, "scan_id"]})
        if not hc_ids:
            notices.append("no healthy control was analysed (no HC mean image): faithfulness "
                           "check skipped")
        else:
            x = load_model_inputs(inputs_fn, f_ids, grid.shape)
            density = {}
            for m, mr in results.items():
                pos = mr.scans.reset_index(drop=True).set_index("scan_id").index.get_indexer(f_ids)
                density[m] = mr.area_density(atlas)[pos]
            res = run_faithfulness(model, x, hc_mean_image(inputs_fn, hc_ids, grid.shape,
                                                           config.batch_size),
                                   atlas.area_codes, atlas.n_areas, methods, density=density,
                                   scan_ids=f_ids, steps=config.faithfulness_steps,
                                   n_random=config.random_orders, seed=config.seed,
                                   batch_size=min(config.batch_size, 4), target=target)
            out["faithfulness"] = res.curves[list(FAITHFULNESS_COLUMNS)]
            out["faithfulness_aopc"] = res.aopc[list(AOPC_COLUMNS)]
            for row in out["faithfulness_aopc"].itertuples():
                parts[row.method].append(AopcSummary(row.aopc_relevance, row.aopc_random,
                                                     row.aopc_difference))
        timings["faithfulness"] = time.perf_counter() - tick
    if config.sanity:
        tick = time.perf_counter()
        s_ids = sample[: config.sanity_subjects]
        x = load_model_inputs(inputs_fn, s_ids, grid.shape)
        from brainlrp._progress import progress_bar
        from brainlrp.analysis.sanity import weight_layers

        steps = (len(weight_layers(model)) + 1) * len(methods)
        with progress_bar(steps, "sanity check", progress, unit="explanations") as advance:
            san = cascading_randomization(
                model, x, explain_fn.for_scans(s_ids) if hasattr(explain_fn, "for_scans")
                else explain_fn, methods, mask=brain_mask(grid), relevance=modes,
                scan_ids=s_ids, n_voxels=config.sanity_voxels, seed=config.seed,
                advance=advance)[list(SANITY_COLUMNS)]
        out["sanity"] = san
        for method, part in san.groupby("method", sort=False):
            last = part["stage"].max()
            parts[method].append(SanitySummary(
                _mean(part.loc[part["stage"] == 1, "spearman"]),
                _mean(part.loc[part["stage"] == last, "spearman"])))
        timings["sanity"] = time.perf_counter() - tick
    return out, parts


def _mean(values: pd.Series) -> float | None:
    v = values.to_numpy(float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


@dataclass
class ModelContext:
    """The run's model, its inputs and explainer (the caller's where given)."""

    model: object
    inputs_fn: Callable[[list[str]], np.ndarray]
    explain_fn: Callable | None
    #: AD's output index (the card's ``target_class``; an imported model may put AD first).
    target: int = 1


def model_context(rd: RunDir, notices: list[str], what: str, model=None, inputs_fn=None,
                  explain_fn=None) -> ModelContext | None:
    """The run's model (loaded from its checkpoint unless given), a reader of its
    preprocessed inputs and its methods as its heatmaps were made
    (:class:`brainlrp.explain.call.MethodCalls`); ``None``, with a notice that ``what``
    is skipped, when the run has no checkpoint."""
    if model is None:
        if not rd.checkpoint.is_file():
            notices.append(f"no model checkpoint ({rd.checkpoint}): {what} skipped - run "
                           "`brainlrp train`")
            return None
        from brainlrp.training import load_model

        model, _card = load_model(rd.root)
    from brainlrp.card import read_card

    card = read_card(rd.root) if rd.card.is_file() or inputs_fn is None else None
    # AD's output index from the card: an imported model may put AD first.
    target = card.target_class if card is not None else 1
    if inputs_fn is None:
        from brainlrp.data import load_inputs

        prep = card.prep

        def inputs_fn(ids):
            return load_inputs(rd.root, ids, prep)
    if explain_fn is None:
        from brainlrp.explain.call import MethodCalls

        # The methods as the run's heatmaps were made (recorded options, references,
        # areas); the checks bind the scans of their batches (``for_scans``).
        explain_fn = MethodCalls.recorded(
            rd, card.prep if card is not None else None, target,
            card.input.value_range if card is not None else None)
    return ModelContext(model, inputs_fn, explain_fn, target)
