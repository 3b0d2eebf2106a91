"""Cohort tables, NIfTI I/O and validation, preprocessing, splits."""

from brainlrp.data.cohort import CLASS_NAMES, Cohort, load_cohort
from brainlrp.data.grid import Grid, brain_mask, template
from brainlrp.data.nifti import check_mni_space, load_scan
from brainlrp.data.prepare import load_inputs
from brainlrp.data.preprocess import (
                                      PreprocessCache,
                                      Preprocessing,
                                      preprocess_image,
                                      preprocess_paths,
)
from brainlrp.data.splits import make_splits, read_splits

__all__ = ["CLASS_NAMES", "Cohort", "Grid", "PreprocessCache", "Preprocessing", "brain_mask",
           "check_mni_space", "load_cohort", "load_inputs", "load_scan", "make_splits",
           "preprocess_image", "preprocess_paths", "read_splits", "template"]
