"""Planting atrophy into a real scan: the disease where the model asks, nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from brainlrp.data.grid import Grid, template
from brainlrp.simulate.anatomy import template_anatomy
from brainlrp.simulate.disease import load_disease_model
from brainlrp.simulate.ground_truth import volume_table
from brainlrp.simulate.plant import plant_atrophy, segment
from brainlrp.simulate.subject import draw_subject, render_subject

from .conftest import TEST_RESOLUTION

GRID = Grid.from_resolution(TEST_RESOLUTION)
HIPPOCAMPI = {"Left_Hippocampus": 0.4, "Right_Hippocampus": 0.4}


@pytest.fixture(scope="module")
def scan():
    """A simulated healthy subject (an anatomy the atlas does not fit exactly) with noise."""
    a = template_anatomy(GRID)
    spec = draw_subject(5, 3, "sub-0004", "HC", load_disease_model("default"))
    t1 = a.paste(render_subject(spec, a).t1)
    rng = np.random.default_rng(0)
    return t1 + rng.normal(0, 0.02 * t1.max(), t1.shape).astype(np.float32) * (t1 > 0)


def test_segmentation_orders_classes_and_fills_the_brain(scan):
    seg = segment(scan, GRID)
    a = template_anatomy(GRID)
    assert seg.means[0] < seg.means[1] < seg.means[2]  # CSF < GM < WM in T1
    total = seg.csf + seg.gm + seg.wm
    inside = a.foreground > 0.05
    np.testing.assert_allclose(total[inside], a.foreground[inside], atol=1e-5)
    # Most of the template's white matter is white matter in the scan too.
    assert seg.wm[a.wm > 0.9].mean() > 0.6
    assert seg.csf_level < np.percentile(scan[scan > 0], 50)


def test_planted_volumes_follow_the_disease_model(scan):
    planted = plant_atrophy(scan, GRID, HIPPOCAMPI)
    a = template_anatomy(GRID)
    table = volume_table(planted.labels_before, planted.labels_after, a.label_names,
                         GRID.voxel_volume, HIPPOCAMPI).set_index("label")
    for name, asked in HIPPOCAMPI.items():
        assert abs(table.loc[name, "relative_loss"] - asked) < 0.12, name
    # Untouched labels far from the hippocampi keep their volume.
    assert abs(table.loc["Left_SFG_superior_frontal_gyrus", "relative_loss"]) < 0.02
    # The ventricles next to them take up the volume (they grow).
    vents = table.loc[["Left_Lateral_Ventricle", "Right_Lateral_Ventricle"]]
    assert vents["volume_after_mm3"].sum() > vents["volume_before_mm3"].sum()


def test_planting_darkens_only_near_the_disease(scan):
    planted = plant_atrophy(scan, GRID, HIPPOCAMPI)
    a = template_anatomy(GRID)
    labels = a.paste(a.labels)
    hippo = np.isin(labels, [a.label_index(n) for n in HIPPOCAMPI])
    diff = planted.image - scan
    # Tissue is lost in and around the hippocampi, and where it is the scan darkens
    # (the lost tissue's signal turns CSF-like).
    lost = planted.tissue_loss > 0.1
    assert (lost & hippo).sum() > 0.3 * hippo.sum()
    assert diff[lost].mean() < -0.02 * scan.max()
    # Beyond the flow's reach (30 mm from the hippocampi) the scan is the original.
    far = ndi.distance_transform_edt(~hippo) * TEST_RESOLUTION > 30
    np.testing.assert_array_equal(planted.image[far], scan[far])
    assert not planted.tissue_loss[far].any()


def test_planted_scan_keeps_the_original_range(scan):
    """Min-max scaling (the default preprocessing) must scale the planted scan exactly as
    its original, or the whole brain differs from its twin."""
    from brainlrp.data.preprocess import Preprocessing, preprocess_image

    planted = plant_atrophy(scan, GRID, HIPPOCAMPI)
    assert planted.image.min() == scan.min() and planted.image.max() == scan.max()
    import nibabel as nib

    prep = Preprocessing(grid=GRID)
    x = preprocess_image(nib.Nifti1Image(scan, GRID.affine_array), prep)
    y = preprocess_image(nib.Nifti1Image(planted.image, GRID.affine_array), prep)
    far = ndi.distance_transform_edt(planted.tissue_loss <= 0.05) * TEST_RESOLUTION > 30
    inside = far & (x > 0.05)
    assert inside.any()
    np.testing.assert_allclose(y[inside], x[inside], atol=1e-6)


def test_no_loss_leaves_the_scan_alone(scan):
    planted = plant_atrophy(scan, GRID, {})
    np.testing.assert_array_equal(planted.image, scan)
    assert not planted.tissue_loss.any()
    with pytest.raises(ValueError, match="grid"):
        plant_atrophy(scan[:-1], GRID, HIPPOCAMPI)


def test_planting_into_colin27():
    """A real single-subject T1 (mricron-data's Colin27, brain-extracted, MNI space)."""
    path = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
    if not path.is_file():
        pytest.skip("mricron-data is not installed (apt-get install mricron-data)")
    import nibabel as nib
    from nilearn.image import resample_img

    img = resample_img(nib.load(path), target_affine=GRID.affine_array,
                       target_shape=GRID.shape, interpolation="continuous",
                       force_resample=True, copy_header=True)
    colin = np.asarray(img.dataobj, dtype=np.float32)
    planted = plant_atrophy(colin, GRID, HIPPOCAMPI)
    a = template_anatomy(GRID)
    hippo = np.isin(a.paste(a.labels), [a.label_index(n) for n in HIPPOCAMPI])
    lost = planted.tissue_loss > 0.1
    assert (lost & hippo).sum() > 0.3 * hippo.sum()
    assert (planted.image - colin)[lost].mean() < -0.02 * colin.max()
    assert np.isfinite(planted.image).all()
    assert template(GRID).shape == planted.image.shape
