"""The offline slice viewer: data packing in Python, drawing in plain JavaScript.

The page embeds, as base64 inside a ``<script type="application/json">`` block,
the brain-mask bounding box of the template (a bit-packed mask), the template and
the atlas labels as one byte per brain voxel, and each overlay (mean heatmaps)
quantised to one byte per brain voxel. ``viewer.js`` (shipped with the package,
inlined into the page) draws three orthogonal slices on canvases with sliders,
click-to-navigate, the MNI coordinate, the value and the atlas label under the
cursor. Nothing is fetched: the page works from a file, offline.

At 2 mm a brain holds about 236 000 voxels, so each overlay costs about 310 kB
of page; grids finer than 2 mm are averaged down to about 2 mm for the viewer.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from importlib import resources

import matplotlib as mpl
import numpy as np
from scipy.ndimage import gaussian_filter

#: Voxel size (mm) the viewer data are reduced to when the grid is finer.
VIEWER_RESOLUTION = 2.0


@dataclass
class Layer:
    """One overlay of the viewer.

    Attributes
    ----------
    name : str
        Shown in the selector, e.g. ``LRP β=0 · AD mean (n=30)``.
    data : numpy.ndarray
        3D map on the model grid.
    unit : str
    signed : bool
        Diverging colour map around 0 when true.
    vmax : float
        Top of the colour scale.
    threshold_fraction : float
        Initial display threshold as a fraction of ``vmax``.
    """

    name: str
    data: np.ndarray
    unit: str
    signed: bool
    vmax: float
    threshold_fraction: float = 0.2


def _b64(array: np.ndarray) -> dict:
    a = np.ascontiguousarray(array)
    dtype = {np.dtype(np.uint8): "u1", np.dtype(np.uint16): "u2"}[a.dtype]
    return {"dtype": dtype, "b64": base64.b64encode(a.astype(a.dtype.newbyteorder("<"))
                                                   .tobytes()).decode("ascii")}


def _lut(cmap_name: str) -> dict:
    import nilearn.plotting.cm  # noqa: F401  (registers nilearn's colour maps)

    cmap = mpl.colormaps[cmap_name]
    rgb = (cmap(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return _b64(rgb.reshape(-1))


def _reduce(data: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
    """Block-reduce a volume by an integer ``factor`` (mean, or first voxel of each block)."""
    if factor == 1:
        return data
    shape = tuple(s // factor for s in data.shape)
    cropped = data[: shape[0] * factor, : shape[1] * factor, : shape[2] * factor]
    if how == "first":
        return cropped[::factor, ::factor, ::factor]
    blocks = cropped.reshape(shape[0], factor, shape[1], factor, shape[2], factor)
    return blocks.mean(axis=(1, 3, 5))


def viewer_payload(background: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                   layers: list[Layer], labels: np.ndarray | None = None,
                   label_names: list[str] | None = None, zoom: float | None = None) -> dict:
    """Pack the viewer's data (JSON-ready).

    Parameters
    ----------
    background : numpy.ndarray
        Template on the model grid.
    mask : numpy.ndarray of bool
        Brain mask on the model grid; only its voxels are stored.
    affine : numpy.ndarray
        Diagonal, RAS+ affine of the model grid.
    layers : list of Layer
    labels : numpy.ndarray of int, optional
        Atlas label code per voxel (0 = none, 1..n).
    label_names : list of str, optional
        Name of each code 1..n.
    zoom : float, optional
        Screen pixels per voxel (default: the three views fill about 1100 px).

    Returns
    -------
    dict
    """
    affine = np.asarray(affine, float)
    step = np.diag(affine)[:3].copy()
    factor = max(1, int(round(VIEWER_RESOLUTION / float(np.min(np.abs(step))))))
    mask = np.asarray(mask, bool)
    if factor > 1:
        mask = _reduce(mask.astype(np.float32), factor) >= 0.5
        background = _reduce(np.asarray(background, np.float32), factor)
        labels = _reduce(labels, factor, "first") if labels is not None else None
        layers = [Layer(lay.name, _reduce(np.asarray(lay.data, np.float32), factor), lay.unit,
                        lay.signed, lay.vmax, lay.threshold_fraction) for lay in layers]
        step = step * factor
    origin = affine[:3, 3] + (factor - 1) / 2 * np.diag(affine)[:3]
    where = np.argwhere(mask)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    m = mask[box]
    origin = origin + lo * step
    bg = np.asarray(background, np.float32)[box][m]
    top = float(np.percentile(bg[bg > 0], 99.5)) if np.any(bg > 0) else 1.0
    bg8 = np.clip(bg / top * 255, 0, 255).round().astype(np.uint8)
    overlays = []
    for lay in layers:
        values = np.asarray(lay.data, np.float32)[box][m]
        scale = float(np.max(np.abs(values))) if values.size else 0.0
        scale = scale if scale > 0 else 1.0
        if lay.signed:
            q = np.clip(np.round(values / scale * 127) + 128, 1, 255).astype(np.uint8)
        else:
            q = np.clip(np.round(np.maximum(values, 0) / scale * 255), 0, 255).astype(np.uint8)
        full = np.zeros(m.shape, np.float32)
        full[m] = np.abs(values)
        # Lightly smoothed, as in the figures: a peak region, not one outlier voxel.
        peak = np.unravel_index(int(np.argmax(gaussian_filter(full, 1.0))), m.shape)
        overlays.append({"name": lay.name, "unit": lay.unit, "signed": bool(lay.signed),
                         "scale": scale, "vmax": float(lay.vmax),
                         "threshold_fraction": float(lay.threshold_fraction),
                         "cmap": "signed" if lay.signed else "positive",
                         "peak": [int(v) for v in peak], "data": _b64(q)})
    if zoom is None:
        # Three views side by side in about 1100 screen pixels.
        zoom = float(np.clip(1080 / (m.shape[1] + 2 * m.shape[0]), 1.0, 8.0))
    payload = {"dims": [int(s) for s in m.shape], "origin": [float(v) for v in origin],
               "step": [float(v) for v in step], "zoom": float(zoom),
               "mask": _b64(np.packbits(m.reshape(-1))), "background": _b64(bg8),
               "luts": {"positive": _lut("hot"), "signed": _lut("cold_hot")},
               "overlays": overlays}
    if labels is not None and label_names:
        codes = np.asarray(labels)[box][m]
        dtype = np.uint8 if len(label_names) < 256 else np.uint16
        payload["labels"] = _b64(codes.astype(dtype))
        payload["label_names"] = list(label_names)
    return payload


def viewer_script() -> str:
    """The viewer's JavaScript (inlined once per page)."""
    return resources.files("brainlrp.report").joinpath("viewer.js").read_text()


