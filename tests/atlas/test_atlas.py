"""Atlases: built-ins, hemispheres and merged areas, user atlases, region reductions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlrp.atlas import RegionReducer, load_atlas, region_means, region_sums
from brainlrp.atlas.builtin import area_of, hemisphere_of
from brainlrp.data.grid import Grid
from brainlrp.errors import BrainLRPError


def test_neuromorphometrics_has_the_papers_68_areas():
    atlas = load_atlas("neuromorphometrics")
    assert len(atlas.labels) == 136
    assert atlas.labels["area"].nunique() == 68
    areas = atlas.labels.set_index("name")["area"]
    assert areas["Left_Hippocampus"] == areas["Right_Hippocampus"] == "Hippocampus"
    assert areas["Left_Cerebellum_White_Matter"] == "Cerebellum"
    assert areas["Right_Inf_Lat_Vent"] == areas["Left_Lateral_Ventricle"] == "Lateral Ventricles"
    assert areas["Cerebellar_Vermal_Lobules_VI-VII"] == "Vermal Lobules"


@pytest.mark.parametrize("name,hemi,area", [
    ("Left_Hippocampus", "left", "Hippocampus"), ("Precentral_R", "right", "Precentral"),
    ("ctx-lh-parahippocampal", "left", "ctx-parahippocampal"), ("Brain_Stem", "midline",
                                                                "Brain_Stem"),
    ("G_Frontal_Sup-1-L", "left", "G_Frontal_Sup-1"), ("Lingual", "midline", "Lingual"),
])
def test_hemisphere_and_area(name, hemi, area):
    assert hemisphere_of(name) == hemi
    assert area_of(name) == area


@pytest.mark.parametrize("name", ["aal", "harvard_oxford", "desikan_killiany", "juelich"])
def test_other_builtin_atlases_load_as_3d_labels(name):
    atlas = load_atlas(name)
    data = np.asarray(atlas.image.dataobj)
    assert data.ndim == 3 and data.dtype == np.int32
    assert set(np.unique(data)) - {0} <= set(atlas.labels["index"])
    assert nib.aff2axcodes(atlas.image.affine) == ("R", "A", "S")


def test_left_blob_falls_under_a_left_label():
    grid = Grid.from_resolution(2)
    reducer = RegionReducer("neuromorphometrics").fit(grid)
    heat = np.zeros(grid.shape, np.float32)
    # MNI (-25, -20, -12): left hippocampus; x < 0 is left in RAS+.
    ijk = np.round(np.linalg.solve(grid.affine_array, [-25, -20, -12, 1])[:3]).astype(int)
    heat[tuple(ijk)] = 1.0
    sums = reducer.transform(heat)
    top = reducer.regions_.iloc[int(np.argmax(sums))]
    assert top["hemisphere"] == "left" and top["region"].startswith("Left_")


def test_region_sums_match_a_slow_loop():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 6, size=(7, 8, 9))
    maps = rng.standard_normal((4, 7, 8, 9))
    fast = region_sums(maps, codes, 5)
    slow = np.array([[m[codes == k].sum() for k in range(1, 6)] for m in maps])
    np.testing.assert_allclose(fast, slow)
    means = region_means(maps, codes, 5)
    np.testing.assert_allclose(means, [[m[codes == k].mean() for k in range(1, 6)]
                                       for m in maps])
    import torch

    torch_sums = region_sums(torch.from_numpy(maps), torch.from_numpy(codes), 5)
    np.testing.assert_allclose(torch_sums.numpy(), slow)


def test_area_level_merges_hemispheres():
    grid = Grid.from_resolution(4)
    labels = RegionReducer(level="label").fit(grid)
    areas = RegionReducer(level="area").fit(grid)
    maps = np.random.default_rng(1).random((2, *grid.shape))
    by_label = pd.DataFrame(labels.transform(maps).T, index=labels.regions_["area"])
    by_area = by_label.groupby(level=0, sort=False).sum()
    merged = pd.DataFrame(areas.transform(maps).T, index=areas.regions_["region"])
    np.testing.assert_allclose(by_area.loc[merged.index].to_numpy(), merged.to_numpy())


def _write_user_atlas(tmp_path, data, affine, names):
    path = tmp_path / "mine.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.int16), affine), str(path))
    pd.DataFrame({"index": range(1, len(names) + 1), "name": names}).to_csv(
        tmp_path / "mine.tsv", sep="\t", index=False)
    return path


def test_user_atlas(tmp_path):
    grid = Grid.from_resolution(6)
    data = np.zeros(grid.shape)
    data[:16] = 2  # x < 0: left half
    data[17:] = 1
    path = _write_user_atlas(tmp_path, data, grid.affine_array, ["Right_Half", "Left_Half"])
    reducer = RegionReducer(str(path)).fit(grid)
    assert list(reducer.regions_["hemisphere"]) == ["right", "left"]
    assert reducer.regions_["n_voxels"].sum() == (data > 0).sum()


def test_user_atlas_with_all_labels_lost(tmp_path):
    grid = Grid.from_resolution(6)
    far = np.diag([1.0, 1.0, 1.0, 1.0])
    far[:3, 3] = 500  # far outside the template's field of view
    path = _write_user_atlas(tmp_path, np.ones((5, 6, 7)), far, ["Nowhere"])
    with pytest.raises(BrainLRPError, match="no label of the atlas mine"):
        RegionReducer(str(path)).fit(grid)


def test_lost_labels_warn():
    with pytest.warns(UserWarning, match="vanish"):
        RegionReducer().fit(Grid.from_resolution(7))


def test_unknown_atlas():
    with pytest.raises(BrainLRPError, match="unknown atlas"):
        load_atlas("nope")
