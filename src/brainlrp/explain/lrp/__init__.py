"""Layer-wise relevance propagation for PyTorch CNNs, built for speed on 3-D MRI.

Modules in dependency order: :mod:`~brainlrp.explain.lrp.core` (relevance as a
custom backward pass, the check that nothing bypasses the rules),
:mod:`~brainlrp.explain.lrp.rules` (alpha-beta, epsilon, z+, box, gamma, pass,
proportional, sum, split, flat; the reference rules: DeepLIFT's rescale as LRP on
differences), :mod:`~brainlrp.explain.lrp.layers` (Sum and Concat,
merges made visible), :mod:`~brainlrp.explain.lrp.canonizers` (merges routed
through those layers, BatchNorm merging), :mod:`~brainlrp.explain.lrp.composites`
(presets by name) and :mod:`~brainlrp.explain.lrp.attribution` (:func:`lrp`).

Examples
--------
>>> from brainlrp.explain.lrp import lrp
>>> result = lrp(model, scans, "paper", beta=0.5)  # doctest: +SKIP
"""

from brainlrp.explain.lrp.attribution import LRPResult, lrp
from brainlrp.explain.lrp.canonizers import (
    Canonizer,
    ExposeMerges,
    MergeBatchNorm,
    fold_batchnorm,
    merged_weights,
)
from brainlrp.explain.lrp.composites import (
    COMPOSITES,
    Composite,
    available_composites,
    get_composite,
    register_composite,
)
from brainlrp.explain.lrp.core import (
    ACTIVATION_TYPES,
    AUTOGRAD_TYPES,
    AVGPOOL_TYPES,
    BATCHNORM_TYPES,
    CONV_TYPES,
    LINEAR_LAYER_TYPES,
    MAXPOOL_TYPES,
    NORM_TYPES,
    SUPPORTED_TYPES,
    InputLayers,
    Layer,
    LayerOps,
    LinearRule,
    Rule,
    attach_rules,
    check_graph,
    check_supported,
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

__all__ = [
    "ACTIVATION_TYPES", "AUTOGRAD_TYPES", "AVGPOOL_TYPES", "BATCHNORM_TYPES", "COMPOSITES",
    "CONV_TYPES", "LINEAR_LAYER_TYPES", "MAXPOOL_TYPES", "NORM_TYPES", "SUPPORTED_TYPES",
    "AlphaBeta", "Canonizer", "Composite", "Concat", "Epsilon", "ExposeMerges", "Flat", "Gamma",
    "InputLayers", "LRPResult", "Layer", "LayerOps", "LinearRule", "MergeBatchNorm", "Pass",
    "Proportional", "RescaleLinear", "RescaleMaxPool", "RescaleProportional", "RescaleSum",
    "Rule", "Split", "Sum", "SumShare", "ZBox", "ZPlus", "attach_rules", "available_composites",
    "check_graph", "check_supported", "fold_batchnorm", "get_composite", "graph_input_layers",
    "has_offset", "lrp", "merged_weights", "register_composite",
]