def viewer_html(payload: dict, element_id: str = "viewer") -> str:
    """The viewer's HTML: controls, three canvases, colour bar and the embedded data.

    Parameters
    ----------
    payload : dict
        From :func:`viewer_payload`.
    element_id : str

    Returns
    -------
    str
    """
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    eid = html.escape(element_id)
    return f"""
<div class="brainlrp-viewer" id="{eid}">
  <div class="viewer-controls">
    <label>map <select class="viewer-map" aria-label="map shown"></select></label>
    <label>threshold <input type="range" class="viewer-threshold" min="0" max="95" step="1"
      aria-label="display threshold, percent of the colour-scale maximum">
      <span class="viewer-threshold-value"></span></label>
    <button type="button" class="viewer-peak">go to peak</button>
  </div>
  <div class="viewer-views">
    <figure><canvas data-view="sagittal" aria-label="sagittal slice"></canvas>
      <figcaption>x <input type="range" data-axis="x" aria-label="x (sagittal slice)">
      <span class="viewer-x"></span> mm</figcaption></figure>
    <figure><canvas data-view="coronal" aria-label="coronal slice"></canvas>
      <figcaption>y <input type="range" data-axis="y" aria-label="y (coronal slice)">
      <span class="viewer-y"></span> mm</figcaption></figure>
    <figure><canvas data-view="axial" aria-label="axial slice"></canvas>
      <figcaption>z <input type="range" data-axis="z" aria-label="z (axial slice)">
      <span class="viewer-z"></span> mm</figcaption></figure>
  </div>
  <div class="viewer-readout">
    <output class="viewer-coords" id="{eid}-coords"></output>
    <output class="viewer-value" id="{eid}-value"></output>
    <output class="viewer-region" id="{eid}-region"></output>
  </div>
  <div class="viewer-colorbar-row">
    <span class="viewer-cb-min"></span>
    <canvas class="viewer-colorbar" width="320" height="22"></canvas>
    <span class="viewer-cb-max"></span>
    <span class="viewer-unit"></span>
  </div>
  <p class="viewer-error"></p>
  <script type="application/json">{data}</script>
</div>"""
