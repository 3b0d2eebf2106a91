"""``analyze`` end to end on a fake run directory, and its bad-input errors."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from brainlrp._io import read_json, save_nifti
from brainlrp.analysis import analyze, metrics
from brainlrp.cli import app
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir
from tests.analysis.conftest import METHODS
from tests.conftest import one_line_error

#: The contract's columns, spelled out so that a change to them fails here.
CONTRACT = {
    "regions/{m}/subjects.tsv": ["participant_id", "scan_id", "diagnosis", "outcome", "region",
                                 "hemisphere", "area", "n_voxels", "relevance_sum",
                                 "relevance_density"],
    "regions/{m}/groups.tsv": ["group", "level", "region", "hemisphere", "area", "n_voxels",
                               "n_subjects", "mean_sum", "mean_density", "gain"],
    "analysis/fingerprints.tsv": ["method", "participant_id", "p_ad", "area_rank", "area",
                                  "relevance_density"],
    "analysis/fingerprint_similarity.tsv": ["method", "participant_a", "participant_b",
                                            "cosine_similarity"],
    "analysis/beta_overlap.tsv": ["method_a", "method_b", "beta_a", "beta_b", "measure",
                                  "group", "k", "n_shared", "overlap", "shared_areas"],
    "analysis/hippocampus.tsv": ["method", "relevance", "n_subjects", "r", "p_value",
                                 "n_permutations"],
    "analysis/hippocampus_subjects.tsv": ["method", "participant_id", "hippocampus_relevance",
                                          "hippocampus_volume"],
    "analysis/relevance_totals.tsv": ["method", "relevance", "group", "n_subjects",
                                      "mean_total_relevance"],
    "analysis/ground_truth.tsv": ["method", "participant_id", "scan_id", "outcome",
                                  "n_atrophied_voxels", "atrophied_fraction", "mass_accuracy",
                                  "auc", "auc_abs", "spearman_regions", "topk_recall", "k"],
    "analysis/ground_truth_summary.tsv": [
        "method", "relevance", "n_subjects", "mass_accuracy_mean", "mass_accuracy_sd",
        "chance_mass_accuracy", "auc_mean", "auc_sd", "auc_abs_mean", "spearman_regions_mean",
        "topk_recall_mean", "group_topk_shared", "group_topk_overlap", "group_topk_areas",
        "disease_topk_areas", "k"],
    "analysis/faithfulness.tsv": ["method", "scan_id", "order", "step", "n_areas_replaced",
                                  "p_ad", "p_ad_drop"],
    "analysis/faithfulness_aopc.tsv": ["method", "n_subjects", "steps", "aopc_relevance",
                                       "aopc_random", "aopc_difference"],
    "analysis/sanity.tsv": ["method", "scan_id", "stage", "layer", "spearman"],
}
SUMMARY_KEYS = [
    "relevance", "n_scans", "n_ad", "n_hc", "hc_ad_ratio", "fingerprint_n_patients",
    "fingerprint_mean_similarity", "fingerprint_min_similarity", "patient_a", "patient_b",
    "hippocampus_n", "hippocampus_r", "hippocampus_p", "gt_n_subjects", "gt_mass_accuracy",
    "gt_chance_mass_accuracy", "gt_auc", "gt_auc_abs", "gt_spearman_regions",
    "gt_spearman_restoration", "gt_unused_change_share", "gt_topk_recall",
    "gt_group_topk_overlap", "aopc_relevance", "aopc_random", "aopc_difference",
    "sanity_spearman_top_layer", "sanity_spearman_all_layers"]
#: Costs are timings (test_costs.py gives them a clock of its own): here lrp-b0 and lrp-b1
#: tie in the benchmark and cost the same (one explain_fn for every method), and the
#: noise of millisecond calls could, beyond the benchmark's tolerance, reorder them.
FAST = dict(faithfulness_subjects=2, faithfulness_steps=3, random_orders=1, sanity_subjects=1,
            sanity_voxels=2000, n_permutations=200, progress=False, costs=False)


def hippocampus_by_hand(fr) -> tuple[np.ndarray, np.ndarray]:
    """Hippocampal relevance (lrp-b0, positive part, left + right, averaged over a
    participant's TP scans) and volume per TP participant, from the heatmap files, the
    atlas and the participants table."""
    from brainlrp.analysis.regions import AtlasRegions

    atlas = AtlasRegions.fit("neuromorphometrics", fr.grid)
    hippo = atlas.area_codes == atlas.area_index("Hippocampus") + 1
    assert hippo.sum() > 0
    pred = pd.read_csv(fr.root / "predictions.tsv", sep="\t")
    tp = pred[(pred["outcome"] == "TP") & (pred["split"] == "test")]
    volumes = pd.read_csv(fr.cohort / "participants.tsv", sep="\t").set_index(
        "participant_id")["hippocampus_volume"]
    rel, volume = [], []
    for pid, scans in tp.groupby("participant_id", sort=True):
        sums = [np.clip(np.asarray(nib.load(RunDir(fr.root).heatmap("lrp-b0", sid)).dataobj,
                                   dtype=np.float64), 0, None)[hippo].sum()
                for sid in scans["scan_id"]]
        rel.append(np.mean(sums))
        volume.append(float(volumes[pid]))
    return np.array(rel), np.array(volume)


def exact_permutation_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided permutation p of Pearson r over every relabelling of ``y``."""
    r = abs(np.corrcoef(x, y)[0, 1])
    rs = [abs(np.corrcoef(x, y[list(perm)])[0, 1])
          for perm in itertools.permutations(range(len(y)))]
    return float(np.mean(np.array(rs) >= r - 1e-12))


def _run(fr, **kw):
    return analyze(fr.root, model=fr.model, inputs_fn=fr.inputs_fn, explain_fn=fr.explain_fn,
                   **{**FAST, **kw})


def _digest(root):
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.parts[-2] not in ("heatmaps",) and p.name != "run.json":
            data = p.read_bytes() if not p.name.endswith(".nii.gz") else \
                np.asarray(nib.load(p).dataobj).tobytes()
            out[str(p.relative_to(root))] = hashlib.sha1(data).hexdigest()
    return out


@pytest.mark.slow
def test_analyze_end_to_end(fake_run):
    res = _run(fake_run)
    root = fake_run.root
    assert res.methods == list(METHODS)
    assert res.n_scans == {m: 10 for m in METHODS}  # the training subject is skipped
    for pattern, columns in CONTRACT.items():
        for m in METHODS if "{m}" in pattern else [None]:
            table = pd.read_csv(root / pattern.format(m=m), sep="\t")
            assert list(table.columns) == columns, pattern
            assert len(table) > 0, pattern
    for m in METHODS:
        for g in ("AD", "HC", "TP", "TN", "FP", "FN"):
            img = nib.load(root / "means" / m / f"{g}.nii.gz")
            assert img.shape == fake_run.grid.shape and img.get_data_dtype() == np.float32
            np.testing.assert_allclose(img.affine, fake_run.grid.affine_array)
    summary = read_json(root / "analysis" / "summary.json")
    assert summary["relevance"] == {"lrp-b0": "positive", "lrp-b1": "positive",
                                    "gb": "absolute"}
    for m in METHODS:
        assert list(summary["methods"][m]) == SUMMARY_KEYS
    table = pd.read_csv(root / "analysis" / "summary.tsv", sep="\t")
    assert list(table.columns) == ["method", *SUMMARY_KEYS]
    b0 = summary["methods"]["lrp-b0"]
    # Subjects, not scans: sub-02's two scans count once; sub-10 (train) is left out.
    assert (b0["n_ad"], b0["n_hc"]) == (5, 4)
    assert b0["fingerprint_n_patients"] == 3  # TPs with p_ad > 0.9
    assert b0["hippocampus_n"] == 4  # all TPs
    rel, volume = hippocampus_by_hand(fake_run)
    assert b0["hippocampus_r"] == pytest.approx(np.corrcoef(rel, volume)[0, 1], rel=1e-6)
    # Wiring: the same seeded test (checked against exact enumeration in test_metrics.py)
    # on the hand-made pairs, with the requested number of permutations and the seed.
    expected_p = metrics.permutation_pearson(rel, volume, FAST["n_permutations"], seed=0)[1]
    assert b0["hippocampus_p"] == pytest.approx(expected_p, rel=1e-9)
    # ... and a Monte-Carlo estimate of the exact p over all 4! relabellings (5 sd).
    exact = exact_permutation_p(rel, volume)
    assert abs(b0["hippocampus_p"] - exact) <= 5 * np.sqrt(exact * (1 - exact) / 200) + 1 / 201
    assert b0["hc_ad_ratio"] < 1  # the fake controls carry less relevance
    assert b0["gt_n_subjects"] == 5 and b0["gt_auc"] > 0.9 and b0["gt_auc_abs"] > 0.9
    assert b0["gt_mass_accuracy"] > b0["gt_chance_mass_accuracy"]
    assert summary["disease_model_top_areas"][:2] == ["Hippocampus", "Amygdala"]
    for key in ("aopc_relevance", "aopc_random", "sanity_spearman_all_layers"):
        assert b0[key] is not None
    overlap = pd.read_csv(root / "analysis" / "beta_overlap.tsv", sep="\t")
    assert set(overlap["measure"]) == {"sum", "density", "gain"}
    assert set(zip(overlap["method_a"], overlap["method_b"], strict=True)) == {
        ("lrp-b0", "lrp-b1")}
    gt = pd.read_csv(root / "analysis" / "ground_truth.tsv", sep="\t")
    assert set(gt["scan_id"]) == {"sub-01", "sub-02_ses-1", "sub-02_ses-2", "sub-03",
                                  "sub-04", "sub-05"}
    subjects = pd.read_csv(root / "regions" / "lrp-b0" / "subjects.tsv", sep="\t")
    assert subjects["scan_id"].nunique() == 10
    run_json = RunDir(root).read_run()
    assert run_json["stages"]["analyze"]["methods"] == list(METHODS)

    # Same inputs, same files; a narrower re-run removes the analyses it no longer makes.
    before = _digest(root)
    _run(fake_run)
    assert _digest(root) == before
    _run(fake_run, methods=["gb"], faithfulness=False, sanity=False)
    assert not (root / "analysis" / "sanity.tsv").exists()
    assert not (root / "analysis" / "beta_overlap.tsv").exists()
    assert list(read_json(root / "analysis" / "summary.json")["methods"]) == ["gb"]


def test_analyze_without_model_or_cohort_extras(fake_run):
    # No checkpoint and no training module: model checks are skipped with a notice;
    # a cohort without ground truth or hippocampus_volume skips those analyses.
    shutil.rmtree(fake_run.cohort / "derivatives")
    parts = pd.read_csv(fake_run.cohort / "participants.tsv", sep="\t")
    parts.drop(columns="hippocampus_volume").to_csv(fake_run.cohort / "participants.tsv",
                                                    sep="\t", index=False)
    res = analyze(fake_run.root, methods=["lrp-b0"], progress=False, n_permutations=10)
    assert any("faithfulness, sanity and restoration checks and costs skipped" in n
               for n in res.notices)
    assert any("hippocampus_volume" in n for n in res.notices)
    files = {p.name for p in (fake_run.root / "analysis").iterdir()}
    assert "ground_truth.tsv" not in files and "hippocampus.tsv" not in files
    assert "summary.json" in files


def test_bad_inputs(tmp_path, fake_run):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BrainLRPError, match="brainlrp train"):
        analyze(empty, progress=False)
    with pytest.raises(BrainLRPError, match="gradient.*lrp-b0, lrp-b1, gb"):
        analyze(fake_run.root, methods=["gradient"], progress=False)
    bad = fake_run.root / "heatmaps" / "gb" / "sub-06.nii.gz"
    save_nifti(bad, np.zeros((33, 39, 34), np.float32), fake_run.grid.affine_array)
    with pytest.raises(BrainLRPError, match="sub-06.nii.gz.*not the model grid"):
        analyze(fake_run.root, methods=["gb"], faithfulness=False, sanity=False,
                progress=False)
    shutil.rmtree(fake_run.root / "heatmaps")
    with pytest.raises(BrainLRPError, match="brainlrp explain"):
        analyze(fake_run.root, progress=False)


