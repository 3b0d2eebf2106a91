"""Explain a classifier's decisions: LRP (:mod:`brainlrp.explain.lrp`) and Captum
baselines (:mod:`brainlrp.explain.baselines`) behind one entry point. What each
method is lives in :mod:`brainlrp.catalog`.

>>> from brainlrp.explain import explain, available_methods
>>> heatmap = explain(model, scans, "lrp-b0", target=1)  # doctest: +SKIP
"""

from brainlrp.explain.methods import Method, available_methods, explain, get_method

__all__ = ["Method", "available_methods", "explain", "get_method"]
