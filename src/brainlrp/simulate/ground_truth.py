"""The simulation's ground truth: file names (a contract) and readers.

``derivatives/ground_truth/`` of a simulated cohort holds::

    dataset_description.json      BIDS derivative description
    simulation.json               the settings (checked when a run resumes)
    disease_model.json            the disease model used (with resolved labels)
    labels.tsv                    index, name of the atlas labels
    sub-0001_tissue_loss.nii.gz   fraction of tissue lost per voxel (0..1, float32):
                                  the subject without the disease minus with it
    sub-0001_volume_loss.tsv      per atlas label: label, index, volume_before_mm3,
                                  volume_after_mm3, relative_loss, model_loss
    sub-0001_labels.nii.gz        the atlas warped to the subject, after atrophy
    sub-0001_desc-healthy_T1w.nii.gz   AD subjects only: the healthy twin, the same
                                  person, scanner and age rendered without the disease

Volumes are voxel counts of the subject's label map without (``before``) and
with (``after``) the disease, times the voxel volume; ``relative_loss`` is
``1 - after / before`` (negative where a space grows, e.g. the ventricles) and
``model_loss`` the loss the disease model asked for. HC subjects have all-zero
maps and losses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

FOLDER = Path("derivatives") / "ground_truth"
TABLE_COLUMNS = ("label", "index", "volume_before_mm3", "volume_after_mm3", "relative_loss",
                 "model_loss")


def folder(root: str | os.PathLike) -> Path:
    """``ROOT/derivatives/ground_truth``."""
    return Path(root) / FOLDER


def config_path(root: str | os.PathLike) -> Path:
    """The simulation settings record."""
    return folder(root) / "simulation.json"


def subject_paths(root: str | os.PathLike, participant_id: str) -> dict[str, Path]:
    """Every file of one subject: ``t1``, ``sidecar``, ``tissue_loss``, ``volume_loss``,
    ``labels`` (the names analysis/groundtruth.py reads)."""
    root = Path(root)
    anat = root / participant_id / "anat"
    gt = folder(root)
    return {"t1": anat / f"{participant_id}_T1w.nii.gz",
            "tissue_loss": gt / f"{participant_id}_tissue_loss.nii.gz",
            "volume_loss": gt / f"{participant_id}_volume_loss.tsv",
            "labels": gt / f"{participant_id}_labels.nii.gz",
            "sidecar": anat / f"{participant_id}_T1w.json"}


def healthy_twin_path(root: str | os.PathLike, participant_id: str) -> Path:
    """The healthy twin's T1 of an AD subject (same person and scan, no disease)."""
    return folder(root) / f"{participant_id}_desc-healthy_T1w.nii.gz"


def label_table() -> pd.DataFrame:
    """``index, name, hemisphere, area`` of the Neuromorphometrics labels."""
    from brainlrp.atlas import load_atlas

    return load_atlas("neuromorphometrics").labels.copy()


def volume_table(before: np.ndarray, after: np.ndarray, label_names: dict[int, str],
                 voxel_volume: float, model_losses: dict[str, float] | None = None
                 ) -> pd.DataFrame:
    """Per-label volumes of two label maps (one ``bincount`` each) and the relative loss.

    Parameters
    ----------
    before, after : int ndarray
        The subject's label map without and with the disease.
    label_names : dict
        Atlas index -> name (every label gets a row, present or not).
    voxel_volume : float
        mm3 per voxel.
    model_losses : dict, optional
        Label name -> the loss the disease model drew.
    """
    index = np.array(sorted(label_names), dtype=np.int64)
    n = int(max(index.max(), before.max(), after.max())) + 1
    vb = np.bincount(before.ravel().astype(np.int64), minlength=n)[index] * voxel_volume
    va = np.bincount(after.ravel().astype(np.int64), minlength=n)[index] * voxel_volume
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(vb > 0, 1 - va / np.where(vb > 0, vb, 1), 0.0)
    losses = model_losses or {}
    names = [label_names[i] for i in index]
    return pd.DataFrame({"label": names, "index": index, "volume_before_mm3": vb,
                         "volume_after_mm3": va, "relative_loss": rel,
                         "model_loss": [float(losses.get(nm, 0.0)) for nm in names]},
                        columns=list(TABLE_COLUMNS))


def load_ground_truth(root: str | os.PathLike) -> pd.DataFrame:
    """Every subject's label table of a simulated cohort, long format with a
    ``participant_id`` column (subjects in participants.tsv order)."""
    from brainlrp.errors import BrainLRPError

    root = Path(root)
    table = root / "participants.tsv"
    if not table.is_file() or not folder(root).is_dir():
        raise BrainLRPError(f"{root} is not a complete simulated cohort (no participants.tsv "
                            f"or {FOLDER})", "simulate one with `brainlrp simulate`")
    ids = pd.read_csv(table, sep="\t", dtype=str)["participant_id"]
    frames = []
    for pid in ids:
        frame = pd.read_csv(subject_paths(root, pid)["volume_loss"], sep="\t")
        frame.insert(0, "participant_id", pid)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
