"""Explanation methods by name, and the one entry point :func:`explain`.

What a method *is* (its family, parameters, label, default relevance) lives in
:mod:`brainlrp.catalog`; this module attaches a runner to each catalog entry:
LRP methods run the engine's composite named by the entry, the others the function of
:mod:`brainlrp.explain.baselines` (Captum) the entry names as its ``runner``. A new
method is one catalog entry (and, if new, its function in ``baselines``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from brainlrp import catalog
from brainlrp.errors import BrainLRPError
from brainlrp.explain import baselines
from brainlrp.explain.lrp import COMPOSITES, lrp

Runner = Callable[..., tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Method:
    """An explanation method with its runner.

    Attributes
    ----------
    info : catalog.MethodInfo
        The catalog entry.
    run : callable
        ``run(model, x, target=..., **options) -> (attribution, probabilities)``.
    options : tuple of str
        Keyword options ``run`` accepts besides ``target`` (and ``reference``,
        which :func:`explain` passes to the methods that need one).
    """

    info: catalog.MethodInfo
    run: Runner
    options: tuple[str, ...]

    @property
    def name(self) -> str:
        """The catalog name."""
        return self.info.name

    @property
    def needs_reference(self) -> bool:
        """Whether the method explains the difference from a reference image."""
        return self.info.needs_reference

    @property
    def description(self) -> str:
        """One line for help texts."""
        return self.info.description


def available_methods() -> list[str]:
    """Listed method names, in catalog order (families accept more, see the catalog)."""
    return [m for m in catalog.listed() if _runnable(catalog.lookup(m))]


def _runnable(info: catalog.MethodInfo) -> bool:
    return (info.is_lrp and info.composite in COMPOSITES) or _runner(info) is not None


def _runner(info: catalog.MethodInfo) -> Runner | None:
    """The catalog entry's function of :mod:`brainlrp.explain.baselines`, with its fixed
    parameters (``None`` when this version has none of that name)."""
    function = getattr(baselines, info.runner, None) if info.runner else None
    if function is None:
        return None
    return functools.partial(function, **dict(info.params)) if info.params else function


def get_method(name: str) -> Method:
    """The method called ``name``, with its runner.

    Raises
    ------
    BrainLRPError
        For an unknown name (listing the known ones) or a catalog entry with no runner.
    """
    info = catalog.lookup(name)
    if info.is_lrp and info.composite in COMPOSITES:
        return _lrp_method(info)
    function = _runner(info)
    if function is not None:
        skip = {"model", "x", "target", "reference", *dict(info.params)}
        options = tuple(p for p in inspect.signature(function).parameters if p not in skip)
        return Method(info, function, options)
    raise BrainLRPError(f"the explanation method {name!r} has no runner in this version",
                        f"choose one of {', '.join(available_methods())}")


def _lrp_method(info: catalog.MethodInfo) -> Method:
    fixed = dict(info.params)
    composite = info.composite

    def run(model: nn.Module, x: Tensor, target=1, start: str = "probability",
            reference: Tensor | None = None, **params) -> tuple[Tensor, Tensor]:
        result = lrp(model, x, composite, target=target, start=start, reference=reference,
                     **fixed, **params)
        return result.relevance, result.probabilities

    params = [p for p in inspect.signature(COMPOSITES[composite]).parameters if p not in fixed]
    return Method(info, run, ("start", *params))


def explain(model: nn.Module, x: Tensor, method: str, target: int | Sequence[int] | Tensor = 1,
            *, reference: Tensor | None = None, return_probabilities: bool = False,
            **options) -> Tensor | tuple[Tensor, Tensor]:
    """Explain ``model``'s decision for ``target`` on a batch of scans.

    Parameters
    ----------
    model : nn.Module
        A classifier returning ``(batch, n_classes)`` logits, e.g.
        ``build_model("paper", grid_shape)``; it is not changed.
    x : Tensor
        ``(batch, 1, x, y, z)`` float scans (scaled to [0, 1] for the paper's model).
    method : str
        A name from :func:`available_methods`, or ``lrp-b<beta>`` /
        ``lrp-bn-merged-b<beta>`` for any ``beta >= 0``.
    target : int or sequence of int or Tensor
        Class to explain, for all samples or one per sample; 1 = AD.
    reference : Tensor, optional
        The image the scans are compared with, ``(1 or batch, 1, x, y, z)`` (e.g. a
        healthy-looking brain from training controls). Required by, and passed
        only to, the methods that explain a difference from it (catalog flag
        ``needs_reference``: lrp-ref, ig-ref, occlusion-ref); the other methods
        refuse it rather than ignore it, because they explain against their own
        baseline (a black image for ig and occlusion), which a caller giving a
        reference would not expect. ``reference=None`` is accepted everywhere.
    return_probabilities : bool
        Also return the model's class probabilities for ``x``. LRP takes them
        from its own forward pass; the baselines from theirs where it saw ``x``
        itself (gradient, gxi, gb) and from one extra forward pass otherwise.
    **options
        Method options, all optional. Every method takes
        ``start="probability"`` (explain the softmax probability of the target,
        default) or ``"logit"``. LRP: ``epsilon`` (stabiliser), ``low``/``high``
        (input range, epsilon-plus). ig: ``steps``, ``batch_size``. smoothgrad:
        ``n_samples``, ``noise``, ``batch_size``, ``seed``. occlusion:
        ``window``, ``stride``, ``batch_size``. ig-ref: ``steps``,
        ``batch_size``. occlusion-ref: ``areas`` (area codes on the grid),
        ``dilate`` (voxels, default 2), ``batch_size``. noise: ``seed``.
        lrp-epsilon-gamma-box: ``gamma``, ``low``/``high``.

    Returns
    -------
    heatmap : Tensor
        Shaped like ``x``, float32, on ``x``'s device.
    probabilities : Tensor
        Only with ``return_probabilities``: ``(batch, n_classes)`` softmax
        probabilities, ``probabilities[:, 1]`` being the AD probability.

    Raises
    ------
    BrainLRPError
        For an unknown method or option, a target out of range, an unsupported
        layer (LRP) or a malformed input.

    Examples
    --------
    >>> heatmap, probs = explain(model, scans, "lrp-b0", target=1,
    ...                          return_probabilities=True)  # doctest: +SKIP
    """
    spec = get_method(method)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise BrainLRPError(
            f"method {spec.name!r} takes no option {', '.join(map(repr, unknown))}",
            f"it takes: {', '.join(spec.options)}")
    if spec.needs_reference:
        if reference is None:
            raise BrainLRPError(
                f"method {spec.name!r} explains the difference from a reference image and "
                "none was given", "pass reference=<a healthy-looking scan on the same grid, "
                "(1 or batch, 1, x, y, z)>")
        options["reference"] = reference
    elif reference is not None:
        twins = [m for m in available_methods() if catalog.lookup(m).needs_reference]
        raise BrainLRPError(
            f"method {spec.name!r} explains against its own baseline and takes no reference",
            f"use a reference method ({', '.join(twins)}) or leave reference out")
    attribution, probabilities = spec.run(model, x, target=target, **options)
    device = x.device if isinstance(x, Tensor) else attribution.device
    heatmap = attribution.to(device=device).float()
    if return_probabilities:
        return heatmap, probabilities.to(device=device).float()
    return heatmap


__all__ = ["Method", "available_methods", "explain", "get_method"]
