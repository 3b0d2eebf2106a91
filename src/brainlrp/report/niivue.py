"""NiiVue in the report: volumes as embedded NIfTI, viewers as small specs.

The page inlines NiiVue's browser bundle (``vendor/niivue.umd.js``, version and sha256
in ``vendor/niivue.json``, BSD-2-Clause licence in ``vendor/LICENSE.niivue``) and
``niivue_viewer.js``, which starts one NiiVue per ``.brainlrp-niivue`` element when it
comes near the screen. Every volume is a gzipped NIfTI-1 file, base64-encoded in an
inert ``<script type="application/octet-stream">`` block, with the model grid's affine
cropped to the brain's bounding box: NiiVue reads the affine, so the crosshair's
coordinates are MNI millimetres and the subject's left is where NIfTI says it is.
Volumes several viewers share (the template, the atlas) are embedded once per page.

Encodings (chosen for page size; at 2 mm one overlay costs about 150-250 kB):

background
    ``uint8``, 0-255 over the 99.5th percentile of the brain's voxels.
overlay
    ``int8`` with ``scl_slope`` = max |value| / 127: NiiVue shows values in the map's
    unit, to 1/127 of its largest magnitude; outside the brain mask it is 0.
labels
    atlas codes (``uint8`` or ``uint16``, ``intent_code`` NIFTI_INTENT_LABEL) and a
    colour table with the area names, so NiiVue names the area under the crosshair.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import matplotlib as mpl
import numpy as np
from scipy.ndimage import gaussian_filter

from brainlrp.errors import BrainLRPError

#: Voxels of margin kept around the brain mask's bounding box.
CROP_MARGIN = 2
#: NIfTI intent code of a label volume.
NIFTI_INTENT_LABEL = 1002


def _vendor(name: str):
    return resources.files("brainlrp.report").joinpath("vendor").joinpath(name)


def bundle_info() -> dict:
    """What ``vendor/niivue.json`` records: package, version, file, sha256, licence."""
    return json.loads(_vendor("niivue.json").read_text())


@lru_cache(maxsize=1)
def niivue_bundle() -> str:
    """NiiVue's browser bundle, checked against the recorded sha256.

    Raises
    ------
    BrainLRPError
        When the vendored file does not match its record.
    """
    info = bundle_info()
    raw = _vendor("niivue.umd.js").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != info["sha256"]:
        raise BrainLRPError(f"vendor/niivue.umd.js has sha256 {digest}, expected "
                            f"{info['sha256']} (NiiVue {info['version']})",
                            "reinstall brainlrp or run scripts/vendor_niivue.py")
    return raw.decode("utf-8")


def viewer_script() -> str:
    """The JavaScript that builds the viewers from their specs (inlined once)."""
    return resources.files("brainlrp.report").joinpath("niivue_viewer.js").read_text()


def page_scripts() -> list[str]:
    """Scripts a page with viewers inlines, in order: NiiVue, then the viewer code."""
    info = bundle_info()
    banner = (f"/* NiiVue {info['version']} ({info['package']}, {info['file']}), "
              f"{info['license']}: see brainlrp/report/vendor/LICENSE.niivue */\n")
    return [banner + niivue_bundle(), viewer_script()]


# ============================================================================ volumes


def nifti_gz(data: np.ndarray, affine: np.ndarray, slope: float = 1.0,
             intent: int = 0) -> bytes:
    """A gzipped NIfTI-1 file of ``data`` (stored as is) with ``affine`` as its sform.

    Parameters
    ----------
    data : numpy.ndarray
        3D; its dtype is the file's (uint8, int8, uint16, int16 or float32).
    affine : numpy.ndarray
        4 x 4 voxel-to-mm matrix.
    slope : float
        ``scl_slope``: stored value times ``slope`` is the true value.
    intent : int
        NIfTI intent code (1002 for labels).

    Returns
    -------
    bytes
    """
    import nibabel as nib

    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"a viewer volume must be 3D, got shape {data.shape}")
    affine = np.asarray(affine, float)
    if affine.shape != (4, 4):
        raise ValueError(f"an affine must be 4 x 4, got {affine.shape}")
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_slope_inter(slope, 0.0)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine, code=4)  # 4 = MNI152
    img.set_qform(affine, code=4)
    if intent:
        img.header.set_intent(intent)
    # mtime=0: the same volume gives the same bytes (and the same key) every time.
    return gzip.compress(img.to_bytes(), compresslevel=9, mtime=0)


def quantise_background(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A scan as uint8: 0-255 over the 99.5th percentile of its positive brain voxels."""
    data = np.asarray(data, np.float32)
    inside = data[np.asarray(mask, bool) & (data > 0)]
    top = float(np.percentile(inside, 99.5)) if inside.size else float(np.max(data, initial=0))
    top = top if top > 0 else 1.0
    return np.clip(data / top * 255, 0, 255).round().astype(np.uint8)


