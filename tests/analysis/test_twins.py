"""The model's own ground truth: restoration importance and the twin analysis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainlrp.analysis.twins import (
    area_masks,
    restoration_importance,
    restoration_spearman,
    restored_area_sums,
    twin_analysis,
)

SHAPE = (9, 10, 11)


def _areas() -> np.ndarray:
    codes = np.zeros(SHAPE, dtype=np.int32)
    codes[1:4, 1:4, 1:4] = 1
    codes[5:8, 5:8, 5:8] = 2
    codes[1:4, 6:9, 6:10] = 3
    return codes


def test_a_model_that_reads_one_area_depends_on_that_area_only():
    codes = _areas()
    reads = codes == 2

    def predict(x):  # p(AD) rises with the darkening of area 2 only
        return 1 / (1 + np.exp(-10 * (0.5 - x[:, 0][:, reads].mean(axis=1))))

    twin = np.ones(SHAPE, dtype=np.float32)
    patient = twin.copy()
    patient[codes > 0] = 0.2  # all three areas atrophied, only area 2 matters
    masks = area_masks(codes, 3, dilate=0)
    p_ad, drops = restoration_importance(predict, patient, twin, masks, batch_size=2)
    assert p_ad > 0.9
    assert drops[1] == pytest.approx(p_ad - predict(twin[None, None])[0])
    assert drops[0] == pytest.approx(0) and drops[2] == pytest.approx(0)
    assert np.argmax(drops) == 1


def test_dilation_takes_the_neighbourhood_along():
    codes = _areas()
    plain, grown = area_masks(codes, 3, 0), area_masks(codes, 3, 1)
    assert grown[0].sum() > plain[0].sum() and (grown[0] >= plain[0]).all()
    assert grown[0].sum() == 5 * 5 * 5


def test_twin_analysis_tables(tmp_path):
    codes = _areas()
    twin = np.ones(SHAPE, dtype=np.float32)
    patient = twin.copy()
    patient[codes == 2] = 0.0

    def predict(x):
        return 1 - x[:, 0][:, codes == 2].mean(axis=1)

    scans = pd.DataFrame({"participant_id": ["p1"], "scan_id": ["p1"]})
    atrophy = codes == 2
    res = twin_analysis(scans, lambda ids: patient[None, None], lambda ids: twin[None, None],
                        predict, codes, ["a", "b", "c"], np.ones(SHAPE, bool),
                        lambda pid: atrophy, dilate=0, evidence_dir=tmp_path,
                        affine=np.eye(4))
    row = res.twins.iloc[0]
    assert row["p_ad"] == pytest.approx(1.0) and row["p_ad_twin"] == pytest.approx(0.0)
    assert row["evidence_auc"] == pytest.approx(1.0) and row["evidence_mass"] == 1.0
    assert res.restoration["drop"].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert (tmp_path / "p1.nii.gz").is_file()
    rho = restoration_spearman(np.array([[0.0, 5.0, 1.0], [1.0, 2.0, 3.0]]), ["p1", "x"],
                               res.importance)
    assert rho[0] > 0.8 and np.isnan(rho[1])


def test_relevance_is_summed_over_the_restored_areas():
    """Relevance in the CSF next to an area counts for that area, as its restoration did."""
    codes = _areas()
    twin = np.ones(SHAPE, dtype=np.float32)
    patient = twin.copy()
    shell = area_masks(codes, 3, 1)[1] & (codes == 0)  # CSF next to area 2 widens
    patient[shell] = 0.0

    def predict(x):
        return 1 - x[:, 0][:, shell].mean(axis=1)

    scans = pd.DataFrame({"participant_id": ["p1"], "scan_id": ["p1"]})
    res = twin_analysis(scans, lambda ids: patient[None, None], lambda ids: twin[None, None],
                        predict, codes, ["a", "b", "c"], np.ones(SHAPE, bool), None, dilate=1)
    assert np.argmax(res.restoration["drop"].to_numpy()) == 1
    relevance = (shell * 1.0)[None]  # a faithful map: all relevance where the change is
    sums = restored_area_sums(relevance, res.areas)
    grown = area_masks(codes, 3, 1)
    assert sums[0] == pytest.approx([relevance[0][m].sum() for m in grown])
    assert np.argmax(sums[0]) == 1 and sums[0, 1] == shell.sum()
    # Summed over the bare atlas areas, the same map would hold no relevance at all.
    assert all(relevance[0][codes == c].sum() == 0 for c in (1, 2, 3))
    assert restoration_spearman(sums, ["p1"], res.importance)[0] > 0.8


def test_unused_change_share_counts_changed_areas_the_model_ignores():
    from brainlrp.analysis.twins import unused_change_share

    # Four areas: 0 changed and used, 1 changed and unused, 2 unchanged and unused,
    # 3 changed a little (below a quarter of the most changed) and unused.
    importance = {"a": np.array([0.30, 0.001, 0.0, 0.002]), "b": np.array([0.2, 0.1, 0, 0])}
    changed = {"a": np.array([1.0, 0.8, 0.0, 0.2]), "b": np.array([1.0, 1.0, 0.0, 0.0])}
    relevance = np.array([[2.0, 1.0, 5.0, -3.0],   # positive parts 2, 1, 5, 0
                          [1.0, 1.0, 1.0, 1.0]])
    share = unused_change_share(relevance, ["a", "b"], importance, changed)
    assert share[0] == pytest.approx(1.0 / 8.0)     # only area 1 is changed but unused
    assert np.isnan(share[1])                        # b: every changed area is used
    assert np.isnan(unused_change_share(relevance[:1], ["zz"], importance, changed)[0])
