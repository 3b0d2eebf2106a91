"""Composites: which rule each layer gets, as presets in a registry keyed by name.

A composite maps layer types to rules (optionally a special rule for the input
layer) and lists the canonizers to apply first. Layers it does not mention get
the defaults: elementwise activations (ReLU, LeakyReLU, ELU, PReLU) and
normalisations pass relevance unchanged, average pooling shares it
proportionally, residual sums share it by the summands' values, concatenations
split it back to their inputs, and max pooling, Flatten, Dropout and Identity
keep their gradient (winner takes all, reshape, identity). The layer types a
composite supports are those of its layer map and the defaults, so a rule for a
new layer type makes models with that layer explainable.

Normalisation layers: BatchNorm passes relevance (the paper's mode) or is merged
into the Linear/Conv layer that feeds it (:class:`MergeBatchNorm`, in the
"-bn-merged", "epsilon" and "epsilon-plus" presets). A BatchNorm that no such
layer feeds (pre-activation blocks as in DenseNet: BatchNorm, ReLU, Conv) stays
and passes relevance. InstanceNorm, GroupNorm and LayerNorm use the sample's own
statistics, so they cannot be merged into fixed weights; they pass relevance
too. Passing relevance keeps each layer's total, but the shift such a layer adds
(like a bias) means the network as a whole does not conserve relevance exactly.

Residual additions and concatenations in a model's forward are routed through
:class:`~brainlrp.explain.lrp.layers.Sum` and
:class:`~brainlrp.explain.lrp.layers.Concat` layers by :class:`ExposeMerges`,
which every composite applies first.

The registry drives the valid names everywhere (API, CLI), so adding a preset is
one decorated function.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence

from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain.lrp.canonizers import Canonizer, ExposeMerges, MergeBatchNorm
from brainlrp.explain.lrp.core import (
    ACTIVATION_TYPES,
    AUTOGRAD_TYPES,
    AVGPOOL_TYPES,
    LINEAR_LAYER_TYPES,
    MAXPOOL_TYPES,
    NORM_TYPES,
    SAMPLE_NORM_TYPES,
    Rule,
    attach_rules,
    check_supported,
    first_linear_layer,
    has_offset,
)
from brainlrp.explain.lrp.layers import Concat, Sum
from brainlrp.explain.lrp.rules import (
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Pass,
    Proportional,
    RescaleLinear,
    RescaleMaxPool,
    RescaleProportional,
    RescaleSum,
    Split,
    SumShare,
    ZBox,
    ZPlus,
)

LayerMap = Sequence[tuple[type[nn.Module] | tuple[type[nn.Module], ...], Rule | None]]

#: Rules for the layers a composite does not mention; None keeps the gradient.
DEFAULT_LAYER_MAP: LayerMap = (
    (ACTIVATION_TYPES, Pass()),
    (NORM_TYPES, Pass()),
    (AVGPOOL_TYPES, Proportional()),
    (Sum, SumShare()),
    (Concat, Split()),
    (AUTOGRAD_TYPES, None),
)


class Composite:
    """Rules for every layer of a model, plus canonizers applied before them.

    Parameters
    ----------
    layer_map : sequence of (type or tuple of types, Rule or None)
        First match wins; checked before :data:`DEFAULT_LAYER_MAP`.
    first_layer : Rule, optional
        Rule for the input layer (the first Linear/ConvNd in registration order),
        e.g. the box rule.
    canonizers : sequence of Canonizer
        Entered in order before the rules are attached, left in reverse order,
        after :class:`ExposeMerges` (unless ``expose_merges`` is False).
    name : str
        For messages and ``repr``.
    expose_merges : bool
        Route additions and concatenations through Sum/Concat layers first.
    reference : bool
        The rules explain the difference from a reference image: they read the
        activations of the stacked batch ``(scans, references)`` (see
        :func:`~brainlrp.explain.lrp.lrp`). Biases and BatchNorm shifts then
        cancel, so they do not keep the network from conserving relevance.
    """

    def __init__(self, layer_map: LayerMap, first_layer: Rule | None = None,
                 canonizers: Sequence[Canonizer] = (), name: str = "custom",
                 expose_merges: bool = True, reference: bool = False):
        self.reference = bool(reference)
        self.layer_map = tuple(layer_map)
        self.first_layer = first_layer
        self.canonizers = ((ExposeMerges(),) if expose_merges else ()) + tuple(canonizers)
        self.name = name

    @property
    def supported_types(self) -> tuple[type[nn.Module], ...]:
        """Leaf types this composite has a rule (or a gradient) for; Linear/ConvNd
        always, so that a missing rule for them is named as such."""
        found: list[type[nn.Module]] = list(LINEAR_LAYER_TYPES)
        for types, _ in (*self.layer_map, *DEFAULT_LAYER_MAP):
            found.extend(types if isinstance(types, tuple) else (types,))
        return tuple(dict.fromkeys(found))

    def check(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """:func:`check_supported` with this composite's layer types."""
        return check_supported(model, self.supported_types)

    def conserves(self, model: nn.Module, rules: dict[nn.Module, Rule]) -> bool:
        """Whether the input relevance must sum to the explained output.

        True when every rule in use is conserving, no layer adds an offset (a
        bias, a BatchNorm shift, a per-sample normalisation) and every layer
        without a rule is one whose gradient is its rule. Call it inside
        :meth:`context`, where canonizers (merged biases included) are applied.
        """
        for _, module in self.check(model):
            rule = rules.get(module)
            if rule is None:
                if not isinstance(module, AUTOGRAD_TYPES):
                    return False
            elif not rule.conserving:
                return False
            # Against a reference a fixed offset cancels; a per-sample one does not.
            cancels = self.reference and not isinstance(module, SAMPLE_NORM_TYPES)
            if has_offset(module) and not cancels:
                return False
        return True

    def rules(self, model: nn.Module) -> dict[nn.Module, Rule]:
        """The rule of every layer that has one.

        Raises
        ------
        BrainLRPError
            For an unsupported layer, or a Linear/ConvNd layer without a rule.
        """
        leaves = self.check(model)
        first = first_linear_layer(model)
        rules: dict[nn.Module, Rule] = {}
        for name, module in leaves:
            if module is first and self.first_layer is not None:
                rules[module] = self.first_layer
                continue
            for types, rule in (*self.layer_map, *DEFAULT_LAYER_MAP):
                if isinstance(module, types):
                    if rule is not None:
                        rules[module] = rule
                    break
            if isinstance(module, LINEAR_LAYER_TYPES) and module not in rules:
                raise BrainLRPError(
                    f"the composite {self.name!r} has no rule for {name} "
                    f"({type(module).__name__})", "add the layer type to its layer map")
        return rules

    @contextlib.contextmanager
    def context(self, model: nn.Module) -> Iterator[dict[nn.Module, Rule]]:
        """Apply the canonizers and attach the rules; undo everything on exit."""
        self.check(model)
        with contextlib.ExitStack() as stack:
            for canonizer in self.canonizers:
                stack.enter_context(canonizer.apply(model))
            rules = self.rules(model)
            stack.enter_context(attach_rules(rules))
            yield rules

    def __repr__(self) -> str:
        return f"Composite({self.name!r})"


