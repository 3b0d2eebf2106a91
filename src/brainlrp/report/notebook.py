"""An interactive view of one scan's heatmap in Jupyter, through ipyniivue.

The same volumes, colour maps and atlas label layer as the report's NiiVue viewers
(:mod:`brainlrp.report.niivue`), handed to the ``ipyniivue`` widget. ipyniivue is an
optional extra (``pip install 'brainlrp[viewer]'``), imported only when a view is made.
"""

from __future__ import annotations

import os

import numpy as np

from brainlrp.errors import BrainLRPError

#: Display threshold, as a fraction of the colour-scale maximum.
THRESHOLD_FRACTION = 0.2
#: NiiVue's shader draws colormapType 2 as "0 to max, transparent below the threshold"
#: (ipyniivue's enum names 1 and 2 the other way round).
COLORMAP_TYPE_TRANSPARENT_BELOW_MIN = 2


def _ipyniivue():
    try:
        import ipyniivue
    except ImportError as exc:
        raise BrainLRPError("brainlrp.report.view needs the ipyniivue package",
                            "pip install 'brainlrp[viewer]' (or pip install ipyniivue)") from exc
    return ipyniivue


def view(run: str | os.PathLike, scan_id: str, method: str | None = None,
         threshold_fraction: float = THRESHOLD_FRACTION, height: int = 400):
    """An ipyniivue widget: the scan, its heatmap and the atlas under the crosshair.

    Parameters
    ----------
    run : path-like
        Run directory after ``brainlrp analyze``.
    scan_id : str
        A test scan of the run.
    method : str, optional
        Explanation method (default: the report's main method, LRP with the lowest beta).
    threshold_fraction : float
        |values| below this fraction of the colour-scale maximum are transparent.
    height : int
        Widget height in pixels.

    Returns
    -------
    ipyniivue.NiiVue
        Displayed when it is the last expression of a cell. Volumes: 0 the scan (or the
        template when the scan cannot be read), 1 the heatmap, 2 the atlas labels (shown
        by name under the crosshair; raise its opacity to see the areas).

    Raises
    ------
    BrainLRPError
        When ipyniivue is missing (with the pip command), the method was not analysed
        or the scan has no heatmap.
    """
    ipyniivue = _ipyniivue()
    if not 0 <= threshold_fraction < 1:
        raise BrainLRPError(f"threshold_fraction must be in [0, 1), got {threshold_fraction}")
    from brainlrp.report import sections as sec
    from brainlrp.report.figures import robust_max
    from brainlrp.report.inputs import load_run
    from brainlrp.report.niivue import (
        ViewerStore,
        _atlas,
        colour_table,
        label_table,
        quantise_background,
        quantise_overlay,
    )
    from brainlrp.report.stage import _default_inputs, choose_methods

    data = load_run(run)
    if method is None:
        method = choose_methods(data.methods)[0]
    if method not in data.methods:
        raise BrainLRPError(f"method {method!r} was not analysed in {run}",
                            f"choose one of {', '.join(data.methods)}")
    heat = data.heatmap(method, str(scan_id))
    if heat is None:
        raise BrainLRPError(f"scan {scan_id!r} has no {method} heatmap in {run}",
                            "pick a test scan listed in the run's predictions.tsv")
    ctx = sec.Context(data=data, main=method, compare=None, inputs_fn=_default_inputs(data))
    (background,), reason = ctx.scans([str(scan_id)])
    store = ViewerStore(ctx.affine, ctx.mask())
    signed = data.mode(method) == "signed"
    q, slope = quantise_overlay(heat, store.mask)
    vmax = robust_max(heat)
    nv = ipyniivue.NiiVue(height=height)
    nv.add_colormap("brainlrp_hot", colour_table("hot"))
    nv.add_colormap("brainlrp_pos", colour_table("cold_hot", "upper"))
    nv.add_colormap("brainlrp_neg", colour_table("cold_hot", "lower"))
    volumes = [
        {"data": store.encode(quantise_background(background, store.mask)),
         "name": ("template" if reason else str(scan_id)) + ".nii.gz", "colormap": "gray",
         "cal_min": 0.0, "cal_max": 255.0},
        {"data": store.encode(q, slope), "name": f"{method}.nii.gz",
         "colormap": "brainlrp_pos" if signed else "brainlrp_hot",
         "colormap_negative": "brainlrp_neg" if signed else "",
         "cal_min": threshold_fraction * vmax, "cal_max": vmax, "opacity": 0.9,
         "colormap_type": ipyniivue.ColormapType(COLORMAP_TYPE_TRANSPARENT_BELOW_MIN)},
    ]
    codes, names = _atlas(ctx)
    if codes is not None:
        from brainlrp.report.niivue import NIFTI_INTENT_LABEL

        dtype = np.uint8 if len(names) < 256 else np.uint16
        volumes.append({"data": store.encode(codes.astype(dtype), intent=NIFTI_INTENT_LABEL),
                        "name": "atlas.nii.gz", "opacity": 0.0})
    nv.load_volumes(volumes)
    if codes is not None:
        nv.volumes[2].set_colormap_label(label_table(names))
    return nv
