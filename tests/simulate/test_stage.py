"""The simulated cohort on disk: layout, ground truth, loading, reproducibility, resuming."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlrp._io import read_json
from brainlrp.data.cohort import load_cohort
from brainlrp.data.grid import Grid
from brainlrp.data.nifti import load_scan
from brainlrp.errors import BrainLRPError
from brainlrp.simulate import load_disease_model, load_ground_truth, simulate, subject_paths
from brainlrp.simulate import stage as stage_module

from .conftest import TEST_RESOLUTION

HIPPOCAMPUS = ["Left_Hippocampus", "Right_Hippocampus"]


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_participants(small_cohort):
    root, table = small_cohort.root, small_cohort.participants
    assert list(table.columns) == ["participant_id", "diagnosis", "age", "sex", "subtype",
                                   "severity", "hippocampus_volume", "total_atrophy"]
    assert table["participant_id"].tolist() == [f"sub-{i:04d}" for i in range(1, 7)]
    assert small_cohort.counts == {"HC": 3, "AD": 3}
    cn, ad = table[table.diagnosis == "HC"], table[table.diagnosis == "AD"]
    assert (cn["subtype"] == "none").all() and (cn["severity"] == 0).all()
    assert (cn["total_atrophy"] == 0).all() and (ad["total_atrophy"] > 0).all()
    lo, hi = load_disease_model("default").severity
    assert ad["severity"].between(lo, hi).all()
    assert table["age"].between(60, 90).all() and set(table["sex"]) <= {"F", "M"}
    on_disk = pd.read_csv(root / "participants.tsv", sep="\t")
    pd.testing.assert_frame_equal(on_disk, table, check_dtype=False)
    assert read_json(root / "dataset_description.json")["DatasetType"] == "raw"
    gt = root / "derivatives" / "ground_truth"
    assert read_json(gt / "disease_model.json")["name"] == "default"
    assert not list(root.rglob(".tmp-*"))


def test_cohort_loads_and_scans_pass_the_mni_check(small_cohort):
    cohort = load_cohort(small_cohort.root)
    assert len(cohort.subjects) == 6 and not cohort.notices
    grid = Grid.from_resolution(TEST_RESOLUTION)
    for path in cohort.scans["path"]:
        img = load_scan(path)  # raises if not MNI
        assert grid.same_as(img.shape, img.affine)
        raw = nib.load(path)
        assert raw.get_data_dtype() == np.int16 and int(raw.header["sform_code"]) == 4


def test_scans_have_t1_contrast(small_cohort):
    """White matter brighter than cortex, cortex brighter than the ventricles."""
    root = small_cohort.root
    names = pd.read_csv(root / "derivatives" / "ground_truth" / "labels.tsv", sep="\t")
    index = dict(zip(names["name"], names["index"], strict=True))
    wm = [index["Left_Cerebral_White_Matter"], index["Right_Cerebral_White_Matter"]]
    gm = [i for n, i in index.items() if "_gyrus" in n or "_cortex" in n]
    csf = [index["Left_Lateral_Ventricle"], index["Right_Lateral_Ventricle"]]
    for pid in small_cohort.participants["participant_id"]:
        paths = subject_paths(root, pid)
        t1 = nib.load(paths["t1"]).get_fdata()
        labels = np.asarray(nib.load(paths["labels"]).dataobj)
        means = [t1[np.isin(labels, ids)].mean() for ids in (wm, gm, csf)]
        assert means[0] > means[1] > means[2], (pid, means)


def test_ground_truth_matches_the_label_maps(small_cohort):
    root, table = small_cohort.root, small_cohort.participants
    voxel = Grid.from_resolution(TEST_RESOLUTION).voxel_volume
    for row in table.itertuples():
        paths = subject_paths(root, row.participant_id)
        labels = np.asarray(nib.load(paths["labels"]).dataobj).astype(int)
        truth = pd.read_csv(paths["volume_loss"], sep="\t")
        assert list(truth.columns[:5]) == ["label", "index", "volume_before_mm3",
                                          "volume_after_mm3", "relative_loss"]
        assert len(truth) == 136
        counts = np.bincount(labels.ravel(), minlength=truth["index"].max() + 1)
        np.testing.assert_allclose(truth["volume_after_mm3"], counts[truth["index"]] * voxel)
        before = truth["volume_before_mm3"]
        expected = np.where(before > 0, 1 - truth["volume_after_mm3"] / before.where(
            before > 0, 1), 0)
        np.testing.assert_allclose(truth["relative_loss"], expected, atol=1e-5)
        hippo = truth.loc[truth["label"].isin(HIPPOCAMPUS), "volume_after_mm3"].sum()
        assert row.hippocampus_volume == pytest.approx(hippo)
        loss = nib.load(paths["tissue_loss"])
        data = np.asarray(loss.dataobj)
        assert loss.get_data_dtype() == np.float32 and data.min() >= 0 and data.max() <= 1
        if row.diagnosis == "HC":
            assert not data.any() and (truth["relative_loss"] == 0).all()
        else:
            assert data.max() > 0
            targets = truth[truth["model_loss"] > 0]
            assert (targets["relative_loss"] > 0).mean() > 0.8


def test_load_ground_truth_is_long_format(small_cohort):
    truth = load_ground_truth(small_cohort.root)
    assert truth["participant_id"].nunique() == 6 and len(truth) == 6 * 136


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path):
    args = dict(n_subjects=4, resolution=TEST_RESOLUTION, seed=21, progress=False)
    one = simulate(tmp_path / "one", n_jobs=1, **args)
    two = simulate(tmp_path / "two", n_jobs=2, **args)
    assert two.n_jobs == 2
    assert _digests(one.root) == _digests(two.root)
    other = simulate(tmp_path / "other", n_jobs=1, **{**args, "seed": 22})
    t1 = "sub-0001/anat/sub-0001_T1w.nii.gz"
    assert _digests(other.root)[t1] != _digests(one.root)[t1]


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    args = dict(n_subjects=4, resolution=TEST_RESOLUTION, seed=5, n_jobs=1, progress=False)
    reference = _digests(simulate(tmp_path / "reference", **args).root)

    real = stage_module.simulate_subject
    calls = []

    def crash_on_third(*task):
        calls.append(task)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*task)

    monkeypatch.setattr(stage_module, "simulate_subject", crash_on_third)
    root = tmp_path / "cohort"
    with pytest.raises(KeyboardInterrupt):
        simulate(root, **args)
    assert not (root / "participants.tsv").exists()  # incomplete cohorts have no table
    assert not list(root.rglob(".tmp-*"))
    monkeypatch.setattr(stage_module, "simulate_subject", real)
    result = simulate(root, **args)
    assert (result.n_written, result.n_skipped) == (2, 2)
    assert _digests(root) == reference
    again = simulate(root, **args)
    assert (again.n_written, again.n_skipped) == (0, 4)
    redone = simulate(root, overwrite=True, **args)
    assert redone.n_written == 4 and _digests(root) == reference


def test_a_folder_with_other_content_is_protected(tmp_path):
    args = dict(n_subjects=2, resolution=TEST_RESOLUTION, n_jobs=1, progress=False)
    simulate(tmp_path / "cohort", seed=1, **args)
    with pytest.raises(BrainLRPError, match="other settings.*seed"):
        simulate(tmp_path / "cohort", seed=2, **args)
    assert simulate(tmp_path / "cohort", seed=2, overwrite=True, **args).n_written == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(BrainLRPError, match="not empty"):
        simulate(tmp_path / "busy", seed=1, **args)


def test_ad_hippocampi_are_smaller_by_the_margin_the_model_implies(tmp_path):
    """CN minus AD hippocampal volume ~ expected relative loss x CN volume."""
    result = simulate(tmp_path / "cohort", n_subjects=40, resolution=5, seed=2, n_jobs=1,
                      progress=False)
    table = result.participants
    model = load_disease_model("default")
    expected_loss = model.expected_loss(HIPPOCAMPUS)
    cn = table.loc[table.diagnosis == "HC", "hippocampus_volume"].mean()
    ad = table.loc[table.diagnosis == "AD", "hippocampus_volume"].mean()
    expected_margin = expected_loss * cn
    assert 0.5 * expected_margin < cn - ad < 1.5 * expected_margin
    # Paired with the same people without disease, the loss is what the model says.
    truth = load_ground_truth(result.root)
    hippo = truth[truth["label"].isin(HIPPOCAMPUS)].merge(table[["participant_id",
                                                                 "diagnosis"]])
    hippo = hippo[hippo["diagnosis"] == "AD"]
    paired = 1 - hippo["volume_after_mm3"].sum() / hippo["volume_before_mm3"].sum()
    assert paired == pytest.approx(expected_loss, rel=0.2)


def test_healthy_twin_is_the_subject_re_simulated_without_the_disease(small_cohort, tmp_path):
    """An AD subject's twin equals, byte for byte, the same spec rendered without disease."""
    from brainlrp.simulate import ground_truth as gtruth
    from brainlrp.simulate.anatomy import template_anatomy
    from brainlrp.simulate.disease import load_disease_model
    from brainlrp.simulate.scanner import scanner_effects
    from brainlrp.simulate.stage import write_nifti
    from brainlrp.simulate.subject import draw_subject, render_subject

    table = small_cohort.participants
    root = small_cohort.root
    for row in table.itertuples():
        twin = gtruth.healthy_twin_path(root, row.participant_id)
        assert twin.is_file() == (row.diagnosis == "AD")
    row = table[table.diagnosis == "AD"].iloc[0]
    index = int(table.index[table.participant_id == row.participant_id][0])
    anatomy = template_anatomy(small_cohort.grid)
    spec = draw_subject(11, index, row.participant_id, "AD", load_disease_model("default"))
    assert spec.losses
    healthy = spec.without_disease()
    images = render_subject(healthy, anatomy)
    t1 = scanner_effects(images.t1, images.brain, anatomy.wm_intensity, healthy.scanner_seed)
    again = tmp_path / "twin.nii.gz"
    write_nifti(again, anatomy.paste(t1), small_cohort.grid.affine_array, np.int16,
                "brainlrp simulated T1w, healthy twin")
    assert again.read_bytes() == gtruth.healthy_twin_path(root, row.participant_id).read_bytes()
    patient = gtruth.subject_paths(root, row.participant_id)["t1"]
    assert patient.read_bytes() != again.read_bytes()


