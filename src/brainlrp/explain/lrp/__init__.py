"""Layer-wise relevance propagation for PyTorch CNNs, built for speed on 3-D MRI.

Modules in dependency order: :mod:`~brainlrp.explain.lrp.core` (relevance as a
custom backward pass), :mod:`~brainlrp.explain.lrp.rules` (alpha-beta, epsilon,
z+, box, gamma, pass, proportional), :mod:`~brainlrp.explain.lrp.canonizers`
(BatchNorm merging), :mod:`~brainlrp.explain.lrp.composites` (presets by name)
and :mod:`~brainlrp.explain.lrp.attribution` (:func:`lrp`).

Examples
--------
>>> from brainlrp.explain.lrp import lrp
>>> result = lrp(model, scans, "paper", beta=0.5)  # doctest: +SKIP
"""

from brainlrp.explain.lrp.attribution import LRPResult, lrp
from brainlrp.explain.lrp.canonizers import Canonizer, MergeBatchNorm
from brainlrp.explain.lrp.composites import (
    COMPOSITES,
    Composite,
    available_composites,
    get_composite,
    register_composite,
)
from brainlrp.explain.lrp.core import (
    SUPPORTED_TYPES,
    Layer,
    LayerOps,
    LinearRule,
    Rule,
    attach_rules,
    check_supported,
)
from brainlrp.explain.lrp.rules import (
    AlphaBeta,
    Epsilon,
    Gamma,
    Pass,
    Proportional,
    ZBox,
    ZPlus,
)

__all__ = [
    "COMPOSITES", "SUPPORTED_TYPES", "AlphaBeta", "Canonizer", "Composite", "Epsilon", "Gamma",
    "LRPResult", "Layer", "LayerOps", "LinearRule", "MergeBatchNorm", "Pass", "Proportional",
    "Rule", "ZBox", "ZPlus", "attach_rules", "available_composites", "check_supported",
    "get_composite", "lrp", "register_composite",
]
