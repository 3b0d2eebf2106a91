"""NiiVue viewers: the vendored bundle, the embedded volumes (affine: left stays left),
the page staying one offline file, and the notebook view's missing-extra error."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import sys

import nibabel as nib
import numpy as np
import pytest

from brainlrp.errors import BrainLRPError
from brainlrp.report.html import Safe, Section, page
from brainlrp.report.niivue import (
    NIFTI_INTENT_LABEL,
    Overlay,
    ViewerStore,
    bundle_info,
    colour_table,
    label_table,
    niivue_bundle,
    page_scripts,
    viewer_html,
)

SHAPE = (7, 8, 9)  # distinct axis lengths: a swapped axis fails loudly


def _affine() -> np.ndarray:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-6.0, -8.0, -10.0]  # voxel x=3 is MNI x=0
    return affine


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[2:6, 3:7, 3:8] = True
    return mask


def _volume(html: str, key: str) -> nib.Nifti1Image:
    block = re.search(rf'data-niivue-volume="{key}">([^<]*)</script>', html).group(1)
    raw = gzip.decompress(base64.b64decode(block))
    return nib.Nifti1Image.from_bytes(raw)


def _spec(html: str) -> dict:
    import json

    return json.loads(re.search(r'class="niivue-spec">(.*?)</script>', html, re.S).group(1))


def test_bundle_is_the_recorded_niivue():
    info = bundle_info()
    assert info["package"] == "@niivue/niivue" and info["license"] == "BSD-2-Clause"
    text = niivue_bundle()
    assert hashlib.sha256(text.encode()).hexdigest() == info["sha256"]
    assert text.startswith("(function(") and "globalThis" in text[:400]  # UMD: window.niivue
    assert "</script" not in text.lower() and "import(" not in text
    scripts = page_scripts()
    assert f"NiiVue {info['version']}" in scripts[0] and "LICENSE.niivue" in scripts[0]
    assert "brainlrp-niivue" in scripts[1] and "fetch(" not in scripts[1]


def test_volumes_keep_the_affine_left_stays_left():
    affine, mask = _affine(), _mask()
    heat = np.zeros(SHAPE, np.float32)
    heat[2, 4, 5] = 3.0  # MNI x = -2: left hemisphere
    heat[5, 4, 5] = -1.5  # MNI x = +4: right
    store = ViewerStore(affine, mask)
    html = viewer_html(store, "v", np.ones(SHAPE), [Overlay("m", heat, "a.u.", True, 3.0)])
    spec = _spec(html)
    img = _volume(html, spec["overlays"][0]["volume"])
    assert img.get_data_dtype() == np.int8
    assert img.dataobj.slope == pytest.approx(3.0 / 127)
    values = np.asarray(img.dataobj, float)  # nibabel applies scl_slope, as NiiVue does
    np.testing.assert_array_equal(img.header.get_sform(), store.crop_affine)
    assert img.header["sform_code"] == 4
    # Every voxel of the stored volume sits at the same MNI point as on the grid.
    for ijk in np.argwhere(values != 0):
        mm = img.affine @ [*ijk, 1]
        grid_ijk = np.linalg.solve(affine, mm).round().astype(int)[:3]
        np.testing.assert_allclose(values[tuple(ijk)], heat[tuple(grid_ijk)], atol=3 / 254)
    left = np.argwhere(values > 0)
    assert len(left) == 1 and (img.affine @ [*left[0], 1])[0] == -2.0
    right = np.argwhere(values < 0)
    assert (img.affine @ [*right[0], 1])[0] == 4.0
    # The crop keeps the mask's bounding box plus a margin, within the grid.
    assert img.shape == tuple(s.stop - s.start for s in store.box)
    assert spec["overlays"][0]["peak"][0] == -2.0 and spec["start"] == [-2.0, 0.0, 0.0]
    assert spec["overlays"][0]["max"] == pytest.approx(3.0)


def test_background_and_labels_encoding():
    store = ViewerStore(_affine(), _mask())
    rng = np.random.default_rng(0)
    bg = rng.random(SHAPE).astype(np.float32) * 1000
    codes = np.zeros(SHAPE, np.int32)
    codes[2:4] = 1
    codes[4:6] = 2
    html = viewer_html(store, "v", bg, [Overlay("m", bg, "a.u.", False, 1.0)],
                       codes, ["Left_Thing", "Right_Thing"])
    spec = _spec(html)
    labels = _volume(html, spec["labels"])
    assert labels.get_data_dtype() == np.uint8
    assert labels.header["intent_code"] == NIFTI_INTENT_LABEL
    np.testing.assert_array_equal(np.asarray(labels.dataobj), codes[store.box])
    assert spec["label_table"]["labels"] == ["", "Left_Thing", "Right_Thing"]
    background = np.asarray(_volume(html, spec["background"]).dataobj)
    assert background.dtype == np.uint8 and background.max() == 255


def test_shared_volumes_are_embedded_once():
    store = ViewerStore(_affine(), _mask())
    template = np.ones(SHAPE)
    codes = np.ones(SHAPE, np.int32)
    heat = np.ones(SHAPE, np.float32)
    first = viewer_html(store, "a", template, [Overlay("m", heat, "u", False, 1)], codes, ["x"])
    second = viewer_html(store, "b", template, [Overlay("m", 2 * heat, "u", False, 1)],
                         codes, ["x"])
    spec = _spec(second)
    assert spec["background"] in first and f'"{spec["background"]}">' not in second
    assert f'data-niivue-volume="{spec["labels"]}"' not in second
    assert f'data-niivue-volume="{spec["overlays"][0]["volume"]}"' in second


def test_page_with_viewer_is_one_offline_file():
    store = ViewerStore(_affine(), _mask())
    html = viewer_html(store, "v", np.ones(SHAPE), [Overlay("m", np.ones(SHAPE), "u", False, 1)])
    text = page("t", "s", [Section("x", "X").add(Safe(html))], scripts=page_scripts())
    assert "default-src 'none'" in text
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', text)
    assert "<link" not in text and "@import" not in text
    assert text.count("<script>") == 2  # NiiVue, then the viewer code


def test_colour_tables():
    hot = colour_table("hot")
    assert len(hot["R"]) == len(hot["A"]) == len(hot["I"]) == 256
    assert hot["A"][0] == 0 and min(hot["A"][1:]) == 255 and hot["I"][-1] == 255
    pos, neg = colour_table("cold_hot", "upper"), colour_table("cold_hot", "lower")
    assert pos["R"][128] > pos["B"][128] and neg["B"][128] > neg["R"][128]  # red up, blue down
    lut = label_table(["a", "b"])
    assert lut["A"][0] == 0 and lut["I"] == [0, 1, 2]


def test_view_without_ipyniivue_names_the_pip_command(monkeypatch, tmp_path):
    from brainlrp.report import view

    monkeypatch.setitem(sys.modules, "ipyniivue", None)  # import fails
    with pytest.raises(BrainLRPError, match=r"pip install 'brainlrp\[viewer\]'"):
        view(tmp_path, "scan-1")
