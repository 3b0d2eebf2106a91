"""Canonizers: temporary rewrites of a model into an LRP-friendly equivalent.

A canonizer changes how the model computes, not what it computes: the outputs
stay the same (up to float rounding). Each one works as a ``with`` block that
puts the original parameter objects (and forward methods, and modules) back on
exit, even when the block raises, so the user's model (and any optimizer
holding its parameters) is never changed for good.

- :class:`ExposeMerges` routes residual additions and concatenations of a
  model's ``forward`` through :class:`~brainlrp.explain.lrp.layers.Sum` and
  :class:`~brainlrp.explain.lrp.layers.Concat` layers, found by torch.fx tracing.
- :class:`MergeBatchNorm` folds each BatchNorm into the Linear/Conv layer that
  feeds it; :func:`fold_batchnorm` does the same for good on a private copy.
"""

from __future__ import annotations

import contextlib
import operator
from abc import ABC, abstractmethod
from collections.abc import Iterator

import torch
import torch.fx as fx
from torch import nn

from brainlrp.errors import BrainLRPError
from brainlrp.explain.lrp.core import BATCHNORM_TYPES, LINEAR_LAYER_TYPES, batchnorm_affine
from brainlrp.explain.lrp.layers import Concat, Sum


class Canonizer(ABC):
    """A model rewrite applied for the duration of a ``with`` block."""

    @abstractmethod
    def apply(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        """Rewrite ``model`` on entry, restore it on exit (even on error)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _channels_out(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


class _LeafTracer(fx.Tracer):
    """Traces down to modules without children, so every layer is one graph node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return next(m.children(), None) is None


def trace(module: nn.Module) -> fx.Graph | None:
    """The module's forward as a torch.fx graph of leaf-module calls, or None.

    None when the forward cannot be traced symbolically (Python control flow on
    tensor values, unsupported calls); callers then fall back to what needs no
    graph.
    """
    try:
        return _LeafTracer().trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure means "no graph"
        return None


_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
#: Calls whose result is a size, not a tensor: arithmetic on it is no merge.
_SIZE_METHODS = frozenset({"size", "dim", "numel", "nelement", "stride", "item", "tolist"})


def _tensor_nodes(graph: fx.Graph) -> set[fx.Node]:
    """Nodes that hold tensors: inputs, module outputs and what is computed from them
    (sizes such as ``x.size(0)`` or ``x.shape`` are not)."""
    tensors: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op in ("placeholder", "call_module"):
            tensors.add(node)
        elif node.op in ("call_function", "call_method"):
            is_size = (node.op == "call_method" and node.target in _SIZE_METHODS) or (
                node.target is getattr and node.args[1:2] == ("shape",))
            if not is_size and any(arg in tensors for arg in node.all_input_nodes):
                tensors.add(node)
    return tensors


def _merge_of(node: fx.Node, tensors: set[fx.Node]) -> tuple[nn.Module, tuple[fx.Node, ...]] | None:
    """``(layer, inputs)`` when ``node`` adds or concatenates tensors, else None."""
    if node.kwargs and not (node.target in _CAT_FUNCTIONS and set(node.kwargs) <= {"dim"}):
        return None
    is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
        node.op == "call_method" and node.target in ("add", "add_", "__add__", "__iadd__"))
    if is_add and len(node.args) == 2 and all(a in tensors for a in node.args):
        return Sum(), tuple(node.args)
    if node.op == "call_function" and node.target in _CAT_FUNCTIONS:
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if (isinstance(parts, (list, tuple)) and isinstance(dim, int)
                and all(p in tensors for p in parts)):
            return Concat(dim), tuple(parts)
    return None