def test_cli_bad_input_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    line = one_line_error(["analyze", str(tmp_path / "run")])
    assert "predictions.tsv" in line and "brainlrp train" in line


def test_cli_runs(fake_run):
    result = CliRunner().invoke(app, ["analyze", str(fake_run.root), "--methods", "lrp-b0,gb",
                                      "--no-faithfulness", "--no-sanity"])
    assert result.exit_code == 0, result.output
    assert "lrp-b0:" in result.output and "gb:" in result.output


def test_minimal_predictions_are_completed(fake_run):
    # Only the required columns: scan_id, diagnosis, outcome and split are derived.
    path = fake_run.root / "predictions.tsv"
    table = pd.read_csv(path, sep="\t")
    single = table[table["participant_id"] != "sub-02"]
    single[["participant_id", "label", "p_ad", "predicted"]].to_csv(path, sep="\t", index=False)
    res = analyze(fake_run.root, methods=["lrp-b0"], faithfulness=False, sanity=False,
                  n_permutations=10, progress=False)
    assert res.n_scans == {"lrp-b0": 8}  # sub-10 has no heatmap
    assert any("sub-02_ses-1" in n for n in res.notices)  # heatmaps without a row
    groups = pd.read_csv(fake_run.root / "regions" / "lrp-b0" / "groups.tsv", sep="\t")
    n = groups.drop_duplicates("group").set_index("group")["n_subjects"].to_dict()
    assert n == {"AD": 4, "HC": 4, "TP": 3, "TN": 3, "FP": 1, "FN": 1}


