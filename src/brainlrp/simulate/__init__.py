"""Synthetic cohorts with known atrophy: ``brainlrp simulate``.

Real anatomy (the MNI ICBM 2009c template and the Neuromorphometrics atlas) is
deformed per subject, aged, atrophied by a disease model (JSON, see
:mod:`brainlrp.simulate.disease`) and passed through scanner effects; the
ground truth of every subject is written next to the scans
(:mod:`brainlrp.simulate.ground_truth`).
"""

from brainlrp.simulate.disease import DiseaseModel, load_disease_model, region_names, shipped_models
from brainlrp.simulate.ground_truth import load_ground_truth, subject_paths
from brainlrp.simulate.stage import SimulationResult, simulate

__all__ = ["DiseaseModel", "SimulationResult", "load_disease_model", "load_ground_truth",
           "region_names", "shipped_models", "simulate", "subject_paths"]