def test_healthy_rescan_is_the_twin_with_fresh_noise(small_cohort, tmp_path):
    """The re-scan: same person, scanner and no disease as the twin; only the noise differs."""
    import nibabel as nib

    from brainlrp.errors import BrainLRPError
    from brainlrp.simulate import ground_truth as gtruth
    from brainlrp.simulate.stage import healthy_rescan

    root = small_cohort.root
    table = small_cohort.participants
    for dx in ("AD", "HC"):
        pid = table[table.diagnosis == dx].participant_id.iloc[0]
        path = (gtruth.healthy_twin_path(root, pid) if dx == "AD"
                else gtruth.subject_paths(root, pid)["t1"])  # a control is its own twin
        twin_img = nib.load(path)
        twin = np.asarray(twin_img.dataobj)
        image = healthy_rescan(root, pid)
        np.testing.assert_allclose(image.affine, twin_img.affine)
        rescan = np.asarray(image.dataobj)
        assert rescan.dtype == np.int16 and rescan.shape == twin.shape
        brain = twin > 0
        assert ((rescan > 0) == brain).mean() > 0.99
        diff = rescan.astype(float) - twin
        level = np.median(twin[brain])
        assert (diff[brain] != 0).mean() > 0.5
        assert abs(diff[brain].mean()) < 0.01 * level
        assert diff[brain].std() / np.sqrt(2) < 0.05 * level
        np.testing.assert_array_equal(rescan, np.asarray(healthy_rescan(root, pid).dataobj))
        assert (np.asarray(healthy_rescan(root, pid, rescan=2).dataobj) != rescan).any()
    with pytest.raises(BrainLRPError, match="no simulation record"):
        healthy_rescan(tmp_path, "sub-0001")
