"""Registration of native-space scans: geometry, accuracy, cache, QC, warp back."""

from __future__ import annotations

import json

import ants
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlrp.data.grid import Grid, brain_mask
from brainlrp.data.preprocess import PreprocessCache, Preprocessing
from brainlrp.data.register import (
    Registration,
    ants_geometry,
    flag_outliers,
    ras_affine,
    register_scan,
    registration_dir,
    template_correlation,
    write_registration_qc,
)
from brainlrp.errors import BrainLRPError
from tests.data.native import MRICRON, known_transform, template_native, write_native

GRID = Grid.from_resolution(6)


def map_points(reg, points_ras: np.ndarray) -> np.ndarray:
    pts = pd.DataFrame(points_ras * [-1, -1, 1], columns=["x", "y", "z"])
    out = ants.apply_transforms_to_points(3, pts, [str(p) for p in reg.forward])
    return out[["x", "y", "z"]].to_numpy() * [-1, -1, 1]


def displacement_error(reg, transform: np.ndarray, grid: Grid) -> float:
    """Mean distance (mm) over brain voxels between recovered and true native points."""
    points = nib.affines.apply_affine(grid.affine_array, np.argwhere(brain_mask(grid)))
    want = nib.affines.apply_affine(np.linalg.inv(transform), points)
    return float(np.linalg.norm(map_points(reg, points) - want, axis=1).mean())


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    root = tmp_path_factory.mktemp("register")
    scan = template_native(root / "native.nii.gz", seed=0)
    cache = PreprocessCache(root / "cache")
    prep = Preprocessing(GRID, registration=Registration("affine"))
    return scan, cache, prep, cache.registration(scan, prep)


def test_geometry_round_trip_and_matches_itk(tmp_path):
    affine = np.array([[-1.0, 0.1, 0, 90], [0, 1.1, 0, -120], [0, 0, 1.2, -70], [0, 0, 0, 1]])
    origin, spacing, direction = ants_geometry(affine)
    np.testing.assert_allclose(ras_affine(origin, spacing, direction), affine, atol=1e-9)
    path = tmp_path / "las.nii.gz"
    plain = np.diag([-2.0, 2.0, 2.4, 1.0])
    plain[:3, 3] = [50, -60, -40]
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), plain), path)
    itk = ants.image_read(str(path))
    np.testing.assert_allclose(ras_affine(itk.origin, itk.spacing, itk.direction), plain,
                               atol=1e-5)


def test_affine_registration_recovers_known_transform(registered):
    scan, _, _, reg = registered
    assert reg.correlation > 0.7
    # 6 mm grid, 4 x 4 x 4.8 mm scan: well under a voxel
    assert displacement_error(reg, known_transform(0), GRID) < 2.0


def test_registration_is_cached_and_atomic(registered, monkeypatch):
    scan, cache, prep, reg = registered
    folder = registration_dir(cache.root, cache.content_hash(scan), prep.registration, GRID)
    assert reg.folder == folder and (folder / "registration.json").is_file()
    assert not list(folder.parent.glob(".tmp-*"))
    monkeypatch.setattr("brainlrp.data.register._register",
                        lambda *a, **k: pytest.fail("registered again"))
    assert cache.registration(scan, prep).record == reg.record
    array = np.load(cache.get(scan, prep))
    assert array.shape == GRID.shape and array.max() == pytest.approx(1.0)
    assert np.all(array[~brain_mask(GRID)] == 0)


def test_failed_registration_is_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    scan = template_native(tmp_path / "native.nii.gz", seed=0)

    def broken(*args, **kwargs):
        raise RuntimeError("itk::ExceptionObject: all samples map outside moving image")

    monkeypatch.setattr("brainlrp.data.register._register", broken)
    folder = tmp_path / "cache" / "entry"
    with pytest.raises(BrainLRPError, match="registration of .* failed"):
        register_scan(scan, Registration(), GRID, folder)
    assert not folder.exists() and not list(folder.parent.iterdir())


def test_preprocessing_records_registration():
    prep = Preprocessing(GRID, registration=Registration("syn", seed=3))
    again = Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep and again.key() == prep.key()
    # MNI-space preprocessing keeps its old description, hence its cache keys
    assert "registration" not in Preprocessing(GRID).to_dict()
    assert Preprocessing(GRID).key() != prep.key()
    with pytest.raises(BrainLRPError, match="unknown registration"):
        Registration("bspline")


def test_quality_score_and_outliers():
    rng = np.random.default_rng(0)
    a = rng.random((7, 8, 9))
    mask = a > 0.2
    assert template_correlation(a, 2 * a + 1, mask) == pytest.approx(1.0)
    assert template_correlation(a, np.ones_like(a), mask) == 0.0
    reasons = flag_outliers([0.9, 0.91, 0.89, 0.9, 0.92, 0.7, 0.3])
    assert [bool(r) for r in reasons] == [False] * 5 + [True, True]
    assert "< 0.4" in reasons[-1] and "robust SD" in reasons[-2]


