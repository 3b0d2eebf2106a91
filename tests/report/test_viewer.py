"""The viewer's data packing: what JavaScript decodes must be the volume."""

from __future__ import annotations

import base64
import json

import numpy as np

from brainlrp.report.viewer import Layer, viewer_html, viewer_payload, viewer_script


def _decode(entry):
    raw = base64.b64decode(entry["b64"])
    return np.frombuffer(raw, dtype={"u1": np.uint8, "u2": "<u2"}[entry["dtype"]])


def _volume(payload, values):
    """Rebuild the cropped volume from in-mask values, as viewer.js does."""
    dims = payload["dims"]
    bits = np.unpackbits(_decode(payload["mask"]))[: int(np.prod(dims))].astype(bool)
    out = np.zeros(int(np.prod(dims)), values.dtype)
    out[bits] = values
    return out.reshape(dims), bits.reshape(dims)


def test_payload_round_trip():
    rng = np.random.default_rng(0)
    shape = (7, 8, 9)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-6, -8, -10]
    mask = np.zeros(shape, bool)
    mask[1:6, 2:7, 1:8] = True
    mask[3, 4, 4] = False
    bg = rng.random(shape).astype(np.float32) * mask
    heat = (rng.random(shape).astype(np.float32) - 0.3) * mask
    labels = (np.arange(np.prod(shape)).reshape(shape) % 4).astype(np.int32) * mask
    payload = viewer_payload(bg, mask, affine, [
        Layer("pos", np.maximum(heat, 0), "relevance (a.u.)", False, 0.5),
        Layer("signed", heat, "signed (a.u.)", True, 0.5)], labels, ["a", "b", "c"])
    assert payload["dims"] == [5, 5, 7]
    np.testing.assert_allclose(payload["origin"], [-4, -4, -8])
    assert payload["step"] == [2.0, 2.0, 2.0]
    box = (slice(1, 6), slice(2, 7), slice(1, 8))
    pos = payload["overlays"][0]
    q, m = _volume(payload, _decode(pos["data"]))
    np.testing.assert_array_equal(m, mask[box])
    np.testing.assert_allclose(q / 255 * pos["scale"], np.maximum(heat, 0)[box],
                               atol=pos["scale"] / 255)
    signed = payload["overlays"][1]
    q, _ = _volume(payload, _decode(signed["data"]))
    value = (q.astype(float) - 128) / 127 * signed["scale"]
    np.testing.assert_allclose(value[m], heat[box][m], atol=signed["scale"] / 127)
    codes, _ = _volume(payload, _decode(payload["labels"]))
    np.testing.assert_array_equal(codes, labels[box])
    assert all(0 <= p < d for p, d in zip(pos["peak"], payload["dims"], strict=True))
    lut = _decode(payload["luts"]["positive"])
    assert lut.size == 256 * 3 and tuple(lut[-3:]) == (255, 255, 255)  # hot ends white


def test_fine_grids_are_reduced_to_about_2mm():
    shape = (8, 10, 12)
    affine = np.eye(4)
    mask = np.ones(shape, bool)
    heat = np.zeros(shape, np.float32)
    heat[2:4, 2:4, 2:4] = 1.0
    payload = viewer_payload(np.ones(shape), mask, affine,
                             [Layer("x", heat, "u", False, 1.0)])
    assert payload["dims"] == [4, 5, 6] and payload["step"] == [2.0, 2.0, 2.0]
    np.testing.assert_allclose(payload["origin"], [0.5, 0.5, 0.5])


def test_html_embeds_data_and_script_is_plain():
    payload = viewer_payload(np.ones((4, 4, 4)), np.ones((4, 4, 4), bool), np.eye(4) * 2 +
                             np.diag([0, 0, 0, -1]), [])
    html = viewer_html(payload, "v")
    data = html.split('<script type="application/json">')[1].split("</script>")[0]
    assert json.loads(data)["dims"] == [4, 4, 4]
    assert 'id="v-coords"' in html
    js = viewer_script()
    assert "http" not in js and "import " not in js and "fetch(" not in js
