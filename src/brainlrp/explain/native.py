"""Explaining one scan in native (scanner) space (``brainlrp explain --scan --register``):
the scan is registered the way the model's preprocessing says
(:mod:`brainlrp.data.register` does the registering), and each heatmap goes back onto
the scan's own voxel grid with its relevance sum kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from brainlrp._io import atomic_path
from brainlrp.data.register import RegisteredScan, Registration, flag_outliers, qc_figure


def register_for_model(scan: str | os.PathLike, prep, registration: Registration | None,
                       cache_dir: str | os.PathLike | None = None):
    """Register one scan the way a model's preprocessing says (or with ``registration``
    when the model was trained on MNI-space scans).

    Returns
    -------
    prep : Preprocessing
        The preprocessing with its registration set.
    registered : RegisteredScan
    """
    from dataclasses import replace

    from brainlrp.data.preprocess import PreprocessCache

    if prep.registration is None:
        prep = replace(prep, registration=registration or Registration())
    return prep, PreprocessCache(cache_dir).registration(scan, prep)


#: What a native heatmap's values are (its NIfTI description and prediction.json say so).
NATIVE_VALUES = "relevance per voxel, region sums kept"


def write_native(path: Path, registered: RegisteredScan, scan: str | os.PathLike,
                 data: np.ndarray, description: str = "", relevance: bool = True) -> Path:
    """Write an array on the model grid warped onto ``scan``'s own grid and affine.

    The file has the scan's shape, voxel order and affine (sform and qform code 1,
    scanner anatomy), so it overlays on the scan in any viewer. ``relevance`` (a
    heatmap): its sum is kept (:meth:`RegisteredScan.relevance_to_native`); otherwise
    the values are interpolated like an image's.
    """
    import nibabel as nib

    header = nib.load(str(scan))
    shape, affine = header.shape[:3], np.asarray(header.affine, float)
    warp = registered.relevance_to_native if relevance else registered.to_native
    native = warp(np.asarray(data, np.float32), shape, affine)
    img = nib.Nifti1Image(native, affine)
    img.header.set_xyzt_units("mm")
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    if relevance:  # the file says which: relevance sums, not an image's values
        description = f"{description}; {NATIVE_VALUES}" if description else NATIVE_VALUES
    if description:
        img.header["descrip"] = description[:79].encode()
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return Path(path)


def registration_summary(registered: RegisteredScan) -> dict:
    """What prediction.json records about a scan's registration (with a QC verdict)."""
    reason = flag_outliers([registered.correlation])[0]
    return {"method": registered.record["method"], "correlation": registered.correlation,
            "flagged": bool(reason), "reason": reason,
            "forward": [str(p) for p in registered.forward],
            "inverse": [[str(p), flag] for p, flag in registered.inverse]}


#: ``qc_figure`` (the registration check, ``OUT/registration.png``) is the registration
#: QC's own figure; it is listed here with the other steps of explaining a native scan.
__all__ = ["NATIVE_VALUES", "qc_figure", "register_for_model", "registration_summary",
           "write_native"]
