"""``brainlrp explain`` on a run: files, affine, resume, one new scan, bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from brainlrp import catalog
from brainlrp._io import save_nifti
from brainlrp.atlas import RegionReducer
from brainlrp.cli import app
from brainlrp.data.grid import Grid
from brainlrp.explain.loop import ScanClaims
from tests.conftest import make_bids_cohort, make_scan, one_line_error, write_scan

runner = CliRunner()
TINY = ["--resolution", "6", "--arch", "tiny", "--epochs", "1", "--test", "2", "--val", "2",
        "--early-stopping-start", "0", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    cohort = make_bids_cohort(root / "cohort", Grid.from_resolution(6), 5, 5)
    out = root / "run"
    result = runner.invoke(app, ["train", str(cohort), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    return out


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_heatmaps_on_the_model_grid_with_its_affine(run):
    _ok(["explain", str(run), "--methods", "lrp-b0,gb", "--quiet"])
    grid = Grid.from_resolution(6)
    test_ids = [line.split("\t")[1] for line in (run / "predictions.tsv").read_text()
                .splitlines()[1:] if line.endswith("\ttest")]
    for method in ("lrp-b0", "gb"):
        for scan_id in test_ids:
            img = nib.load(run / "heatmaps" / method / f"{scan_id}.nii.gz")
            assert img.shape == grid.shape and img.get_data_dtype() == np.float32
            np.testing.assert_allclose(img.affine, grid.affine_array)
            assert not np.allclose(img.affine, np.eye(4))
            assert img.header.get_sform(coded=True)[1] == 4  # MNI
    # A second call finds everything done and rewrites nothing.
    before = {p: p.stat().st_mtime_ns for p in (run / "heatmaps").rglob("*.nii.gz")}
    result = _ok(["explain", str(run), "--methods", "lrp-b0,gb", "--quiet"])
    assert "are up to date" in result.output and "nothing written" in result.output
    assert before == {p: p.stat().st_mtime_ns for p in (run / "heatmaps").rglob("*.nii.gz")}


def _explain_record(run) -> dict:
    return json.loads((run / "run.json").read_text())["stages"]["explain"]


def test_the_record_keeps_every_method_and_the_work_that_made_it(run):
    _ok(["explain", str(run), "--methods", "lrp-b0", "--quiet"])
    first = _explain_record(run)
    result = _ok(["explain", str(run), "--methods", "lrp-b0.75,lrp-b0", "--quiet"])
    assert "heatmaps written" in result.output
    second = _explain_record(run)
    # Every method explained so far, in the catalog's order; the seconds of both calls.
    assert second["methods"] == catalog.ordered([*first["methods"], "lrp-b0.75"])
    assert second["seconds"] >= first["seconds"]
    assert second["method_options"]["lrp-b0.75"] == {"start": "probability"}
    assert second["complete"] == second["n_scans"]
    # Calls that explain nothing leave run.json alone, whatever the order or options
    # (the maps were made with the recorded options).
    stamp = ((run / "run.json").stat().st_mtime_ns, (run / "run.json").read_bytes())
    for args in (["--methods", "lrp-b0,lrp-b0.75"], ["--methods", "lrp-b0.75", "--start",
                                                    "logit"]):
        result = _ok(["explain", str(run), *args, "--quiet"])
        assert "are up to date" in result.output
        assert stamp == ((run / "run.json").stat().st_mtime_ns,
                         (run / "run.json").read_bytes())


def test_resume_fills_in_missing_heatmaps(run):
    _ok(["explain", str(run), "--methods", "lrp-b1", "--quiet"])
    files = sorted((run / "heatmaps" / "lrp-b1").glob("*.nii.gz"))
    kept = files[0].read_bytes()
    files[1].unlink()
    result = _ok(["explain", str(run), "--methods", "lrp-b1", "--quiet"])
    assert "1 heatmaps written" in result.output
    assert files[1].is_file() and files[0].read_bytes() == kept


def test_stale_temporaries_are_removed_unless_their_scan_is_claimed(run):
    _ok(["explain", str(run), "--methods", "lrp-b0.5", "--quiet"])
    folder = run / "heatmaps" / "lrp-b0.5"
    dead, live = sorted(p.name[: -len(".nii.gz")] for p in folder.glob("sub-*.nii.gz"))[:2]
    stale = folder / f".tmp-{dead}.nii.gz-k1ll3d.nii.gz"  # its writer was killed
    busy = folder / f".tmp-{live}.nii.gz-w0rk1n.nii.gz"  # another process is writing it
    stale.write_bytes(b"half")
    busy.write_bytes(b"half")
    claims = ScanClaims(run / "heatmaps" / ".claims")
    assert claims.acquire(live)
    try:
        _ok(["explain", str(run), "--methods", "lrp-b0.5", "--quiet"])
    finally:
        claims.release(live)
    assert not stale.exists() and busy.exists()
    busy.unlink()


def test_one_new_scan(run, tmp_path):
    grid = Grid.from_resolution(6)
    scan = write_scan(tmp_path / "new.nii.gz", make_scan(grid, seed=99), grid.affine_array)
    out = tmp_path / "out"
    result = _ok(["explain", str(run), "--scan", str(scan), "--out", str(out),
                  "--methods", "lrp-b0,gradient"])
    assert "AD probability" in result.output
    # The line counts what is on disk: two heatmaps beside the input and prediction.json.
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        "gradient.nii.gz", "input.nii.gz", "lrp-b0.nii.gz", "prediction.json"]
    assert (f"wrote input.nii.gz, 2 heatmap(s) on the model grid, prediction.json to {out}"
            in " ".join(result.output.split()))
    pred = json.loads((out / "prediction.json").read_text())
    assert 0 <= pred["p_ad"] <= 1 and pred["predicted"] in ("AD", "HC")
    for name in ("input", "lrp-b0", "gradient"):
        np.testing.assert_allclose(nib.load(out / f"{name}.nii.gz").affine, grid.affine_array)


def test_scan_on_another_grid_needs_resample(run, tmp_path):
    fine = Grid.from_resolution(4)
    scan = write_scan(tmp_path / "fine.nii.gz", make_scan(fine, seed=5), fine.affine_array)
    line = one_line_error(["explain", str(run), "--scan", str(scan), "--out",
                            str(tmp_path / "o")])
    assert "fine.nii.gz" in line and "--resample" in line
    _ok(["explain", str(run), "--scan", str(scan), "--out", str(tmp_path / "o"),
         "--resample"])


def test_a_4d_or_native_scan_is_named_before_any_grid_advice(run, tmp_path):
    fine = Grid.from_resolution(4)  # another grid: the grid check would say --resample
    data = make_scan(fine, seed=6)
    four_d = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), fine.affine_array), four_d)
    line = one_line_error(["explain", str(run), "--scan", str(four_d), "--out",
                           str(tmp_path / "o")])
    assert "4D with 2 volumes" in line and "--resample" not in line
    shifted = fine.affine_array.copy()
    shifted[:3, 3] += (0, 60, 80)  # a scanner origin: not in MNI space
    native = write_scan(tmp_path / "native.nii.gz", data, shifted)
    line = one_line_error(["explain", str(run), "--scan", str(native), "--out",
                           str(tmp_path / "o")])
    assert "not in MNI space" in line and "--register" in line and "--resample" not in line
    assert not (tmp_path / "o").exists()


def test_a_scan_with_its_skull_needs_register_for_a_model_of_extracted_brains(run,
                                                                             tmp_path):
    from scipy import ndimage as ndi

    from brainlrp.data.grid import brain_mask

    grid = Grid.from_resolution(6)
    data = make_scan(grid, seed=95)
    mask = np.asarray(brain_mask(grid))
    skull = ndi.binary_dilation(mask, iterations=2) & ~mask
    data[skull] = 1.3 * data[mask].max()
    head = write_scan(tmp_path / "head.nii.gz", data, grid.affine_array)
    line = one_line_error(["explain", str(run), "--scan", str(head), "--out",
                           str(tmp_path / "o")])
    assert "head.nii.gz still has its skull" in line and "--register" in line
    stripped = write_scan(tmp_path / "brain.nii.gz", data * mask, grid.affine_array)
    _ok(["explain", str(run), "--scan", str(stripped), "--out", str(tmp_path / "o"),
         "--methods", "lrp-b0"])


def test_scan_steps_are_printed_and_every_file_is_counted(run, tmp_path):
    grid = Grid.from_resolution(6)
    scan = write_scan(tmp_path / "new.nii.gz", make_scan(grid, seed=98), grid.affine_array)
    out = tmp_path / "out"
    result = _ok(["explain", str(run), "--scan", str(scan), "--out", str(out),
                  "--methods", "lrp-b0,lrp-ref@knn-restore", "--cache-dir",
                  str(tmp_path / "empty-cache")])
    for step in ("scan ", "preprocess:", "lrp-b0: explaining",
                 "training controls are not in the cache; preprocessing them",
                 "lrp-ref@knn-restore: explaining"):
        assert step in result.output
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        "input.nii.gz", "lrp-b0.nii.gz", "lrp-ref@knn-restore.nii.gz", "prediction.json"]
    assert (f"wrote input.nii.gz, 2 heatmap(s) on the model grid, prediction.json to {out}"
            in " ".join(result.output.split()))
    pred = json.loads((out / "prediction.json").read_text())
    assert set(pred["seconds"]) >= {"preprocess", "lrp-b0", "lrp-ref@knn-restore"}
    assert pred["intensity"]["flagged"] is False
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_scan_whose_brain_looks_unlike_the_training_scans_is_flagged(run, tmp_path):
    grid = Grid.from_resolution(6)
    data = make_scan(grid, seed=96)
    odd = write_scan(tmp_path / "odd.nii.gz", (data / data.max()) ** 4, grid.affine_array)
    result = _ok(["explain", str(run), "--scan", str(odd), "--out", str(tmp_path / "o"),
                  "--methods", "lrp-b0"])
    assert "note: odd.nii.gz: its brain is darker than the training scans'" in result.output
    pred = json.loads((tmp_path / "o" / "prediction.json").read_text())
    assert pred["intensity"]["flagged"] and pred["intensity"]["robust_z"] < -5


def test_an_interrupted_scan_leaves_its_folder_alone(run, tmp_path, monkeypatch):
    import brainlrp.explain as explain_pkg

    grid = Grid.from_resolution(6)
    scan = write_scan(tmp_path / "new.nii.gz", make_scan(grid, seed=97), grid.affine_array)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    stale = tmp_path / ".tmp-out-killed"  # a killed call's work folder (unlocked)
    (stale / "native").mkdir(parents=True)
    (stale / ".lock").touch()
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(explain_pkg, "explain", interrupted)
    result = runner.invoke(app, ["explain", str(run), "--scan", str(scan), "--out", str(out),
                                 "--methods", "lrp-b0"])
    assert result.exit_code == 130 and calls
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # no input.nii.gz left alone
    assert not list(tmp_path.glob(".tmp-*"))  # the stale folder went too


def test_reference_of_a_scan_is_taken_from_the_training_preprocessing(run, tmp_path,
                                                                      monkeypatch):
    """``--register`` registers the scan only: the knn reference comes from the training
    controls as the (MNI-space) model saw them, never registered."""
    import ants  # noqa: F401  (a hard dependency: without it this test fails)

    import brainlrp.data.register as reg
    from tests.data.native import template_native

    native = template_native(tmp_path / "native.nii.gz", seed=3)
    registered = []
    real = reg.register_scan

    def counting(path, *args, **kwargs):
        registered.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(reg, "register_scan", counting)
    out = tmp_path / "out"
    result = _ok(["explain", str(run), "--scan", str(native), "--out", str(out),
                  "--register", "--methods", "lrp-ref@knn-restore"])
    assert registered == [str(native)], registered
    assert "register:" in result.output
    assert (out / "native" / "lrp-ref@knn-restore.nii.gz").is_file()


def test_unknown_method_lists_the_known_ones(run):
    line = one_line_error(["explain", str(run), "--methods", "lrp-b0,magic"])
    assert "'magic'" in line and "lrp-b0" in line and "gb" in line


def test_run_without_model(tmp_path):
    assert "model card" in one_line_error(["explain", str(tmp_path)])


def test_planted_left_relevance_is_found_under_a_left_label(tmp_path):
    """A heatmap saved the way explain saves it keeps left on the left."""
    grid = Grid.from_resolution(2)
    heat = np.zeros(grid.shape, np.float32)
    # Left hippocampus/amygdala region in MNI: x < 0 is left in RAS+.
    for x, y, z in [(-24, -18, -14), (-26, -22, -12), (-22, -10, -18)]:
        i, j, k = np.round(np.linalg.solve(grid.affine_array, [x, y, z, 1])[:3]).astype(int)
        heat[i - 1:i + 2, j - 1:j + 2, k - 1:k + 2] = 1.0
    path = tmp_path / "heat.nii.gz"
    save_nifti(path, heat, grid.affine_array)
    loaded = nib.load(path)
    reducer = RegionReducer("neuromorphometrics").fit(grid)
    sums = reducer.transform(np.asarray(loaded.dataobj))
    hemis = reducer.regions_.assign(s=sums).groupby("hemisphere")["s"].sum()
    assert hemis.get("left", 0) > 0.9 * sums.sum()
    top = reducer.regions_.iloc[int(np.argmax(sums))]
    assert top["region"].startswith("Left_")