COMPOSITES: dict[str, Callable[..., Composite]] = {}


def register_composite(name: str) -> Callable[[Callable[..., Composite]], Callable[..., Composite]]:
    """Decorator adding a composite factory ``factory(**params) -> Composite`` under ``name``."""
    def decorate(factory: Callable[..., Composite]) -> Callable[..., Composite]:
        COMPOSITES[name] = factory
        return factory
    return decorate


def available_composites() -> list[str]:
    """Names of the registered composites."""
    return list(COMPOSITES)


def get_composite(name: str, **params) -> Composite:
    """Build the registered composite ``name`` with ``params``.

    Raises
    ------
    BrainLRPError
        For an unknown name or a parameter the composite does not take.
    """
    if name not in COMPOSITES:
        raise BrainLRPError(f"unknown LRP composite {name!r}",
                            f"choose one of {', '.join(COMPOSITES)}")
    factory = COMPOSITES[name]
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise BrainLRPError(
            f"the composite {name!r} takes no parameter {', '.join(map(repr, unknown))}",
            f"it takes: {', '.join(accepted) or 'no parameters'}")
    return factory(**params)


@register_composite("paper")
def paper(beta: float = 0.0, epsilon: float = 1e-6) -> Composite:
    """The paper's setting: the beta rule on every Linear/Conv layer (the input layer
    too), BatchNorm and ReLU pass relevance unchanged, max pooling winner takes all."""
    rule = AlphaBeta(beta=beta, epsilon=epsilon)
    return Composite([(LINEAR_LAYER_TYPES, rule)], name=f"paper (beta={beta:g})")


