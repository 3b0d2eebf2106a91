"""Synthetic cohorts with known atrophy: ``brainlrp simulate``.

Real anatomy (the MNI ICBM 2009c template and the Neuromorphometrics atlas) is
deformed per subject, aged, atrophied by a disease model (JSON, see
:mod:`brainlrp.simulate.disease`) and passed through scanner effects; the
ground truth of every subject is written next to the scans
(:mod:`brainlrp.simulate.ground_truth`). Importing the package registers the reference
kinds only a simulated cohort has, ``twin`` and ``rescan``
(:mod:`brainlrp.simulate.references`), with :mod:`brainlrp.data.reference`.
"""

# Registers the twin and rescan reference kinds (data never imports simulate).
from brainlrp.simulate import references  # noqa: F401
from brainlrp.simulate.disease import DiseaseModel, load_disease_model, region_names, shipped_models
from brainlrp.simulate.ground_truth import load_ground_truth, subject_paths
from brainlrp.simulate.stage import SimulationResult, simulate

__all__ = ["DiseaseModel", "SimulationResult", "load_disease_model", "load_ground_truth",
           "region_names", "shipped_models", "simulate", "subject_paths"]