def test_analyze_resumes_when_inputs_are_unchanged(fake_run):
    kw = dict(faithfulness=False, sanity=False, n_permutations=10, progress=False)
    first = analyze(fake_run.root, **kw)
    assert not first.skipped
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in fake_run.root.rglob("*")
             if p.is_file()}
    again = analyze(fake_run.root, **kw)
    assert again.skipped and again.methods == first.methods
    assert again.summary == first.summary
    # Nothing was written, run.json included.
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == files
    # Another option, a changed heatmap or --overwrite recompute.
    assert not analyze(fake_run.root, **{**kw, "top_k": 5}).skipped
    assert analyze(fake_run.root, **{**kw, "top_k": 5}).skipped
    heat = next((fake_run.root / "heatmaps" / "gb").glob("*.nii.gz"))
    heat.write_bytes(heat.read_bytes())
    os.utime(heat, ns=(heat.stat().st_atime_ns, heat.stat().st_mtime_ns + 10**9))
    assert not analyze(fake_run.root, **{**kw, "top_k": 5}).skipped
    assert not analyze(fake_run.root, **{**kw, "top_k": 5}, overwrite=True).skipped


def test_restoration_importance_with_healthy_twins(tmp_path, grid6, atlas6):
    from tests.analysis.conftest import make_run

    fr = make_run(tmp_path, grid6, atlas6, twins=True)
    res = analyze(fr.root, model=fr.model, inputs_fn=fr.inputs_fn, explain_fn=fr.explain_fn,
                  **{**FAST, "faithfulness": False, "sanity": False,
                     "restoration_subjects": 2})
    twins = pd.read_csv(fr.root / "analysis" / "twins.tsv", sep="\t")
    assert len(twins) == 2 and twins["evidence_auc"].gt(0.9).all()
    rest = pd.read_csv(fr.root / "analysis" / "restoration.tsv", sep="\t")
    assert len(rest) == 2 * atlas6.n_areas
    assert set(rest["scan_id"]) == set(twins["scan_id"])
    assert len(list((fr.root / "analysis" / "evidence").glob("*.nii.gz"))) == 2
    for m in res.methods:
        assert res.summary["methods"][m]["gt_spearman_restoration"] is not None
