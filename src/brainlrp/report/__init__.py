"""The HTML report and figures of a run (``brainlrp report``).

:func:`report` reads a run directory after ``brainlrp analyze`` and writes

``report/index.html``
    One self-contained page (figures embedded as PNG, style and scripts inline, no
    network): run summary, training, individual explanations (TP, FP, TN, FN; LRP
    beside guided backpropagation), group means (slices, glass brains and an offline
    NiiVue viewer), region metrics (sum, density, gain; violins AD vs HC; patients A
    and B), fingerprints, beta sensitivity, hippocampus, ground truth, faithfulness,
    sanity, the list of cards, and methods/notes (with the Data list: relative links
    to the run's tables and mean images, which also close each section). Section ids:
    ``summary``,
    ``training``, ``individual``, ``group-means``, ``regions``, ``fingerprints``,
    ``beta``, ``hippocampus``, ``ground-truth``, ``faithfulness``, ``sanity``,
    ``cards``, ``methods``.
``report/cards/<scan_id>.png``
    A card per test scan: AD probability, age and sex, three slices through the
    relevance peak and the top-10 areas (of at least 0.1 % of the atlas's voxels) with
    their z-scores against the healthy controls.

Re-running on an unchanged run writes nothing (``ReportResult.skipped``).

Modules: :mod:`~brainlrp.report.inputs` (reading the run),
:mod:`~brainlrp.report.style` (names, colours, units), :mod:`~brainlrp.report.glossary`
(each measure's one name and definition, and where it does not apply),
:mod:`~brainlrp.report.figures`
(pure plotting functions), :mod:`~brainlrp.report.cards`,
:mod:`~brainlrp.report.niivue` (the offline NiiVue viewers),
:mod:`~brainlrp.report.notebook` (:func:`view`: the same in Jupyter, via ipyniivue),
:mod:`~brainlrp.report.html` (page assembly), :mod:`~brainlrp.report.sections` (one
module and spec per section, in page order; a section whose files are missing says
which command writes them) and :mod:`~brainlrp.report.stage`. The report computes no
result: every number comes from the files of ``train`` and ``analyze``.
"""

from brainlrp.report.notebook import view
from brainlrp.report.stage import ReportResult, report

__all__ = ["ReportResult", "report", "view"]
