"""The report's figures: data in, a matplotlib :class:`~matplotlib.figure.Figure` out.

Every function here is pure: it takes arrays and tables, draws on a new figure
(never pyplot's global state, so nothing needs closing) and returns it. Brain
images are drawn with nilearn in neurological convention (left on the left, marked
L and R); charts with matplotlib. Colours, names and units come from
:mod:`brainlrp.report.style`, so the same method or group looks the same everywhere.

One module per section's figures (:mod:`.maps`, :mod:`.training`, :mod:`.regions`,
:mod:`.fingerprints`, :mod:`.beta`, :mod:`.hippocampus`, :mod:`.checks`) and the shared
helpers (:mod:`.common`); every figure function is importable from here.
"""

from brainlrp.report.figures.beta import beta_overlap_figure
from brainlrp.report.figures.checks import faithfulness_figure, ground_truth_figure, sanity_figure
from brainlrp.report.figures.common import (
    RC,
    legend_columns,
    legend_height,
    method_legend,
    scaled_axis,
    styled,
)
from brainlrp.report.figures.fingerprints import fingerprint_figure
from brainlrp.report.figures.hippocampus import hippocampus_figure
from brainlrp.report.figures.maps import (
    BrainMap,
    explanation_figure,
    glass_brains,
    group_slices,
    peak_coords,
    robust_max,
)
from brainlrp.report.figures.regions import density_violins, region_bars
from brainlrp.report.figures.training import classification_figure, training_curves

__all__ = ["BrainMap", "RC", "beta_overlap_figure", "classification_figure",
           "density_violins", "explanation_figure", "faithfulness_figure",
           "fingerprint_figure", "glass_brains", "ground_truth_figure", "group_slices",
           "hippocampus_figure", "legend_columns", "legend_height", "method_legend",
           "peak_coords", "region_bars", "robust_max", "sanity_figure", "scaled_axis",
           "styled", "training_curves"]