def test_qc_table_and_figure(registered, tmp_path):
    _, _, _, reg = registered
    scans = pd.DataFrame({"scan_id": ["sub-01"], "participant_id": ["sub-01"]})
    table = write_registration_qc(tmp_path, scans, [reg])
    read = pd.read_csv(tmp_path / "registration" / "qc.tsv", sep="\t")
    assert list(read.columns) == list(table.columns)
    assert read.loc[0, "correlation"] == pytest.approx(reg.correlation, abs=1e-5)
    assert not read.loc[0, "flagged"]
    assert (tmp_path / read.loc[0, "figure"]).stat().st_size > 1000


def test_heatmap_goes_back_to_the_right_native_place(registered):
    """A blob at the left hippocampus (MNI) lands at the true native point, on the left."""
    scan, _, _, reg = registered
    t = known_transform(0)
    img = nib.load(scan)
    for centre in ([-28.0, -22.0, -14.0], [30.0, -22.0, -14.0]):
        ijk = np.indices(GRID.shape).reshape(3, -1).T
        xyz = nib.affines.apply_affine(GRID.affine_array, ijk).reshape(*GRID.shape, 3)
        blob = np.exp(-((xyz - centre) ** 2).sum(-1) / (2 * 8.0 ** 2)).astype(np.float32)
        native = reg.to_native(blob, img.shape, img.affine)
        assert native.shape == img.shape
        peak = np.unravel_index(np.argmax(native), native.shape)
        world = nib.affines.apply_affine(img.affine, peak)
        want = nib.affines.apply_affine(np.linalg.inv(t), centre)
        assert np.linalg.norm(world - want) < 6.0  # one model voxel
        # left stays left: back in MNI through the known transform, x keeps its sign
        assert np.sign(nib.affines.apply_affine(t, world)[0]) == np.sign(centre[0])


def test_native_relevance_keeps_its_sum(registered):
    """Relevance moved onto the 4 x 4 x 4.8 mm scan keeps its total (interpolating it like
    an image would scale it by the voxel-volume ratio, 216 / 76.8) and its place."""
    scan, _, _, reg = registered
    img = nib.load(scan)
    ijk = np.indices(GRID.shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(GRID.affine_array, ijk).reshape(*GRID.shape, 3)
    blob = np.exp(-((xyz - [-28.0, -22.0, -14.0]) ** 2).sum(-1) / (2 * 10.0 ** 2))
    heat = (blob * brain_mask(GRID)).astype(np.float32)
    native = reg.relevance_to_native(heat, img.shape, img.affine)
    assert native.sum() == pytest.approx(heat.sum(), rel=0.03)
    # the volume change is the known transform's: native mm^3 per template mm^3
    ratio = reg.volume_ratio(brain_mask(GRID))
    assert np.allclose(ratio, 1 / abs(np.linalg.det(known_transform(0)[:3, :3])), rtol=0.03)
    image_like = reg.to_native(heat, img.shape, img.affine)
    assert image_like.sum() / heat.sum() == pytest.approx(216 / 76.8, rel=0.1)
    # A region's relevance is the same summed on either grid (the region moved with the
    # scan, by nearest neighbour): the left hemisphere's, and a box around the blob whose
    # faces lie 3 SD out (a face through the blob would count the voxels it cuts, 6 mm
    # on the model grid and 4 mm on the scan's, differently).
    for region in (xyz[..., 0] < 0, (np.abs(xyz - [-28.0, -22.0, -14.0]) < 30).all(-1)):
        moved = reg.to_native(region.astype(np.float32), img.shape, img.affine) > 0.5
        assert native[moved].sum() == pytest.approx(heat[region].sum(), rel=0.05)


@pytest.mark.skipif(not (MRICRON / "ch2.nii.gz").is_file(),
                    reason="needs Debian's mricron-data (Colin27 ch2.nii.gz)")
def test_real_colin27_head_registers_back(tmp_path):
    """Colin27 with its skull, moved and stored LAS int16: the known transform comes back.

    Measured against brainlrp's registration of the unmoved Colin27, so the anatomical
    difference between Colin27 and the ICBM average (about 2 mm) is not counted.
    """
    src = nib.load(MRICRON / "ch2.nii.gz")
    data = np.asarray(src.dataobj, np.float32)
    t = known_transform(0)
    moved = write_native(tmp_path / "moved.nii.gz", data, src.affine, t, voxel=3.0)
    still = write_native(tmp_path / "still.nii.gz", data, src.affine, np.eye(4), voxel=3.0)
    grid = Grid.from_resolution(4)
    reg = register_scan(moved, Registration("affine"), grid, tmp_path / "moved")
    ref = register_scan(still, Registration("affine"), grid, tmp_path / "still")
    assert not flag_outliers([reg.correlation, ref.correlation])[0]
    points = nib.affines.apply_affine(grid.affine_array, np.argwhere(brain_mask(grid)))
    want = nib.affines.apply_affine(np.linalg.inv(t), map_points(ref, points))
    error = np.linalg.norm(map_points(reg, points) - want, axis=1).mean()
    assert error < 3.0  # under a voxel of the 4 mm grid
    again = register_scan(moved, Registration("affine"), grid, tmp_path / "again")
    assert again.record["correlation"] == reg.record["correlation"]  # deterministic