class ExposeMerges(Canonizer):
    """Route residual additions and concatenations through Sum and Concat layers.

    The model's forward is traced with torch.fx down to its leaf modules. Each
    addition of two tensors (``a + b``, ``a += b``, ``torch.add``) becomes a call
    of a :class:`~brainlrp.explain.lrp.layers.Sum` layer and each ``torch.cat``
    one of a :class:`~brainlrp.explain.lrp.layers.Concat` layer, so composites
    can give them rules. This is zennit's ResNet canonizer made generic: it
    covers MONAI's ResNet and DenseNet blocks and any traceable user model.

    When the whole model does not trace, each child is tried in turn (down the
    module tree), so traceable blocks are still rewritten; additions left in
    untraceable code are caught by :func:`~brainlrp.explain.lrp.core.check_graph`.

    While the block is entered, the rewritten modules hold the new layers as
    children named ``lrp_merge_<i>`` and run the rewritten forward (an instance
    attribute); both are removed on exit. Forward hooks on rewritten containers
    (not on layers) do not fire inside the block.
    """

    @contextlib.contextmanager
    def apply(self, model: nn.Module) -> Iterator[None]:
        """Rewrite every traceable module with merges; undo it on exit."""
        patched: list[tuple[nn.Module, list[str]]] = []
        try:
            self._rewrite(model, patched)
            yield
        finally:
            for module, names in reversed(patched):
                module.__dict__.pop("forward", None)
                for name in names:
                    delattr(module, name)

    def _rewrite(self, module: nn.Module, patched: list[tuple[nn.Module, list[str]]]) -> None:
        if next(module.children(), None) is None or "forward" in module.__dict__:
            return
        graph = trace(module)
        if graph is None:
            for child in module.children():
                self._rewrite(child, patched)
            return
        tensors = _tensor_nodes(graph)
        names: list[str] = []
        for node in list(graph.nodes):
            merge = _merge_of(node, tensors) if node.op.startswith("call_") else None
            if merge is None:
                continue
            layer, inputs = merge
            name = f"lrp_merge_{len(names)}"
            if hasattr(module, name):
                raise BrainLRPError(
                    f"cannot route merges of {type(module).__name__} through layers: it "
                    f"already has an attribute {name!r}", "rename that attribute")
            module.add_module(name, layer)
            names.append(name)
            with graph.inserting_before(node):
                replacement = graph.call_module(name, args=inputs)
            node.replace_all_uses_with(replacement)
            graph.erase_node(node)
            tensors.add(replacement)
        if not names:
            return
        patched.append((module, names))
        module.forward = fx.GraphModule(module, graph).forward


