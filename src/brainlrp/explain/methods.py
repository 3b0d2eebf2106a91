"""Explanation methods by name, and the one entry point :func:`explain`.

Names (the heatmap folder names of a run directory):

- ``lrp-b<beta>``: the paper's beta rule with any ``beta >= 0``; ``lrp-b0``,
  ``lrp-b0.25``, ``lrp-b0.5``, ``lrp-b0.75`` and ``lrp-b1`` are listed;
- ``lrp-bn-merged-b<beta>``: the same after merging BatchNorm into the
  convolutions (``lrp-bn-merged-b0`` is listed);
- ``lrp-eps``, ``lrp-epsilon-plus``: the epsilon and epsilon-plus composites;
- ``gb``, ``gradient``, ``gxi``, ``ig``, ``smoothgrad``, ``occlusion``: Captum
  baselines (:mod:`brainlrp.explain.baselines`).

A new method is one :func:`register_method` call (or one family pattern); the
CLI's choices come from :func:`available_methods`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain import baselines
from brainlrp.explain.lrp import COMPOSITES, lrp

Runner = Callable[..., tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class Method:
    """An explanation method.

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"lrp-b0.5"``.
    run : callable
        ``run(model, x, target=..., **options) -> (attribution, probabilities)``.
    options : tuple of str
        Keyword options ``run`` accepts besides ``target``.
    description : str
        One line for help texts.
    """

    name: str
    run: Runner
    options: tuple[str, ...]
    description: str


METHODS: dict[str, Method] = {}
#: Parametrised names: (pattern, factory from the match, example for messages).
METHOD_FAMILIES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Method], str]] = []


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry under its name."""
    METHODS[method.name] = method
    return method


def register_family(pattern: str, factory: Callable[[re.Match[str]], Method],
                    example: str) -> None:
    """Add parametrised names: ``factory(match)`` builds the method for a full match."""
    METHOD_FAMILIES.append((re.compile(pattern), factory, example))


def available_methods() -> list[str]:
    """Listed method names, in registry order (families accept more, see the module doc)."""
    return list(METHODS)


def get_method(name: str) -> Method:
    """The method called ``name``.

    Raises
    ------
    BrainLRPError
        For an unknown name, listing the known ones.
    """
    if name in METHODS:
        return METHODS[name]
    for pattern, factory, _ in METHOD_FAMILIES:
        match = pattern.fullmatch(str(name))
        if match:
            return factory(match)
    families = ", ".join(example for _, _, example in METHOD_FAMILIES)
    raise BrainLRPError(f"unknown explanation method {name!r}",
                        f"choose one of {', '.join(METHODS)} (or {families})")


def _lrp_method(name: str, composite: str, description: str, **fixed) -> Method:
    def run(model: nn.Module, x: Tensor, target=1, start: str = "probability",
            **params) -> tuple[Tensor, Tensor]:
        result = lrp(model, x, composite, target=target, start=start, **fixed, **params)
        return result.relevance, result.probabilities

    params = [p for p in inspect.signature(COMPOSITES[composite]).parameters if p not in fixed]
    return Method(name, run, ("start", *params), description)


def _beta_method(prefix: str, composite: str, beta: float) -> Method:
    what = "BatchNorm merged, then the beta rule" if composite == "paper-bn-merged" else (
        "the paper's beta rule")
    return _lrp_method(f"{prefix}{beta:g}", composite, f"LRP: {what}, beta={beta:g}",
                       beta=beta)


def _baseline_method(name: str, function: Runner, description: str) -> Method:
    skip = {"model", "x", "target"}
    options = tuple(p for p in inspect.signature(function).parameters if p not in skip)
    return Method(name, function, options, description)


for _beta in (0.0, 0.25, 0.5, 0.75, 1.0):
    register_method(_beta_method("lrp-b", "paper", _beta))
register_method(_beta_method("lrp-bn-merged-b", "paper-bn-merged", 0.0))
register_method(_lrp_method("lrp-eps", "epsilon", "LRP: epsilon rule, BatchNorm merged"))
register_method(_lrp_method("lrp-epsilon-plus", "epsilon-plus",
                            "LRP: epsilon (dense), z+ (conv), box (input layer)"))
register_family(r"lrp-b(\d+(?:\.\d+)?)",
                lambda m: _beta_method("lrp-b", "paper", float(m.group(1))), "lrp-b<beta>")
register_family(r"lrp-bn-merged-b(\d+(?:\.\d+)?)",
                lambda m: _beta_method("lrp-bn-merged-b", "paper-bn-merged", float(m.group(1))),
                "lrp-bn-merged-b<beta>")
register_method(_baseline_method("gb", baselines.guided_backprop, "guided backpropagation"))
register_method(_baseline_method("gradient", baselines.gradient, "gradient (saliency, signed)"))
register_method(_baseline_method("gxi", baselines.gradient_x_input, "gradient x input"))
register_method(_baseline_method("ig", baselines.integrated_gradients, "integrated gradients"))
register_method(_baseline_method("smoothgrad", baselines.smoothgrad, "SmoothGrad"))
register_method(_baseline_method("occlusion", baselines.occlusion, "3-D occlusion"))


def explain(model: nn.Module, x: Tensor, method: str, target: int | Sequence[int] | Tensor = 1,
            *, return_probabilities: bool = False, **options) -> Tensor | tuple[Tensor, Tensor]:
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
        ``window``, ``stride``, ``batch_size``.

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
    attribution, probabilities = spec.run(model, x, target=target, **options)
    device = x.device if isinstance(x, Tensor) else attribution.device
    heatmap = attribution.to(device=device).float()
    if return_probabilities:
        return heatmap, probabilities.to(device=device).float()
    return heatmap


__all__ = ["METHODS", "METHOD_FAMILIES", "Method", "available_methods", "explain", "get_method",
           "register_family", "register_method"]
