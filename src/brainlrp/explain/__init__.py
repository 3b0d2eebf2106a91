"""Explain a classifier's decisions: LRP (:mod:`brainlrp.explain.lrp`) and Captum
baselines (:mod:`brainlrp.explain.baselines`) behind one entry point.

>>> from brainlrp.explain import explain, available_methods
>>> heatmap = explain(model, scans, "lrp-b0", target=1)  # doctest: +SKIP
"""

from brainlrp.explain.methods import (
    METHODS,
    Method,
    available_methods,
    explain,
    get_method,
    register_family,
    register_method,
)

__all__ = ["METHODS", "Method", "available_methods", "explain", "get_method",
           "register_family", "register_method"]
