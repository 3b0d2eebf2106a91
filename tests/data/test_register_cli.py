"""Native-space scans end to end: train --register, QC, explain --scan back to the scan."""

from __future__ import annotations

import json

import ants  # noqa: F401  (a hard dependency: without it this module fails)
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from brainlrp.cli import app
from brainlrp.data.register import QC_COLUMNS
from tests.conftest import one_line_error
from tests.data.native import known_transform, template_native

runner = CliRunner()
TINY = ["--resolution", "6", "--arch", "tiny", "--epochs", "1", "--test", "1", "--val", "1",
        "--early-stopping-start", "0", "--quiet"]


@pytest.fixture(scope="module")
def native_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("native") / "cohort"
    rows = []
    for k, dx in enumerate(["CN", "AD"] * 3, start=1):
        pid = f"sub-{k:02d}"
        template_native(root / pid / "anat" / f"{pid}_T1w.nii.gz", seed=k,
                        atrophy=0.5 if dx == "AD" else 0.0)
        rows.append({"participant_id": pid, "diagnosis": dx})
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def test_native_scans_without_register_say_so(native_cohort, tmp_path):
    # the same scans with a scanner origin 80 mm away from MNI's
    cohort = tmp_path / "scanner"
    for scan in native_cohort.glob("sub-*/anat/*.nii.gz"):
        img = nib.load(scan)
        affine = img.affine.copy()
        affine[2, 3] += 80
        target = cohort / scan.relative_to(native_cohort)
        target.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), target)
    (cohort / "participants.tsv").write_text((native_cohort / "participants.tsv").read_text())
    line = one_line_error(["prepare", str(cohort), "--out", str(tmp_path / "run"),
                           "--resolution", "6", "--arch", "tiny", "--test", "1", "--val", "1"])
    assert "not in MNI space" in line and "--register" in line


@pytest.fixture(scope="module")
def trained(native_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = runner.invoke(app, ["train", str(native_cohort), "--out", str(out), "--register",
                                 *TINY])
    assert result.exit_code == 0, result.output
    return out


def test_train_register_writes_qc_and_records_transforms(trained):
    qc = pd.read_csv(trained / "registration" / "qc.tsv", sep="\t")
    assert list(qc.columns) == list(QC_COLUMNS) and len(qc) == 6
    assert (qc["correlation"] > 0.7).all() and not qc["flagged"].any()
    assert all((trained / f).is_file() for f in qc["figure"])
    run = json.loads((trained / "run.json").read_text())
    reg = run["stages"]["registration"]
    assert reg["registration"]["method"] == "affine" and reg["n_scans"] == 6
    assert all(all(p.endswith(".mat") for p in v) for v in reg["transforms"].values())
    card = json.loads((trained / "model" / "card.json").read_text())
    assert card["preprocessing"]["registration"]["method"] == "affine"


def test_explain_scan_writes_mni_and_native_heatmaps(trained, native_cohort, tmp_path):
    scan = native_cohort / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    out = tmp_path / "explained"
    result = runner.invoke(app, ["explain", str(trained), "--scan", str(scan), "--out",
                                 str(out), "--register"])
    assert result.exit_code == 0, result.output
    mni, native = nib.load(out / "lrp-b0.nii.gz"), nib.load(out / "native" / "lrp-b0.nii.gz")
    src = nib.load(scan)
    assert mni.shape == (33, 39, 33)
    assert native.shape == src.shape and np.allclose(native.affine, src.affine)
    assert (out / "registration.png").is_file()
    # The line counts what is on disk.
    heatmaps = sorted(p.name for p in out.glob("*.nii.gz") if p.name != "input.nii.gz")
    assert heatmaps == sorted(p.name for p in (out / "native").glob("*.nii.gz"))
    assert (f"wrote input.nii.gz, {len(heatmaps)} heatmap(s) on the model grid, "
            f"{len(heatmaps)} on the scan's own grid in native/, prediction.json, "
            f"registration.png to {out}") in " ".join(result.output.split())
    pred = json.loads((out / "prediction.json").read_text())
    assert pred["registration"]["method"] == "affine" and not pred["registration"]["flagged"]
    # The native maps say what their values are: relevance whose sums are kept.
    assert pred["native"]["values"] == "relevance per voxel, region sums kept"
    assert native.header["descrip"].tobytes().decode().rstrip("\x00").endswith(
        "relevance per voxel, region sums kept")
    assert np.asarray(native.dataobj).sum() == pytest.approx(np.asarray(mni.dataobj).sum(),
                                                             rel=0.05)

    # the relevance's centre of mass lands where the known transform says
    def centre(img):
        w = np.abs(np.asarray(img.dataobj, float))
        ijk = np.argwhere(w > 0)
        return nib.affines.apply_affine(img.affine, (ijk * w[w > 0][:, None]).sum(0)
                                        / w[w > 0].sum())

    expected = nib.affines.apply_affine(np.linalg.inv(known_transform(2)), centre(mni))
    assert np.linalg.norm(centre(native) - expected) < 6.0
