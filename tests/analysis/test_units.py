"""Each analysis module on hand-made region results: totals, fingerprints, hippocampus,
top areas, claims, beta overlap, and the typed summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainlrp.analysis.beta_overlap import beta_overlap
from brainlrp.analysis.claims import claims, is_temporal
from brainlrp.analysis.fingerprints import fingerprints
from brainlrp.analysis.hippocampus import hippocampus, hippocampus_area
from brainlrp.analysis.regions import GROUP_COLUMNS, MethodRegions, group_weights
from brainlrp.analysis.summary import AnalysisSummary, MethodSummary, read_summary
from brainlrp.analysis.top_areas import top_areas
from brainlrp.analysis.totals import relevance_totals

AREAS = ["Hippocampus", "Amygdala", "Cerebellum", "Precuneus"]


class FakeAtlas:
    """Just what the analyses read of an AtlasRegions."""

    areas = pd.DataFrame({"region": AREAS, "n_voxels": [10, 5, 20, 10]})
    atlas_name = "fake"

    def area_index(self, name):
        return AREAS.index(name) if name in AREAS else None


def make_regions(method: str = "lrp-b0", area_sums=None) -> MethodRegions:
    scans = pd.DataFrame({
        "participant_id": ["a", "b", "c", "d"], "scan_id": ["a", "b", "c", "d"],
        "label": [1, 1, 1, 0], "predicted": [1, 1, 1, 0], "p_ad": [0.95, 0.99, 0.6, 0.1],
        "outcome": ["TP", "TP", "TP", "TN"]})
    sums = np.asarray(area_sums if area_sums is not None else
                      [[8.0, 2.0, 1.0, 1.0], [4.0, 4.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0],
                       [0.5, 0.5, 0.5, 0.5]])
    weights = group_weights(scans)
    rows = []
    for g in weights.columns:
        w = weights[g].to_numpy()
        if w.sum() == 0:
            continue
        mean = w @ sums / w.sum()
        hc = sums[3]
        for i, area in enumerate(AREAS):
            rows.append({"group": g, "level": "area", "region": area, "hemisphere": "",
                         "area": area, "n_voxels": 10, "n_subjects": int(w.sum()),
                         "mean_sum": mean[i], "mean_density": mean[i] / 10,
                         "gain": mean[i] / hc[i]})
    return MethodRegions(method, "positive", scans, sums, sums, sums.sum(axis=1), weights,
                         pd.DataFrame(rows, columns=list(GROUP_COLUMNS)), [])


def test_relevance_totals_ratio_by_hand():
    table, part = relevance_totals(make_regions())
    ad = np.mean([12.0, 10.0, 4.0])
    assert part.hc_ad_ratio == pytest.approx(2.0 / ad)
    assert table.set_index("group").loc["HC", "mean_total_relevance"] == pytest.approx(2.0)


def test_fingerprints_pick_confident_true_positives():
    fp, sim, part = fingerprints(make_regions(), FakeAtlas())
    assert part.fingerprint_n_patients == 2
    assert {part.patient_a, part.patient_b} == {"a", "b"}
    assert set(fp["participant_id"]) == {"a", "b"}  # c is not confident, d a control
    assert len(sim) == 4
    dens_a = np.array([8.0, 2.0, 1.0, 1.0]) / [10, 5, 20, 10]
    dens_b = np.array([4.0, 4.0, 2.0, 0.0]) / [10, 5, 20, 10]
    cos = dens_a @ dens_b / np.linalg.norm(dens_a) / np.linalg.norm(dens_b)
    assert part.fingerprint_min_similarity == pytest.approx(cos)


def test_hippocampus_correlation_over_true_positives():
    subjects = pd.DataFrame({"participant_id": ["a", "b", "c", "d"],
                             "hippocampus_volume": [2.0, 4.0, 5.0, 6.0]})
    notices = []
    area = hippocampus_area(subjects, FakeAtlas(), notices)
    assert area == 0 and not notices
    table, per, part = hippocampus(make_regions(), area, subjects, 10, 0)
    r = np.corrcoef([8.0, 4.0, 1.0], [2.0, 4.0, 5.0])[0, 1]
    assert part.hippocampus_n == 3 and part.hippocampus_r == pytest.approx(r)
    assert per["participant_id"].tolist() == ["a", "b", "c"]
    assert hippocampus_area(subjects.drop(columns="hippocampus_volume"), FakeAtlas(),
                            notices) is None and "no hippocampus_volume" in notices[0]


def test_top_areas_rank_in_the_true_positives():
    top = top_areas(make_regions(), k=2)
    gain = top[top["measure"] == "gain"]
    assert gain["group"].unique().tolist() == ["TP"]
    assert gain["area"].tolist() == ["Hippocampus", "Amygdala"]  # gains 12 and 6
    assert gain["rank"].tolist() == [1, 2]


def test_claims_verdicts():
    summary = MethodSummary(hc_ad_ratio=0.2, fingerprint_mean_similarity=0.9)
    ranking = ["Amygdala", "Hippocampus", "Cerebellum", "ITG_inferior_temporal_gyrus"]
    rows = claims("lrp-b0", summary, ranking).set_index("claim")
    assert rows.loc["hc_low", "verdict"] == "yes"
    # Hippocampus in the top 10 and 3 of 4 areas temporal.
    assert rows.loc["temporal", "verdict"] == "yes"
    assert "hippocampus rank 2 of 4" in rows.loc["temporal", "evidence"]
    assert rows.loc["plausible", "verdict"] == "no" and "Cerebellum" in rows.loc[
        "plausible", "evidence"]
    assert rows.loc["individual", "verdict"] == "–"
    assert "ground_truth" not in rows.index and "randomisation" not in rows.index
    # A ratio just below 1 is not "very little".
    high = claims("lrp-b0", MethodSummary(hc_ad_ratio=0.96), []).set_index("claim")
    assert high.loc["hc_low", "verdict"] == "partly" and "temporal" not in high.index
    assert is_temporal("ITG_inferior_temporal_gyrus") and not is_temporal("Cerebellum")


def test_claims_on_ground_truth_and_randomisation():
    near_chance = MethodSummary(gt_mass_accuracy=0.205, gt_chance_mass_accuracy=0.168,
                                gt_auc=0.523, sanity_spearman_top_layer=0.999,
                                sanity_spearman_all_layers=0.52)
    rows = claims("lrp-b0", near_chance, []).set_index("claim")
    assert rows.loc["ground_truth", "verdict"] == "partly"  # 1.22x chance
    assert rows.loc["randomisation", "verdict"] == "no"
    good = MethodSummary(gt_mass_accuracy=0.6, gt_chance_mass_accuracy=0.2, gt_auc=0.85,
                         sanity_spearman_top_layer=0.3)
    rows = claims("x", good, []).set_index("claim")
    assert rows.loc["ground_truth", "verdict"] == "yes"
    assert rows.loc["randomisation", "verdict"] == "yes"


def test_no_verdict_for_a_model_near_chance():
    rows = claims("lrp-b0", MethodSummary(hc_ad_ratio=0.2), ["Hippocampus"], 0.58)
    assert set(rows["verdict"]) == {"–"}
    assert rows["evidence"].str.contains("near chance").all()


def test_beta_overlap_only_between_paper_betas():
    results = {m: make_regions(m) for m in ("lrp-b0", "lrp-b1", "gb")}
    table = beta_overlap(results, AREAS, 2)
    assert set(zip(table["method_a"], table["method_b"], strict=True)) == {("lrp-b0", "lrp-b1")}
    assert (table["overlap"] == 1.0).all()
    assert beta_overlap({"gb": results["gb"]}, AREAS, 2) is None


def test_summary_round_trip(tmp_path):
    summary = AnalysisSummary("neuromorphometrics", 136, 68, {"lrp-b0": "positive"}, 10, None,
                              0, None, {"lrp-b0": MethodSummary(relevance="positive",
                                                                hc_ad_ratio=0.5)}, ["n"])
    back = read_summary(summary.write(tmp_path / "summary.json"))
    assert back == summary
    assert back.method("gb") == MethodSummary()
    assert list(summary.to_dict())[-2:] == ["methods", "notices"]


def test_benchmark_ranks_and_recommends():
    from brainlrp.analysis.benchmark import method_benchmark

    def ms(mass, auc, rho, top):
        return MethodSummary(gt_mass_accuracy=mass, gt_chance_mass_accuracy=0.17, gt_auc_abs=auc,
                             gt_spearman_restoration=rho, sanity_spearman_top_layer=top)

    summaries = {"lrp-ref@twin": ms(0.75, 0.82, 0.72, 0.0),
                 "lrp-ref@knn": ms(0.43, 0.63, 0.6, -0.3),
                 "lrp-b0": ms(0.2, 0.52, 0.4, 0.999), "edges": ms(0.24, 0.69, 0.14, 1.0),
                 "lrp-epsilon-plus-flat": ms(0.22, 0.58, 0.55, 0.4), "noise": ms(0.04, 0.5, 0.1, 1)}
    seconds = {"gradient": 1.0, "lrp-ref@knn": 5.0, "lrp-epsilon-plus-flat": 1.5}
    table = method_benchmark(summaries, seconds)
    assert table["method"].iloc[0] == "lrp-ref@twin" and table["rank"].iloc[0] == 1
    # The twin is ground truth only; flat does not beat the edge floor; knn passes the
    # randomisation check within the practical budget (5 gradients > 3).
    assert table.loc[table["recommended"], "method"].tolist() == ["lrp-ref@knn"]
    assert table.set_index("method").loc["lrp-ref@knn", "cost_ratio"] == 5.0


def test_benchmark_ties_follow_costs_only_beyond_their_noise():
    from brainlrp.analysis.benchmark import COST_TIE_TOLERANCE, method_benchmark

    same = MethodSummary(gt_mass_accuracy=0.3, gt_chance_mass_accuracy=0.17, gt_auc_abs=0.6,
                         gt_spearman_restoration=0.5)
    summaries = {"lrp-b1": same, "lrp-b0": same}

    def order(b0: float, b1: float) -> list[str]:
        table = method_benchmark(summaries, {"gradient": 1.0, "lrp-b0": b0, "lrp-b1": b1})
        return table["method"].tolist()

    # Costs within the tolerance: the catalog's order, however the noise fell.
    assert order(1.0, 0.9) == order(0.9, 1.0) == ["lrp-b0", "lrp-b1"]
    # Clearly cheaper: first.
    assert order(1.0, 1.0 / (COST_TIE_TOLERANCE + 0.1)) == ["lrp-b1", "lrp-b0"]
    assert order(float("nan"), 1.0) == ["lrp-b1", "lrp-b0"]
