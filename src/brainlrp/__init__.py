"""brainlrp: explain 3D CNN Alzheimer's disease classification on T1 MRI with LRP.

Reproduces and extends Böhle et al. (2019), "Layer-wise relevance propagation for
explaining deep neural network decisions in MRI-based Alzheimer's disease
classification", Front. Aging Neurosci. 11:194.
"""

__version__ = "0.1.0"

from brainlrp.errors import BrainLRPError  # noqa: E402

__all__ = ["BrainLRPError", "__version__"]
