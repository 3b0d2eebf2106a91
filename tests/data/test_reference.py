"""Reference images from a run's training controls, and the reference methods end to end."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from brainlrp.card import read_card
from brainlrp.cli import app
from brainlrp.data.grid import Grid
from brainlrp.data.reference import MEAN_FILE, References, reference_name
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir
from tests.conftest import make_bids_cohort, one_line_error

runner = CliRunner()
TINY = ["--resolution", "6", "--arch", "tiny", "--epochs", "2", "--test", "2", "--val", "1",
        "--early-stopping-start", "0", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cohort = make_bids_cohort(tmp_path_factory.mktemp("cohort"), Grid.from_resolution(6), 6, 6)
    out = tmp_path_factory.mktemp("runs") / "run"
    result = runner.invoke(app, ["train", str(cohort), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out


def _controls(run):
    refs = References(run, read_card(run).prep)
    return refs, np.stack([np.load(a) for a in refs.control_arrays()])


def test_train_writes_the_mean_control(run):
    refs, controls = _controls(run)
    splits = pd.read_csv(run / "splits.tsv", sep="\t")
    n_train_hc = int(((splits["split"] == "train") & (splits["diagnosis"] == "HC")).sum())
    assert len(controls) == n_train_hc == 3
    stored = np.asarray(nib.load(str(run / MEAN_FILE)).dataobj)
    np.testing.assert_allclose(stored, controls.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(refs.mean(), stored)


def test_knn_and_pca_follow_the_scan(run):
    refs, controls = _controls(run)
    brain = refs.brain
    # A training control is its own nearest neighbour and lies in the controls' span.
    np.testing.assert_allclose(refs.knn(controls[1], k=1), controls[1], atol=1e-6)
    pca = refs.pca(controls[1])
    assert np.abs(pca - controls[1])[brain].max() < 1e-3
    # A local "atrophy" is not reconstructed: the robust fit ignores it.
    lesion = controls[1].copy()
    box = (slice(10, 16), slice(12, 18), slice(10, 16))
    lesion[box] *= 0.3
    recon = refs.pca(lesion)
    inside = np.zeros_like(brain)
    inside[box] = True
    inside &= brain
    assert np.abs(recon - controls[1])[inside].mean() < 0.5 * np.abs(lesion - controls[1])[
        inside].mean()


def test_restore_references_only_add_lost_signal(run):
    refs, controls = _controls(run)
    brain = refs.brain
    scan = controls[0].copy()
    box = (slice(10, 16), slice(12, 18), slice(10, 16))
    scan[box] *= 0.3  # "atrophy": darker than every control
    x = scan[None, None]
    for kind in ("mean", "knn", "pca"):
        base = refs.get(kind, ["x"], x)[0, 0]
        restored = refs.get(f"{kind}-restore", ["x"], x)[0, 0]
        assert restored.dtype == np.float32 and restored.shape == scan.shape
        # Inside the brain the larger of scan and reference, outside it the scan.
        np.testing.assert_array_equal(restored[brain], np.maximum(scan, base)[brain])
        np.testing.assert_array_equal(restored[~brain], scan[~brain])
        assert (restored >= scan).all()
        darker = brain & (scan < base)
        assert darker.any() and (~darker & brain).any()
        np.testing.assert_array_equal(restored[darker], base[darker])
    # A scan that lost nothing relative to its reference is its own reference: no
    # difference, so a reference method has nothing to explain there.
    bright = np.maximum(controls[0], refs.get("mean", ["x"], controls[0][None, None])[0, 0])
    np.testing.assert_array_equal(refs.get("mean-restore", ["x"], bright[None, None])[0, 0],
                                  bright)


def test_a_simulated_control_is_its_own_twin(run, tmp_path):
    import shutil

    from brainlrp.data.cohort import load_cohort
    from brainlrp.simulate.ground_truth import healthy_twin_path

    cohort = tmp_path / "cohort"
    shutil.copytree(RunDir(run).cohort_source(), cohort)
    scans = load_cohort(cohort).scans.set_index("scan_id")
    prep = read_card(run).prep
    refs = References(run, prep, cohort=cohort)
    hc = scans.index[scans["label"] == 0][0]
    ad, ad_without = scans.index[scans["label"] == 1][:2]
    # A cohort without ground truth has no twins at all.
    with pytest.raises(BrainLRPError, match="no healthy twin"):
        refs.twin(hc)
    # Simulated: an AD subject's twin is its file; a control is its own twin.
    twin_file = healthy_twin_path(cohort, scans.loc[ad, "participant_id"])
    twin_file.parent.mkdir(parents=True)
    shutil.copy(scans.loc[hc, "path"], twin_file)
    own = np.load(refs.cache.get(Path(scans.loc[hc, "path"]), prep))
    np.testing.assert_array_equal(refs.twin(ad), own)
    np.testing.assert_array_equal(refs.twin(hc), own)
    x = np.stack([own, own + 0.5])[:, None]
    np.testing.assert_array_equal(refs.get("twin", [hc, hc], x), x)
    with pytest.raises(BrainLRPError, match="no healthy twin"):
        refs.twin(ad_without)


def test_a_rescan_is_the_healthy_twin_scanned_again(run, tmp_path):
    """rescan: the simulated subject without disease, same scanner, fresh noise."""
    from brainlrp.data.cohort import load_cohort
    from brainlrp.data.preprocess import preprocess_image
    from brainlrp.simulate import simulate
    from brainlrp.simulate.ground_truth import healthy_twin_path
    from brainlrp.simulate.stage import healthy_rescan

    prep = read_card(run).prep
    with pytest.raises(BrainLRPError, match="not a cohort made by brainlrp simulate"):
        scan = pd.read_csv(run / "predictions.tsv", sep="\t")["scan_id"].iloc[0]
        References(run, prep).get("rescan", [scan], np.zeros((1, 1, *prep.grid.shape),
                                                             np.float32))
    cohort = tmp_path / "simulated"
    simulate(cohort, n_subjects=4, resolution=6, seed=3, n_jobs=1, progress=False)
    scans = load_cohort(cohort).scans.set_index("scan_id")
    refs = References(run, prep, cohort=cohort)
    ad = scans.index[scans["label"] == 1][0]
    pid = scans.loc[ad, "participant_id"]
    x = np.load(refs.cache.get(Path(scans.loc[ad, "path"]), prep))[None, None]
    ref = refs.get("rescan", [ad], x)
    expected = preprocess_image(healthy_rescan(cohort, pid), prep)
    np.testing.assert_array_equal(ref[0, 0], expected)
    twin = refs.twin(ad)
    brain = refs.brain
    assert (ref[0, 0] != twin)[brain].mean() > 0.5  # fresh noise, ...
    assert abs(float((ref[0, 0] - twin)[brain].mean())) < 0.01  # ... same scanner and person
    assert healthy_twin_path(cohort, pid).is_file()
    restored = refs.get("rescan-restore", [ad], x)
    np.testing.assert_array_equal(restored[0, 0], refs.restore(x[0, 0], ref[0, 0]))


def test_reference_kinds_and_catalog_agree():
    from brainlrp import catalog
    from brainlrp.data.reference import REFERENCE_KINDS

    assert set(catalog.REFERENCE_LABELS) == set(REFERENCE_KINDS)
    info = catalog.lookup("lrp-ref@knn-restore")
    assert info.reference == "knn-restore" and not info.needs_twin
    assert info.label == "LRP from nearest controls, tissue loss only"
    assert catalog.lookup("ig-ref@twin-restore").needs_twin
    assert catalog.lookup("lrp-ref@rescan").needs_twin
    assert catalog.lookup("lrp-ref@rescan-restore").label == \
        "LRP from healthy twin re-scanned, tissue loss only"


def test_reference_names_and_errors(run, tmp_path):
    refs, _ = _controls(run)
    assert reference_name("knn") == "knn" and reference_name("/a/my template.nii.gz") == \
        "my_template"
    assert reference_name("pca-restore") == "pca-restore"
    assert reference_name("/a/b/t1 (v2).nii") == "t1__v2_"
    zeros = np.zeros((1, 1, *refs.prep.grid.shape), np.float32)
    with pytest.raises(BrainLRPError, match="unknown reference 'nope'.*use one of mean, knn"):
        refs.get("nope", ["x"], zeros)
    # The run's cohort is a plain BIDS cohort: no ground-truth folder, so no scan of it
    # has a twin (not even a control, which is its own twin only in a simulated cohort).
    import brainlrp.simulate  # noqa: F401  (as every command does: it provides twin)

    scans = pd.read_csv(run / "predictions.tsv", sep="\t")
    for scan in (scans["scan_id"][scans["label"] == 1].iloc[0],
                 scans["scan_id"][scans["label"] == 0].iloc[0]):
        with pytest.raises(BrainLRPError, match=f"no healthy twin for scan {scan} .*"
                                                "use --reference mean, knn or pca"):
            refs.get("twin", [scan], zeros)
    with pytest.raises(BrainLRPError, match="scan sub-nobody is not in the run's cohort"):
        refs.get("twin", ["sub-nobody"], zeros)


def test_reference_methods_through_explain_analyze_report(run):
    methods = ("lrp-ref,ig-ref@pca,occlusion-ref@knn,lrp-ref@knn-restore,edges,noise,lrp-b0,"
               "lrp-epsilon-gamma-box,lrp-epsilon-plus-flat")
    result = runner.invoke(app, ["explain", str(run), "-m", methods, "--quiet"])
    assert result.exit_code == 0, result.output
    for folder in ("lrp-ref@mean", "ig-ref@pca", "occlusion-ref@knn", "lrp-ref@knn-restore",
                   "edges", "noise", "lrp-epsilon-gamma-box", "lrp-epsilon-plus-flat"):
        assert len(list((run / "heatmaps" / folder).glob("*.nii.gz"))) == 4, folder
    # The sanity check explains again with each method's reference (and areas).
    result = runner.invoke(app, ["analyze", str(run), "--no-faithfulness", "--no-costs",
                                 "--top-k", "5"])
    assert result.exit_code == 0, result.output
    bench = pd.read_csv(run / "analysis" / "method_benchmark.tsv", sep="\t")
    assert {"lrp-ref@mean", "lrp-ref@knn-restore", "edges", "noise", "lrp-b0"} <= set(
        bench["method"])
    assert bench["sanity_top_layer"].notna().all()
    result = runner.invoke(app, ["report", str(run), "--no-cards"])
    assert result.exit_code == 0, result.output
    html = (run / "report" / "index.html").read_text()
    assert 'id="benchmark"' in html


def test_a_missing_reference_file_is_one_line(run, tmp_path):
    line = one_line_error(["explain", str(run), "-m", "ig-ref", "--reference",
                           str(tmp_path / "none.nii.gz")])
    assert "reference image not found" in line


def test_overwrite_that_fails_keeps_the_earlier_maps(run, monkeypatch):
    """--overwrite replaces each map when its new one is written: a run that stops (here,
    a reference that cannot be built) leaves the earlier maps on disk, byte for byte."""
    result = runner.invoke(app, ["explain", str(run), "-m", "lrp-ref@knn", "--quiet"])
    assert result.exit_code == 0, result.output
    maps = sorted((run / "heatmaps" / "lrp-ref@knn").glob("*.nii.gz"))
    assert len(maps) == 4
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in maps}

    def broken(self, x, k=5):
        raise BrainLRPError("the controls cannot be read", "fix them")

    with monkeypatch.context() as m:
        m.setattr(References, "knn", broken)
        line = one_line_error(["explain", str(run), "-m", "lrp-ref@knn", "--overwrite"])
    assert "controls cannot be read" in line
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in maps} == before
    result = runner.invoke(app, ["explain", str(run), "-m", "lrp-ref@knn", "--overwrite",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert "4 heatmaps written" in result.output
    assert all(p.stat().st_mtime_ns > before[p][1] for p in maps)
    assert all(p.read_bytes() == before[p][0] for p in maps)  # same model, same maps
