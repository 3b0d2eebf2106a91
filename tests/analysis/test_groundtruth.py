"""Ground-truth recovery: a perfect heatmap scores perfectly, a random one at chance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainlrp._io import save_nifti
from brainlrp.analysis import groundtruth as gt
from brainlrp.analysis.regions import AtlasRegions
from brainlrp.atlas import region_sums
from brainlrp.data.grid import Grid, brain_mask
from tests.analysis.conftest import tissue_loss, volume_loss_table


def _scans(pids):
    return pd.DataFrame({"participant_id": pids, "scan_id": pids, "label": 1,
                         "outcome": "TP"})


def _setup(tmp_path, atlas6: AtlasRegions, pid="sub-01"):
    loss = tissue_loss(atlas6, pid)
    tissue, table = gt.ground_truth_files(tmp_path, pid)
    save_nifti(tissue, loss, atlas6.grid.affine_array)
    volume_loss_table(atlas6, loss).to_csv(table, sep="\t", index=False)
    return loss


def _area_density(maps, atlas6):
    sums = region_sums(maps, atlas6.codes, atlas6.n_labels) @ atlas6.label_to_area
    return sums / atlas6.areas["n_voxels"].to_numpy()


def test_file_names_in_one_place(tmp_path):
    tissue, table = gt.ground_truth_files(tmp_path, "sub-7")
    assert tissue == tmp_path / "derivatives" / "ground_truth" / "sub-7_tissue_loss.nii.gz"
    assert table == tmp_path / "derivatives" / "ground_truth" / "sub-7_volume_loss.tsv"


def test_perfect_heatmap_scores_perfectly(tmp_path, atlas6):
    loss = _setup(tmp_path, atlas6)
    masks = gt.TruthMasks(tmp_path, atlas6.grid, threshold=0.05)
    scorer = gt.GroundTruthScorer(masks, brain_mask(atlas6.grid), {"sub-01"})
    scorer(_scans(["sub-01"]), loss[None])
    row = scorer.rows[0]
    assert row["mass_accuracy"] == pytest.approx(1.0)
    assert row["auc"] == pytest.approx(1.0)
    assert row["n_atrophied_voxels"] == int((loss[brain_mask(atlas6.grid)] > 0.05).sum()) > 0
    truth, source = gt.true_area_loss(tmp_path, "sub-01", atlas6)
    assert source == "table"
    scores = gt.region_scores(_scans(["sub-01"]), _area_density(loss[None], atlas6),
                              {"sub-01": truth}, k=10)
    assert scores["topk_recall"].iloc[0] == 1.0
    assert scores["spearman_regions"].iloc[0] == pytest.approx(1.0)


def test_random_heatmap_scores_at_chance(tmp_path, atlas6):
    loss = _setup(tmp_path, atlas6)
    brain = brain_mask(atlas6.grid)
    masks = gt.TruthMasks(tmp_path, atlas6.grid)
    scorer = gt.GroundTruthScorer(masks, brain, {"sub-01"})
    rng = np.random.default_rng(0)
    maps = (rng.random((20, *atlas6.grid.shape)) * brain).astype(np.float32)
    scorer(_scans(["sub-01"] * 20), maps)
    rows = pd.DataFrame(scorer.rows)
    share = ((loss > 0.05) & brain).sum() / brain.sum()
    assert rows["auc"].mean() == pytest.approx(0.5, abs=0.03)
    assert rows["mass_accuracy"].mean() == pytest.approx(share, rel=0.1)
    assert rows["atrophied_fraction"].iloc[0] == pytest.approx(share)


def test_volume_loss_by_hand(tmp_path, tiny_atlas):
    table = tmp_path / "t.tsv"
    pd.DataFrame({"label": ["Left_Foo", "Right_Foo", "Bar", "Gone"], "index": [1, 2, 3, 99],
                  "volume_before_mm3": [100.0, 50.0, 10.0, 5.0],
                  "volume_after_mm3": [90.0, 20.0, 10.0, 1.0],
                  "relative_loss": [0.1, 0.6, 0.0, 0.8]}).to_csv(table, sep="\t", index=False)
    # Foo = Left + Right: 1 - 110 / 150; Bar: no loss; the unknown label is ignored.
    np.testing.assert_allclose(gt.read_volume_loss(table, tiny_atlas), [1 - 110 / 150, 0.0])
    pd.DataFrame({"label": ["Left_Foo", "Right_Foo", "Bar"],
                  "relative_loss": [0.1, 0.6, 0.0]}).to_csv(table, sep="\t", index=False)
    np.testing.assert_allclose(gt.read_volume_loss(table, tiny_atlas), [0.35, 0.0])


def test_truth_on_another_grid_is_resampled(tmp_path, grid6):
    coarse = Grid.from_resolution(8.0)
    data = np.zeros(coarse.shape, np.float32)
    data[8:16, 8:20, 8:16] = 0.5
    path = tmp_path / "loss.nii.gz"
    save_nifti(path, data, coarse.affine_array)
    out = gt.load_truth_map(path, grid6)
    assert out.shape == grid6.shape
    assert out.max() == pytest.approx(0.5, abs=1e-5) and out.min() >= 0
    # The block's centre (8 mm voxel 12, 14, 12) lands at the same mm position.
    centre = np.round(np.linalg.solve(grid6.affine_array,
                                      coarse.affine_array @ [12, 14, 12, 1])[:3]).astype(int)
    assert out[tuple(centre)] == pytest.approx(0.5, abs=1e-5)


def test_disease_top_k_ignores_unaffected_areas():
    truth = {"a": np.array([0.0, 0.3, 0.1, 0.0]), "b": np.array([0.0, 0.1, 0.3, 0.0])}
    assert gt.disease_top_k(truth, 3).tolist() == [1, 2]


def test_mask_cache_is_bounded(tmp_path, atlas6):
    for pid in ("sub-01", "sub-02"):
        _setup(tmp_path, atlas6, pid)
    masks = gt.TruthMasks(tmp_path, atlas6.grid, max_bytes=1)
    a = masks.mask("sub-01")
    masks.mask("sub-02")
    assert len(masks._cache) == 1
    np.testing.assert_array_equal(masks.mask("sub-01"), a)
