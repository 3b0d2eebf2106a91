"""Reading the run: its tables and images, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from brainlrp.errors import BrainLRPError
from brainlrp.report.inputs import load_run


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
