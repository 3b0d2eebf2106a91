"""One subject: reproducible draws, disease confined to the model's regions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainlrp.data.grid import Grid
from brainlrp.simulate.anatomy import template_anatomy
from brainlrp.simulate.disease import load_disease_model
from brainlrp.simulate.ground_truth import volume_table
from brainlrp.simulate.scanner import scanner_effects
from brainlrp.simulate.subject import draw_subject, render_subject

from .conftest import TEST_RESOLUTION

#: Temporal labels of the left hemisphere only, medial ones close to the midline.
LEFT_ONLY = {"name": "left-temporal", "severity": [0.7, 0.7], "subtypes": {
    "left": {"weight": 1, "regions": {"Left_Hippocampus": 0.5, "Left_Amygdala": 0.5,
                                      "Left_Ent_entorhinal_area": 0.5,
                                      "Left_PHG_parahippocampal_gyrus": 0.5,
                                      "Left_MTG_middle_temporal_gyrus": 0.4,
                                      "Left_ITG_inferior_temporal_gyrus": 0.4}}}}


@pytest.fixture(scope="module")
def anatomy():
    return template_anatomy(Grid.from_resolution(TEST_RESOLUTION))


def _world_x(anatomy, voxels: np.ndarray) -> np.ndarray:
    """World x (mm) of box voxel indices (n, 3)."""
    offset = np.array([s.start for s in anatomy.box])
    return nib.affines.apply_affine(anatomy.grid.affine_array, voxels + offset)[:, 0]


def test_draws_depend_only_on_seed_and_index():
    model = load_disease_model("default")
    a = draw_subject(3, 7, "sub-0008", "AD", model)
    assert a == draw_subject(3, 7, "sub-0008", "AD", model)
    cn = draw_subject(3, 7, "sub-0008", "HC", model)
    other_model = draw_subject(3, 7, "sub-0008", "AD", load_disease_model(LEFT_ONLY))
    # The person and the scanner stay the same whatever the diagnosis or model.
    assert a.anatomy_seed == cn.anatomy_seed == other_model.anatomy_seed
    assert a.scanner_seed == cn.scanner_seed
    assert a.sex == cn.sex
    assert cn.losses == {} and cn.subtype == "none" and cn.severity == 0
    assert a.losses and a.subtype in {s.name for s in model.subtypes}
    assert draw_subject(3, 8, "sub-0009", "AD", model).anatomy_seed != a.anatomy_seed


def test_rendering_is_deterministic_and_cn_has_no_loss(anatomy):
    spec = draw_subject(1, 0, "sub-0001", "HC", load_disease_model("default"))
    first, second = render_subject(spec, anatomy), render_subject(spec, anatomy)
    np.testing.assert_array_equal(first.t1, second.t1)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert not first.tissue_loss.any()
    np.testing.assert_array_equal(first.labels, first.labels_before)


def test_left_only_model_leaves_the_right_hemisphere_untouched(anatomy):
    model = load_disease_model(LEFT_ONLY)
    spec = draw_subject(5, 2, "sub-0003", "AD", model)
    healthy = spec.without_disease()
    sick, well = render_subject(spec, anatomy), render_subject(healthy, anatomy)
    t1 = scanner_effects(sick.t1, sick.brain, anatomy.wm_intensity, spec.scanner_seed)
    t1_well = scanner_effects(well.t1, well.brain, anatomy.wm_intensity,
                              healthy.scanner_seed)
    changed = np.argwhere(t1 != t1_well)
    assert len(changed) > 0
    assert _world_x(anatomy, changed).max() < 0, "intensities changed right of the midline"
    np.testing.assert_array_equal(sick.labels_before, well.labels)

    names = anatomy.label_names
    right = [i for i, n in names.items() if n.startswith("Right_")]
    loss = sick.tissue_loss
    assert loss.max() > 0.05
    assert not loss[np.isin(sick.labels, right) | np.isin(sick.labels_before, right)].any()
    table = volume_table(sick.labels_before, sick.labels, names,
                         anatomy.grid.voxel_volume, spec.losses)
    on_right = table["label"].str.startswith("Right_")
    assert (table.loc[on_right, "relative_loss"] == 0).all()
    atrophied = table["label"].isin(spec.losses)
    assert (table.loc[atrophied, "relative_loss"] > 0).all()


def test_atrophy_darkens_and_shrinks_the_targeted_labels(anatomy):
    model = load_disease_model({"severity": [0.8, 0.8], "subtypes": {"mtl": {
        "weight": 1, "regions": {"Hippocampus": 0.5, "Amygdala": 0.5}}}})
    spec = draw_subject(2, 4, "sub-0005", "AD", model)
    sick = render_subject(spec, anatomy, keep_before=True)
    hippo = [anatomy.label_index(n) for n in ("Left_Hippocampus", "Right_Hippocampus")]
    before = np.isin(sick.labels_before, hippo)
    after = np.isin(sick.labels, hippo)
    assert after.sum() < 0.85 * before.sum()
    # Lost tissue turns CSF-like: the region's old voxels get darker on average.
    assert sick.t1[before].mean() < sick.t1_before[before].mean()


def test_scanner_effects_are_seeded_and_skull_stripped(anatomy):
    spec = draw_subject(4, 1, "sub-0002", "HC", load_disease_model("default"))
    images = render_subject(spec, anatomy)
    a = scanner_effects(images.t1, images.brain, anatomy.wm_intensity, seed=9)
    b = scanner_effects(images.t1, images.brain, anatomy.wm_intensity, seed=9)
    c = scanner_effects(images.t1, images.brain, anatomy.wm_intensity, seed=10)
    assert a.dtype == np.int16
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert not a[~images.brain].any()
    assert 500 < np.median(a[images.brain]) < 1500


def test_scanner_rescan_keeps_the_scanner_and_draws_fresh_noise(anatomy):
    """noise_seed: the same bias field, contrast, noise level and gain; a new noise image."""
    from scipy import ndimage as ndi

    spec = draw_subject(4, 1, "sub-0002", "HC", load_disease_model("default"))
    images = render_subject(spec, anatomy)
    args = (images.t1, images.brain, anatomy.wm_intensity, 9)
    a = scanner_effects(*args)
    again = scanner_effects(*args, noise_seed=5)
    np.testing.assert_array_equal(again, scanner_effects(*args, noise_seed=5))
    other = scanner_effects(*args, noise_seed=6)
    assert (again != other).any()
    np.testing.assert_array_equal(a, scanner_effects(*args))  # the default draw is unchanged
    brain = images.brain
    assert not again[~brain].any()
    diff = again.astype(float) - a
    level = np.median(a[brain])
    assert (diff[brain] != 0).mean() > 0.5
    assert abs(diff[brain].mean()) < 0.005 * level  # same gain and bias field
    # Fresh noise of the drawn level (1-3 % of white matter; twice the variance).
    assert 0.005 * level < diff[brain].std() / np.sqrt(2) < 0.04 * level
    smooth = [ndi.uniform_filter(v.astype(float), 3)[brain] for v in (a, again)]
    assert np.corrcoef(*smooth)[0, 1] > 0.99
