"""Reading the run: area densities, per-participant means, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainlrp.errors import BrainLRPError
from brainlrp.report.inputs import area_density, load_run, per_participant


def test_area_density_merges_hemispheres():
    subjects = pd.DataFrame({
        "scan_id": ["s1", "s1", "s1", "s2", "s2", "s2"],
        "area": ["Hip", "Hip", "Amy", "Hip", "Hip", "Amy"],
        "n_voxels": [10, 30, 5, 10, 30, 5],
        "relevance_sum": [1.0, 3.0, 0.5, 2.0, 2.0, 0.0]})
    dens = area_density(subjects, ["Amy", "Hip", "Ent"])
    assert list(dens.columns) == ["Amy", "Hip", "Ent"] and list(dens.index) == ["s1", "s2"]
    assert dens.loc["s1", "Hip"] == pytest.approx(4 / 40)
    assert dens.loc["s2", "Hip"] == pytest.approx(4 / 40)
    assert dens.loc["s1", "Amy"] == pytest.approx(0.1)
    assert dens["Ent"].isna().all()


def test_per_participant_averages_scans():
    values = pd.DataFrame({"Hip": [1.0, 3.0, 5.0]}, index=["a_1", "a_2", "b"])
    scans = pd.DataFrame({"scan_id": ["a_1", "a_2", "b"], "participant_id": ["a", "a", "b"]})
    per = per_participant(values, scans)
    assert per.loc["a", "Hip"] == 2.0 and per.loc["b", "Hip"] == 5.0


def test_load_run(analysed):
    data = load_run(analysed.root)
    assert data.methods == ["lrp-b0", "lrp-b1", "gb"]
    assert data.mode("gb") == "absolute"
    assert data.metrics is not None and data.training_log is not None
    scans = data.test_scans()
    assert len(scans) == 10 and set(scans["split"]) == {"test"}
    heat = data.heatmap("gb", "sub-01")
    assert heat.shape == data.grid.shape and heat.min() >= 0  # absolute mode applied
    assert data.mean_image("lrp-b0", "AD").shape == data.grid.shape
    assert data.heatmap("lrp-b0", "nope") is None
    dens = data.area_density("lrp-b0")
    assert "sub-02_ses-1" in dens.index and np.isfinite(dens.loc["sub-01", "Hippocampus"])
    assert load_run(analysed.root, ["gb,lrp-b0"]).methods == ["lrp-b0", "gb"]


def test_load_run_errors(tmp_path):
    with pytest.raises(BrainLRPError, match="does not exist"):
        load_run(tmp_path / "nothing")
    (tmp_path / "run").mkdir()
    with pytest.raises(BrainLRPError, match="brainlrp analyze"):
        load_run(tmp_path / "run")
