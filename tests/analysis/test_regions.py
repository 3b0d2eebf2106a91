"""Streaming region tables and group means on a hand-made 7 x 8 x 9 atlas."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlrp._io import save_nifti
from brainlrp.analysis.regions import (
    GROUP_COLUMNS,
    SUBJECT_COLUMNS,
    group_weights,
    read_heatmap,
    stream_method,
)
from brainlrp.errors import BrainLRPError
from tests.analysis.conftest import SHAPE


def _scans() -> pd.DataFrame:
    # Participant "a" has two AD scans (one TP, one FN); "h" is a control (TN).
    return pd.DataFrame({"participant_id": ["a", "a", "h"], "scan_id": ["a_1", "a_2", "h"],
                         "diagnosis": ["AD", "AD", "CN"], "label": [1, 1, 0],
                         "outcome": ["TP", "FN", "TN"], "p_ad": [0.9, 0.4, 0.1]})


def test_atlas_levels(tiny_atlas):
    assert tiny_atlas.labels["region"].tolist() == ["Left_Foo", "Right_Foo", "Bar"]
    assert tiny_atlas.areas["region"].tolist() == ["Foo", "Bar"]
    n = tiny_atlas.labels["n_voxels"].tolist()
    assert n == [3 * 8 * 9, 3 * 4 * 9, 3 * 4 * 5]
    assert tiny_atlas.areas["n_voxels"].tolist() == [n[0] + n[1], n[2]]


def test_group_weights_count_each_subject_once():
    w = group_weights(_scans())
    assert w["AD"].tolist() == [0.5, 0.5, 0.0]
    assert w["TP"].tolist() == [1.0, 0.0, 0.0] and w["FN"].tolist() == [0.0, 1.0, 0.0]
    assert w["HC"].tolist() == [0.0, 0.0, 1.0] and w["FP"].sum() == 0


def test_stream_matches_brute_force(tmp_path, tiny_atlas):
    rng = np.random.default_rng(0)
    grid = tiny_atlas.grid
    maps = rng.standard_normal((3, *SHAPE)).astype(np.float32)
    maps[2] *= 0.1
    paths = []
    for sid, m in zip(_scans()["scan_id"], maps, strict=True):
        paths.append(tmp_path / "heat" / f"{sid}.nii.gz")
        save_nifti(paths[-1], m, grid.affine_array)
    seen = []
    mr = stream_method("lrp-b0", paths, _scans(), tiny_atlas, "positive",
                       tmp_path / "regions" / "subjects.tsv", tmp_path / "means", batch_size=2,
                       on_batch=lambda rows, batch, raw: seen.append(len(batch)))
    assert seen == [2, 1]
    pos = np.maximum(maps, 0).astype(np.float64)
    codes = tiny_atlas.codes
    brute = np.array([[pos[i][codes == c].sum() for c in (1, 2, 3)] for i in range(3)])
    np.testing.assert_allclose(mr.label_sums, brute, rtol=1e-6)
    np.testing.assert_allclose(mr.area_sums, np.c_[brute[:, 0] + brute[:, 1], brute[:, 2]],
                               rtol=1e-6)
    np.testing.assert_allclose(mr.totals, pos.reshape(3, -1).sum(1), rtol=1e-6)

    subjects = pd.read_csv(tmp_path / "regions" / "subjects.tsv", sep="\t")
    assert tuple(subjects.columns) == SUBJECT_COLUMNS
    assert len(subjects) == 3 * 3
    row = subjects[(subjects["scan_id"] == "a_2") & (subjects["region"] == "Bar")].iloc[0]
    assert row["relevance_sum"] == pytest.approx(brute[1, 2], rel=1e-5)
    assert row["relevance_density"] == pytest.approx(brute[1, 2] / (3 * 4 * 5), rel=1e-5)
    assert row["area"] == "Bar" and row["outcome"] == "FN"

    g = mr.groups
    assert tuple(g.columns) == GROUP_COLUMNS
    assert set(g["group"]) == {"AD", "HC", "TP", "TN", "FN"}  # no FP: no rows
    ad = g[(g["group"] == "AD") & (g["level"] == "label")]
    np.testing.assert_allclose(ad["mean_sum"], (brute[0] + brute[1]) / 2, rtol=1e-9)
    np.testing.assert_allclose(ad["gain"], (brute[0] + brute[1]) / 2 / brute[2], rtol=1e-9)
    assert (ad["n_subjects"] == 1).all()
    area = g[(g["group"] == "TP") & (g["level"] == "area")]
    np.testing.assert_allclose(area["mean_density"],
                               [(brute[0, 0] + brute[0, 1]) / (3 * 8 * 9 + 3 * 4 * 9),
                                brute[0, 2] / (3 * 4 * 5)], rtol=1e-9)
    hc = g[(g["group"] == "HC")]
    np.testing.assert_allclose(hc["gain"], 1.0)

    ad_img = nib.load(tmp_path / "means" / "AD.nii.gz")
    np.testing.assert_allclose(ad_img.get_fdata(), (pos[0] + pos[1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ad_img.affine, grid.affine_array)
    assert ad_img.get_data_dtype() == np.float32
    assert not (tmp_path / "means" / "FP.nii.gz").exists()


def test_zero_hc_gives_nan_gain(tmp_path, tiny_atlas):
    grid = tiny_atlas.grid
    maps = np.ones((3, *SHAPE), np.float32)
    maps[2] = -1.0  # the control has no positive relevance
    paths = []
    for sid, m in zip(_scans()["scan_id"], maps, strict=True):
        paths.append(tmp_path / f"{sid}.nii.gz")
        save_nifti(paths[-1], m, grid.affine_array)
    mr = stream_method("lrp-b0", paths, _scans(), tiny_atlas, "positive",
                       tmp_path / "subjects.tsv", tmp_path / "means")
    assert mr.groups.loc[mr.groups["group"] == "AD", "gain"].isna().all()


def test_heatmap_on_another_grid_names_the_file(tmp_path, tiny_atlas):
    path = tmp_path / "bad.nii.gz"
    save_nifti(path, np.zeros((7, 9, 8), np.float32), tiny_atlas.grid.affine_array)
    with pytest.raises(BrainLRPError, match="bad.nii.gz.*not the model grid"):
        read_heatmap(path, tiny_atlas.grid)
    nan = np.zeros(SHAPE, np.float32)
    nan[0, 0, 0] = np.nan
    save_nifti(path, nan, tiny_atlas.grid.affine_array)
    with pytest.raises(BrainLRPError, match="NaN"):
        read_heatmap(path, tiny_atlas.grid)