@register_composite("paper-bn-merged")
def paper_bn_merged(beta: float = 0.0, epsilon: float = 1e-6) -> Composite:
    """The beta rule everywhere after merging each BatchNorm into the layer that feeds
    it (one that no such layer feeds passes relevance, as in "paper")."""
    rule = AlphaBeta(beta=beta, epsilon=epsilon)
    return Composite([(LINEAR_LAYER_TYPES, rule)], canonizers=[MergeBatchNorm(strict=False)],
                     name=f"paper-bn-merged (beta={beta:g})")


@register_composite("epsilon-plus")
def epsilon_plus(epsilon: float = 1e-6, low: float = 0.0, high: float = 1.0) -> Composite:
    """Epsilon on dense layers, z+ on convolutions, the box rule on the input layer
    (range ``[low, high]``), BatchNorm merged (Montavon et al. 2019's recommendation)."""
    return Composite([(nn.Linear, Epsilon(epsilon)), (LINEAR_LAYER_TYPES, ZPlus(epsilon))],
                     first_layer=ZBox(low, high, epsilon),
                     canonizers=[MergeBatchNorm(strict=False)], name="epsilon-plus")


@register_composite("epsilon")
def epsilon_everywhere(epsilon: float = 1e-6) -> Composite:
    """The epsilon rule on every Linear/Conv layer, BatchNorm merged."""
    return Composite([(LINEAR_LAYER_TYPES, Epsilon(epsilon))],
                     canonizers=[MergeBatchNorm(strict=False)], name="epsilon")


@register_composite("epsilon-gamma-box")
def epsilon_gamma_box(epsilon: float = 1e-6, gamma: float = 0.25, low: float = 0.0,
                      high: float = 1.0) -> Composite:
    """Epsilon on dense layers, gamma on convolutions, the box rule on the input layer
    (range ``[low, high]``: scans are min-max scaled to [0, 1]), BatchNorm merged
    (Kohlbrenner et al. 2020's recommendation; zennit's ``EpsilonGammaBox``)."""
    return Composite([(nn.Linear, Epsilon(epsilon)), (LINEAR_LAYER_TYPES, Gamma(gamma, epsilon))],
                     first_layer=ZBox(low, high, epsilon),
                     canonizers=[MergeBatchNorm(strict=False)], name="epsilon-gamma-box")


@register_composite("epsilon-plus-flat")
def epsilon_plus_flat(epsilon: float = 1e-6) -> Composite:
    """Epsilon on dense layers, z+ on convolutions, the flat rule on the input layer,
    BatchNorm merged (zennit's ``EpsilonPlusFlat``)."""
    return Composite([(nn.Linear, Epsilon(epsilon)), (LINEAR_LAYER_TYPES, ZPlus(epsilon))],
                     first_layer=Flat(epsilon), canonizers=[MergeBatchNorm(strict=False)],
                     name="epsilon-plus-flat")


@register_composite("reference")
def reference_rescale(epsilon: float = 1e-6) -> Composite:
    """DeepLIFT's rescale rule as LRP on differences from a reference image.

    Linear/Conv layers share relevance by ``w_ij dx_i / dz_j``, elementwise
    activations and normalisations pass it, average pooling and residual sums
    share it by differences, max pooling routes it to the scan's winner where the
    output did not fall and to the reference's winner where it fell (Captum's
    ``DeepLift``). BatchNorm is not merged: in eval mode it is affine, so its
    shift cancels in differences and its scale cancels between ``dx`` and ``dz``.
    Needs ``reference=`` in :func:`~brainlrp.explain.lrp.lrp`.
    """
    return Composite([(LINEAR_LAYER_TYPES, RescaleLinear(epsilon)),
                      (MAXPOOL_TYPES, RescaleMaxPool()),
                      (AVGPOOL_TYPES, RescaleProportional(epsilon)),
                      (Sum, RescaleSum(epsilon))],
                     name="reference (rescale)", reference=True)


__all__ = ["COMPOSITES", "DEFAULT_LAYER_MAP", "Composite", "available_composites",
           "get_composite", "register_composite"]
