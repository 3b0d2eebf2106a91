"""brainlrp: explain 3D CNN Alzheimer's disease classification on T1 MRI with LRP.

Reproduces and extends Böhle et al. (2019), "Layer-wise relevance propagation for
explaining deep neural network decisions in MRI-based Alzheimer's disease
classification", Front. Aging Neurosci. 11:194.

The Python API (:mod:`brainlrp.api`) is importable from here: ``import brainlrp as bl``,
then ``bl.Run(path)``, ``bl.explain_tensor(model, x, ...)``, ... (docs/api.md). It is
imported at its first use, so ``import brainlrp`` (and the CLI's start) stays light.
"""

__version__ = "0.1.0"

from brainlrp.errors import BrainLRPError  # noqa: E402

#: The names of :mod:`brainlrp.api` this package gives (its ``__all__``; a test keeps
#: the two equal).
_API = ("AnalysisConfig", "BenchmarkConfig", "ExplainConfig", "Explanation", "Run",
        "TensorControls", "TrainConfig", "explain_tensor", "import_model", "method_table",
        "open_run", "simulate_cohort", "train")


def __getattr__(name: str):
    """The API's names, imported at first use (PEP 562)."""
    if name in _API:
        from brainlrp import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


__all__ = ["BrainLRPError", "__version__", *_API]