class MergeBatchNorm(Canonizer):
    """Merge each BatchNorm into the Linear/ConvNd layer right before it.

    In eval mode BatchNorm is an affine map per channel,
    ``y = gamma (x - mean) / sqrt(var + eps) + beta``, so it folds into the
    preceding layer's weights and bias. Rules on the merged layer then see the
    network as it really computes, where the paper's mode simply passes relevance
    through BatchNorm. The BatchNorm itself becomes the identity while merged.

    Pairs are found in the model's torch.fx graph (a BatchNorm whose input is
    the output of a Linear/Conv layer that nothing else uses, each called once),
    or, when the model does not trace, as consecutive children of
    ``nn.Sequential`` containers, the only place where "right before" is certain
    without tracing the forward. A BatchNorm before its layer (pre-activation,
    as in DenseNet: BatchNorm, ReLU, Conv) cannot be merged: the ReLU between
    them is not linear.

    Parameters
    ----------
    strict : bool
        Raise if a BatchNorm cannot be merged (rather than leave it unchanged, so
        that it passes relevance as in the paper's mode).
    """

    def __init__(self, strict: bool = True):
        self.strict = bool(strict)

    def __repr__(self) -> str:
        return f"MergeBatchNorm(strict={self.strict})"

    @staticmethod
    def pairs(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
        """``(layer, batchnorm)`` pairs that can be merged."""
        found: dict[int, tuple[nn.Module, nn.Module]] = {}
        graph = trace(model)
        if graph is not None:
            calls = [n for n in graph.nodes if n.op == "call_module"]
            times_called: dict[str, int] = {}
            for node in calls:
                times_called[node.target] = times_called.get(node.target, 0) + 1
            for node in calls:
                source = node.args[0] if node.args else None
                if not (isinstance(source, fx.Node) and source.op == "call_module"
                        and len(source.users) == 1 and len(node.args) == 1
                        and times_called[node.target] == times_called[source.target] == 1):
                    continue
                layer, norm = model.get_submodule(source.target), model.get_submodule(node.target)
                if _mergeable(layer, norm):
                    found[id(norm)] = (layer, norm)
        else:
            for container in model.modules():
                if not isinstance(container, nn.Sequential):
                    continue
                children = list(container.children())
                for layer, norm in zip(children, children[1:], strict=False):
                    if _mergeable(layer, norm):
                        found[id(norm)] = (layer, norm)
        return list(found.values())

    def _check(self, model: nn.Module, pairs: list[tuple[nn.Module, nn.Module]]
               ) -> list[tuple[nn.Module, nn.Module]]:
        """The pairs to merge, after refusing what cannot be (or, unless strict,
        leaving out BatchNorms without running statistics)."""
        if not self.strict:
            pairs = [(layer, norm) for layer, norm in pairs if norm.running_mean is not None]
        merged = {id(norm) for _, norm in pairs}
        for name, norm in model.named_modules():
            if not isinstance(norm, BATCHNORM_TYPES):
                continue
            if id(norm) not in merged and self.strict:
                raise BrainLRPError(
                    f"cannot merge the BatchNorm {name!r}: it does not directly follow a "
                    "Linear/Conv layer with as many channels (that nothing else uses)",
                    "use the 'paper' composite, which passes relevance through BatchNorm")
            if id(norm) in merged and norm.training:
                raise BrainLRPError(
                    f"cannot merge the BatchNorm {name!r} in training mode: it then uses "
                    "batch statistics", "call model.eval() first (explain() does this)")
            if id(norm) in merged and norm.running_mean is None:
                raise BrainLRPError(
                    f"cannot merge the BatchNorm {name!r}: it keeps no running statistics "
                    "(track_running_stats=False)", "use the 'paper' composite instead")
        return pairs

    @contextlib.contextmanager
    def apply(self, model: nn.Module) -> Iterator[None]:
        """Merge every pair on entry; put the original parameters back on exit."""
        pairs = self._check(model, self.pairs(model))
        saved: list[tuple[nn.Module, dict[str, object]]] = []
        try:
            for layer, norm in pairs:
                saved.append((layer, {"weight": layer.weight, "bias": layer.bias}))
                saved.append((norm, {k: getattr(norm, k) for k in
                                     ("weight", "bias", "running_mean", "running_var", "eps")}))
                weight, bias = merged_weights(layer, norm)
                layer.weight = nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
                layer.bias = nn.Parameter(bias, requires_grad=layer.weight.requires_grad)
                _make_identity(norm)
            yield
        finally:
            for module, attributes in reversed(saved):
                for key, value in attributes.items():
                    setattr(module, key, value)


def _mergeable(layer: nn.Module, norm: nn.Module) -> bool:
    return (isinstance(layer, LINEAR_LAYER_TYPES) and isinstance(norm, BATCHNORM_TYPES)
            and _channels_out(layer) == norm.num_features)


@torch.no_grad()
def merged_weights(layer: nn.Module, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``norm(layer(x))`` as one layer (``norm`` in eval mode)."""
    scale, shift = batchnorm_affine(norm)
    weight = layer.weight * scale.reshape(-1, *([1] * (layer.weight.ndim - 1)))
    bias = shift if layer.bias is None else layer.bias * scale + shift
    return weight, bias.detach().clone()  # the product is already a new tensor


@torch.no_grad()
def _make_identity(norm: nn.Module) -> None:
    """Make an eval-mode BatchNorm compute ``y = x`` (new tensors, originals kept).

    ``eps`` keeps its positive value (CUDA's batch_norm rejects 0) and the variance
    becomes ``1 - eps``, so ``var + eps`` rounds to 1 (at most one float32 ulp off).
    """
    ref = norm.running_mean
    norm.running_mean = torch.zeros_like(ref)
    norm.running_var = torch.full_like(ref, 1.0 - norm.eps)
    if norm.weight is not None:
        norm.weight = nn.Parameter(torch.ones_like(ref), requires_grad=False)
    if norm.bias is not None:
        norm.bias = nn.Parameter(torch.zeros_like(ref), requires_grad=False)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every mergeable eval-mode BatchNorm into its layer, for good (in place).

    For private copies made for fast inference, never for the user's model (use
    :class:`MergeBatchNorm` for a temporary merge). The BatchNorm is replaced by an
    ``nn.Identity``, so module names stay valid.

    Returns
    -------
    int
        Number of BatchNorms folded.
    """
    parents = {id(child): (parent, name) for parent in model.modules()
               for name, child in parent.named_children()}
    folded = 0
    for layer, norm in MergeBatchNorm.pairs(model):
        if norm.training or norm.running_mean is None or id(norm) not in parents:
            continue
        weight, bias = merged_weights(layer, norm)
        layer.weight = nn.Parameter(weight, requires_grad=layer.weight.requires_grad)
        layer.bias = nn.Parameter(bias, requires_grad=layer.weight.requires_grad)
        parent, name = parents[id(norm)]
        setattr(parent, name, nn.Identity())
        folded += 1
    return folded


__all__ = ["Canonizer", "ExposeMerges", "MergeBatchNorm", "fold_batchnorm", "merged_weights",
           "trace"]
