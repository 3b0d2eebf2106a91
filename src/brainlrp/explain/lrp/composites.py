"""Composites: which rule each layer gets, as presets in a registry keyed by name.

A composite maps layer types to rules (optionally a special rule for the input
layer, such as the box rule: the one Linear/ConvNd layer that reads the model's
input in its graph, whatever order the model registers its layers in) and lists
the canonizers to apply first. Layers it does not mention get
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

import torch.fx as fx
from torch import Tensor, nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain.lrp.canonizers import (
    Canonizer,
    ExposeMerges,
    MergeBatchNorm,
    _tensor_nodes,
    trace,
)
from brainlrp.explain.lrp.core import (
    ACTIVATION_TYPES,
    AUTOGRAD_TYPES,
    AVGPOOL_TYPES,
    LINEAR_LAYER_TYPES,
    MAXPOOL_TYPES,
    NORM_TYPES,
    SAMPLE_NORM_TYPES,
    InputLayers,
    Rule,
    _module_label,
    attach_rules,
    check_supported,
    first_linear_layer,
    graph_input_layers,
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
        Rule for the input layer, e.g. the box rule: the one Linear/ConvNd layer
        that reads the model's input, found in the model's graph (see
        :meth:`input_layer`), not the first one the model registers.
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

    def input_layer(self, model: nn.Module) -> nn.Module | None:
        """The layer that gets :attr:`first_layer` (None without such a rule).

        It is the Linear/ConvNd layer that reads the model's input, found in the
        torch.fx graph of the model's forward; the input may pass activations,
        normalisations, pooling and reshapes on its way. A model whose forward does
        not trace falls back to the first Linear/ConvNd layer in registration
        order. :func:`~brainlrp.explain.lrp.lrp` traces nothing: it reads the
        input layer from the autograd graph of its forward pass
        (:meth:`graph_input_layer`), starting from registration order and running
        again where the model reads its input with another layer.

        Raises
        ------
        BrainLRPError
            When the input layer is not one layer: the input reaches several, or a
            layer the model also calls on other tensors, or the output directly.
        """
        if self.first_layer is None:
            return None
        graph = trace(model)
        if graph is None:
            return first_linear_layer(model)
        return self._single_input_layer(model, _traced_input_layers(model, graph))

    def graph_input_layer(self, output: Tensor, x: Tensor, model: nn.Module
                          ) -> nn.Module | None:
        """:meth:`input_layer` as the autograd graph of a forward pass shows it.

        ``output`` is the model's output for ``x`` (a leaf that requires grad)
        computed inside :meth:`context`. None without a :attr:`first_layer`.
        """
        if self.first_layer is None:
            return None
        return self._single_input_layer(model, graph_input_layers(output, x))

    def _single_input_layer(self, model: nn.Module, found: InputLayers) -> nn.Module:
        if found.single is not None:
            return found.single
        names = {id(m): _module_label(name, m) for name, m in model.named_modules()}
        order = {id(m): i for i, m in enumerate(model.modules())}
        layers = sorted(found.layers, key=lambda m: order.get(id(m), len(order)))
        listed = " and ".join(names.get(id(m), type(m).__name__) for m in layers)
        if found.shared:
            shared = ", ".join(names.get(id(m), type(m).__name__) for m in found.shared)
            problem = f"reaches {listed}, and the model also calls {shared} on other tensors"
        elif found.direct:
            problem = ("reaches the output past every Linear/Conv layer"
                       + (f" (besides {listed})" if layers else ""))
        elif layers:
            problem = f"reaches several Linear/Conv layers: {listed}"
        else:
            problem = "reaches no Linear/Conv layer"
        raise BrainLRPError(
            f"the composite {self.name!r} has a rule for the layer that reads the input "
            f"({self.first_layer!r}), but the model's input {problem}: no one layer "
            "reads it",
            "give the model a single Linear/Conv layer that reads the input, or use a "
            "composite without an input-layer rule (e.g. 'epsilon' or 'paper')")

    def rules(self, model: nn.Module, input_layer: nn.Module | None = None
              ) -> dict[nn.Module, Rule]:
        """The rule of every layer that has one.

        Parameters
        ----------
        model : nn.Module
        input_layer : nn.Module, optional
            The layer that gets :attr:`first_layer`; found by :meth:`input_layer`
            when omitted.

        Raises
        ------
        BrainLRPError
            For an unsupported layer, a Linear/ConvNd layer without a rule, or an
            input layer that is not one layer (see :meth:`input_layer`).
        """
        leaves = self.check(model)
        first = self.input_layer(model) if input_layer is None else input_layer
        if first is not None and not any(first is module for _, module in leaves):
            raise BrainLRPError(
                f"the input layer {type(first).__name__} is not a layer of the model",
                "pass one of the model's own Linear/Conv layers, or leave input_layer out")
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
    def context(self, model: nn.Module, input_layer: nn.Module | None = None
                ) -> Iterator[dict[nn.Module, Rule]]:
        """Apply the canonizers and attach the rules; undo everything on exit.

        ``input_layer``: as in :meth:`rules`.
        """
        self.check(model)
        with contextlib.ExitStack() as stack:
            for canonizer in self.canonizers:
                stack.enter_context(canonizer.apply(model))
            rules = self.rules(model, input_layer)
            stack.enter_context(attach_rules(rules))
            yield rules

    def __repr__(self) -> str:
        return f"Composite({self.name!r})"


def _traced_input_layers(model: nn.Module, graph: fx.Graph) -> InputLayers:
    """:class:`InputLayers` from the model's torch.fx graph (leaf-module calls)."""
    inputs = [node for node in graph.nodes if node.op == "placeholder"]
    if not inputs:
        return InputLayers(())
    tensors = _tensor_nodes(graph)
    calls: dict[int, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            calls[id(module)] = calls.get(id(module), 0) + 1
    readers: dict[int, nn.Module] = {}
    reading_calls: dict[int, int] = {}
    direct = False
    stack, seen = [inputs[0]], {inputs[0]}
    while stack:
        for user in stack.pop().users:
            if user in seen:
                continue
            seen.add(user)
            if user.op == "output":
                direct = True
                continue
            module = model.get_submodule(user.target) if user.op == "call_module" else None
            if isinstance(module, LINEAR_LAYER_TYPES):
                readers[id(module)] = module
                reading_calls[id(module)] = reading_calls.get(id(module), 0) + 1
            elif user in tensors:
                stack.append(user)
    shared = tuple(m for k, m in readers.items() if calls[k] > reading_calls[k])
    return InputLayers(tuple(readers.values()), shared, direct)


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