def quantise_overlay(data: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """A map as int8 inside ``mask`` (0 outside) and its ``scl_slope``.

    Returns
    -------
    (numpy.ndarray of int8, float)
        ``q * slope`` approximates the map to ``slope / 2``.
    """
    values = np.where(np.asarray(mask, bool), np.nan_to_num(np.asarray(data, np.float32)), 0)
    scale = float(np.max(np.abs(values), initial=0.0))
    slope = scale / 127 if scale > 0 else 1.0
    return np.clip(np.round(values / slope), -127, 127).astype(np.int8), slope


def colour_table(cmap_name: str, part: str = "all", n: int = 256) -> dict:
    """A matplotlib (or nilearn) colour map as NiiVue's ``{R, G, B, A, I}`` table.

    Parameters
    ----------
    cmap_name : str
    part : {"all", "upper", "lower"}
        ``upper`` (0.5 to 1) and ``lower`` (0.5 down to 0) split a diverging map into
        the positive and negative tables NiiVue uses, each starting at 0.
    n : int
        Entries.
    """
    import nilearn.plotting.cm  # noqa: F401  (registers nilearn's colour maps)

    stops = {"all": np.linspace(0, 1, n), "upper": np.linspace(0.5, 1, n),
             "lower": np.linspace(0.5, 0, n)}[part]
    rgb = (mpl.colormaps[cmap_name](stops)[:, :3] * 255).round().astype(int)
    # Entry 0 (a value of exactly 0) is transparent; values between 0 and the threshold
    # are hidden by the viewer, the rest are opaque.
    return {"R": rgb[:, 0].tolist(), "G": rgb[:, 1].tolist(), "B": rgb[:, 2].tolist(),
            "A": [0] + [255] * (n - 1), "I": np.linspace(0, 255, n).round().astype(int).tolist()}


def label_table(names: Sequence[str], seed: int = 0) -> dict:
    """NiiVue's label colour table: code 0 transparent, code k named ``names[k - 1]``."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(40, 256, size=(len(names) + 1, 3))
    alpha = [0] + [255] * len(names)
    return {"R": rgb[:, 0].tolist(), "G": rgb[:, 1].tolist(), "B": rgb[:, 2].tolist(),
            "A": alpha, "I": list(range(len(names) + 1)), "labels": ["", *names]}


@dataclass
class Overlay:
    """One map a viewer can show over its background.

    Attributes
    ----------
    name : str
        Shown in the map menu, e.g. ``LRP β=0``.
    data : numpy.ndarray
        3D map on the model grid.
    unit : str
    signed : bool
        Diverging colour map, symmetric around 0, when true.
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


@dataclass
class ViewerStore:
    """The embedded volumes of one page's viewers, cropped to the brain's bounding box.

    Parameters
    ----------
    affine : numpy.ndarray
        The model grid's affine.
    mask : numpy.ndarray of bool
        The template brain mask on the model grid.

    Attributes
    ----------
    blocks : dict
        Volume key -> base64 of its gzipped NIfTI, in order of addition.
    emitted : set of str
        Keys already written into the page.
    """

    affine: np.ndarray
    mask: np.ndarray
    blocks: dict[str, str] = field(default_factory=dict)
    emitted: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.mask = np.asarray(self.mask, bool)
        self.affine = np.asarray(self.affine, float)
        where = np.argwhere(self.mask)
        if where.size == 0:
            lo, hi = np.zeros(3, int), np.array(self.mask.shape)
        else:
            lo = np.maximum(where.min(axis=0) - CROP_MARGIN, 0)
            hi = np.minimum(where.max(axis=0) + 1 + CROP_MARGIN, self.mask.shape)
        self.box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        self.crop_affine = self.affine.copy()
        self.crop_affine[:3, 3] = self.affine[:3, :3] @ lo + self.affine[:3, 3]

    def encode(self, data: np.ndarray, slope: float = 1.0, intent: int = 0) -> bytes:
        """A grid volume, cropped to the brain, as a gzipped NIfTI (see :func:`nifti_gz`)."""
        if data.shape != self.mask.shape:
            raise ValueError(f"a viewer volume has shape {data.shape}, the grid "
                             f"{self.mask.shape}")
        return nifti_gz(np.ascontiguousarray(data[self.box]), self.crop_affine, slope, intent)

    def _add(self, data: np.ndarray, slope: float = 1.0, intent: int = 0) -> str:
        raw = self.encode(data, slope, intent)
        key = hashlib.sha1(raw).hexdigest()[:16]
        if key not in self.blocks:
            self.blocks[key] = base64.b64encode(raw).decode("ascii")
        return key

    def background(self, data: np.ndarray) -> str:
        """Embed a scan or the template; returns its key."""
        return self._add(quantise_background(data, self.mask))

    def overlay(self, data: np.ndarray) -> tuple[str, float]:
        """Embed a map; returns its key and the map's largest magnitude (in the mask)."""
        q, slope = quantise_overlay(data, self.mask)
        return self._add(q, slope), float(np.abs(q).max(initial=0)) * slope

    def labels(self, codes: np.ndarray, n_labels: int) -> str:
        """Embed atlas codes (0 = none, 1..n_labels); returns the key."""
        dtype = np.uint8 if n_labels < 256 else np.uint16
        return self._add(np.asarray(codes).astype(dtype), intent=NIFTI_INTENT_LABEL)

    def take(self, keys: Sequence[str]) -> str:
        """HTML blocks of the ``keys`` not yet written into the page (then marked written)."""
        out = []
        for key in dict.fromkeys(keys):
            if key and key not in self.emitted:
                out.append(f'<script type="application/octet-stream" '
                           f'data-niivue-volume="{key}">{self.blocks[key]}</script>')
                self.emitted.add(key)
        return "".join(out)

    def peak_mm(self, data: np.ndarray) -> list[float]:
        """MNI mm of a map's peak magnitude, lightly smoothed (a region, not one voxel)."""
        smooth = gaussian_filter(np.abs(np.nan_to_num(np.asarray(data, np.float32)))
                                 * self.mask, 1.0)
        ijk = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
        return [round(float(v), 1) for v in self.affine[:3, :3] @ ijk + self.affine[:3, 3]]


def viewer_html(store: ViewerStore, element_id: str, background: np.ndarray,
                overlays: Sequence[Overlay], labels: np.ndarray | None = None,
                label_names: Sequence[str] | None = None, background_name: str = "scan",
                start_mm: Sequence[float] | None = None) -> str:
    """One NiiVue viewer: a map menu, threshold, crosshair MNI coordinates and area name.

    Parameters
    ----------
    store : ViewerStore
        The page's volumes (shared volumes are embedded once).
    element_id : str
        ``id`` of the viewer element; the readouts are ``<id>-coords``, ``<id>-value``
        and ``<id>-region``.
    background : numpy.ndarray
        The scan (or the template) on the model grid.
    overlays : sequence of Overlay
        The maps, the first shown at start.
    labels : numpy.ndarray of int, optional
        Atlas code per voxel (0 none, 1..n).
    label_names : sequence of str, optional
        Name of each code 1..n.
    background_name : str
        What the background is (``scan`` or ``template``), for the caption.
    start_mm : sequence of float, optional
        Crosshair at start (default: the first overlay's peak).

    Returns
    -------
    str
    """
    bg_key = store.background(background)
    specs = []
    for ov in overlays:
        key, top = store.overlay(ov.data)
        vmax = float(ov.vmax) if ov.vmax and ov.vmax > 0 else (top or 1.0)
        specs.append({"name": ov.name, "unit": ov.unit, "signed": bool(ov.signed),
                      "vmax": vmax, "max": top, "volume": key,
                      "threshold_fraction": float(ov.threshold_fraction),
                      "peak": store.peak_mm(ov.data)})
    spec: dict = {"background": bg_key, "background_name": background_name,
                  "overlays": specs,
                  "colormaps": {"brainlrp_hot": colour_table("hot"),
                                "brainlrp_pos": colour_table("cold_hot", "upper"),
                                "brainlrp_neg": colour_table("cold_hot", "lower")}}
    keys = [bg_key, *(s["volume"] for s in specs)]
    if labels is not None and label_names:
        spec["labels"] = store.labels(labels, len(label_names))
        spec["label_table"] = label_table(label_names)
        keys.append(spec["labels"])
    if start_mm is not None:
        spec["start"] = [float(v) for v in start_mm]
    elif specs:
        spec["start"] = specs[0]["peak"]
    data = json.dumps(spec, separators=(",", ":")).replace("</", "<\\/")
    eid = html.escape(element_id)
    options = "".join(f'<option value="{i}">{html.escape(s["name"])}</option>'
                      for i, s in enumerate(specs))
    return f"""
<div class="brainlrp-niivue" id="{eid}">
  <div class="viewer-controls">
    <label>map <select class="viewer-map" aria-label="map shown">{options}</select></label>
    <label>threshold <input type="range" class="viewer-threshold" min="0" max="95" step="1"
      aria-label="display threshold, percent of the colour-scale maximum">
      <span class="viewer-threshold-value"></span></label>
    <label><input type="checkbox" class="viewer-atlas"> atlas</label>
    <button type="button" class="viewer-peak">go to peak</button>
    <span class="viewer-goto">MNI <input type="number" class="viewer-mm" data-axis="0"
      aria-label="MNI x (mm)" step="1"><input type="number" class="viewer-mm" data-axis="1"
      aria-label="MNI y (mm)" step="1"><input type="number" class="viewer-mm" data-axis="2"
      aria-label="MNI z (mm)" step="1"><button type="button" class="viewer-go">go</button>
    </span>
  </div>
  <div class="viewer-canvas-wrap"><canvas class="viewer-canvas" height="360"
    aria-label="NiiVue: sagittal, coronal and axial slices"></canvas></div>
  <div class="viewer-readout">
    <output class="viewer-coords" id="{eid}-coords"></output>
    <output class="viewer-value" id="{eid}-value"></output>
    <output class="viewer-region" id="{eid}-region"></output>
  </div>
  <p class="viewer-scale"></p>
  <p class="viewer-error"></p>
  <script type="application/json" class="niivue-spec">{data}</script>
  {store.take(keys)}
</div>"""


# ====================================================================== report viewers

_STORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def page_store(ctx) -> ViewerStore:
    """The :class:`ViewerStore` of the page a report :class:`~.sections.Context` builds."""
    store = _STORES.get(ctx)
    if store is None:
        store = _STORES[ctx] = ViewerStore(ctx.affine, ctx.mask())
    return store


def has_viewers(ctx) -> bool:
    """Whether any viewer was built for ``ctx``'s page (NiiVue is then inlined)."""
    store = _STORES.get(ctx)
    return bool(store and store.emitted)


def _atlas(ctx) -> tuple[np.ndarray | None, list[str] | None]:
    atlas = ctx.atlas()
    if atlas is None:
        return None, None
    return atlas.codes, [str(n) for n in atlas.labels["region"]]


def example_viewer(ctx, element_id: str, scan_id: str, background: np.ndarray,
                   vmax: dict[str, float], start_mm: Sequence[float] | None = None,
                   background_name: str = "scan") -> str:
    """A viewer of one test scan: its scan beneath the heatmap of every method.

    Parameters
    ----------
    ctx : Context
    element_id : str
    scan_id : str
    background : numpy.ndarray
        The subject's scan (or the template) on the model grid.
    vmax : dict of str -> float
        Colour-scale maximum per method where the page fixes it (LRP: one scale for
        all examples); other methods use their map's 99.5th percentile.
    start_mm : sequence of float, optional
        Crosshair at start (default: the first map's peak).
    background_name : str

    Returns
    -------
    str
        Empty when the scan has no heatmap.
    """
    from brainlrp.report import style
    from brainlrp.report.figures import robust_max
    from brainlrp.report.sections.context import method_unit

    data = ctx.data
    order = [ctx.main] + [m for m in data.methods if m != ctx.main]
    overlays = []
    for m in order:
        heat = data.heatmap(m, scan_id)
        if heat is not None:
            overlays.append(Overlay(style.method_label(m), heat, method_unit(data, m),
                                    data.mode(m) == "signed", vmax.get(m) or robust_max(heat)))
    if not overlays:
        return ""
    codes, names = _atlas(ctx)
    return viewer_html(page_store(ctx), element_id, background, overlays, codes, names,
                       background_name, start_mm)


def group_viewer(ctx, element_id: str, overlays: Sequence[Overlay]) -> str:
    """A viewer of group mean maps over the template.

    Parameters
    ----------
    ctx : Context
    element_id : str
    overlays : sequence of Overlay

    Returns
    -------
    str
        Empty without maps.
    """
    if not overlays:
        return ""
    codes, names = _atlas(ctx)
    return viewer_html(page_store(ctx), element_id, ctx.template(), overlays, codes, names,
                       "template")
