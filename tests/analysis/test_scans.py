"""Per-scan results: each scan's ranked areas with z-scores, the classification tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainlrp.analysis.scans import (
    ANALYSED,
    MIN_AREA_FRACTION,
    area_density,
    classification,
    per_participant,
    scan_areas,
    top_of_scan,
)


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


def test_top_of_scan_zscores():
    density = pd.Series({"Hip": 5.0, "Amy": 3.0, "Ent": 1.0, "Cun": np.nan})
    hc = pd.DataFrame({"Hip": [1.0, 2.0, 3.0], "Amy": [3.0, 3.0, 3.0], "Ent": [0.0, 1.0, 2.0]})
    top = top_of_scan(density, hc, k=2)
    assert list(top["area"]) == ["Hip", "Amy"]
    assert top.loc[0, "z"] == pytest.approx((5 - 2) / 1)
    assert np.isnan(top.loc[1, "z"])  # the controls do not vary
    assert top.loc[0, "hc_mean"] == 2.0 and top.loc[0, "hc_sd"] == 1.0
    alone = top_of_scan(density, hc.iloc[:1])
    assert alone["z"].isna().all() and len(alone) == 3


def subjects_table() -> pd.DataFrame:
    """Two controls and one patient (two scans); ``Tiny`` is under the minimum size."""
    rows = []
    sizes = {"Hip": 400, "Amy": 300, "Ent": 300, "Tiny": 0}
    sizes["Tiny"] = max(1, int(MIN_AREA_FRACTION * sum(sizes.values()) / 2))
    density = {"c1": {"Hip": 1.0, "Amy": 2.0, "Ent": 0.5, "Tiny": 50.0},
               "c2": {"Hip": 3.0, "Amy": 2.0, "Ent": 0.7, "Tiny": 50.0},
               "p_1": {"Hip": 6.0, "Amy": 1.0, "Ent": 0.6, "Tiny": 50.0},
               "p_2": {"Hip": 4.0, "Amy": 1.0, "Ent": 0.8, "Tiny": 50.0}}
    for sid, dens in density.items():
        pid = sid.split("_")[0]
        for area, n in sizes.items():
            rows.append({"scan_id": sid, "participant_id": pid,
                         "diagnosis": "AD" if pid == "p" else "HC", "area": area,
                         "n_voxels": n, "relevance_sum": dens[area] * n})
    return pd.DataFrame(rows)


def test_scan_areas_rank_large_areas_against_the_controls():
    table = scan_areas("m", subjects_table(), ["Hip", "Amy", "Ent", "Tiny"], k=2)
    assert "Tiny" not in set(table["area"])  # the brightest, but too small to rank
    assert table.groupby("scan_id").size().to_dict() == {"c1": 2, "c2": 2, "p_1": 2, "p_2": 2}
    p1 = table[table["scan_id"] == "p_1"].set_index("rank")
    assert list(p1["area"]) == ["Hip", "Amy"] and (p1["participant_id"] == "p").all()
    # Controls' Hip densities 1 and 3: mean 2, SD 1.414; the patient's scans are not in it.
    assert p1.loc[1, "hc_mean"] == pytest.approx(2.0)
    assert p1.loc[1, "z"] == pytest.approx((6.0 - 2.0) / np.sqrt(2))
    assert np.isnan(p1.loc[2, "z"])  # both controls have Amy 2.0: SD 0


def test_classification_tables():
    pred = pd.DataFrame({"scan_id": list("abcdef"), "split": ["test"] * 4 + ["train"] * 2,
                         "label": [0, 0, 1, 1, 0, 1], "p_ad": [0.1, 0.6, 0.4, 0.9, 0.2, 0.8],
                         "predicted": [0, 1, 0, 1, 0, 1]})
    confusion, roc = classification(pred)
    test = confusion[confusion["split"] == "test"].set_index("outcome")["n"]
    assert test.to_dict() == {"TN": 1, "FP": 1, "FN": 1, "TP": 1}
    auc = roc.loc[roc["split"] == "test", "auc"]
    assert auc.nunique() == 1 and auc.iloc[0] == pytest.approx(0.75)
    assert roc.loc[roc["split"] == "train", "auc"].iloc[0] == 1.0
    # Without a test split the analysed scans stand in.
    confusion, _ = classification(pred.assign(split="train"), analysed=["a", "d"])
    rows = confusion[confusion["split"] == ANALYSED].set_index("outcome")["n"]
    assert rows["TN"] == 1 and rows["TP"] == 1 and rows.sum() == 2
