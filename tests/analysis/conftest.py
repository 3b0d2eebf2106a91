"""Fixtures for the analysis tests: a fake run directory on the 6 mm template grid.

The run has three methods (lrp-b0, lrp-b1, gb), nine analysed participants covering
every outcome (one AD participant with two scans), one training-split participant
without heatmaps, a cohort with ``hippocampus_volume`` and simulator-style ground
truth, a tiny model, an inputs function and an input-gradient explain function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from brainlrp._io import save_nifti
from brainlrp.analysis.regions import AtlasRegions
from brainlrp.atlas import Atlas
from brainlrp.atlas.builtin import label_table
from brainlrp.card import ModelCard
from brainlrp.data.grid import Grid, brain_mask, template
from brainlrp.data.preprocess import Preprocessing
from brainlrp.models import build_model
from brainlrp.run import RunDir

METHODS = ("lrp-b0", "lrp-b1", "gb")
#: Shape of the hand-made atlas (distinct axis lengths catch swapped axes).
SHAPE = (7, 8, 9)
#: participant_id, scan_ids, label, predicted, p_ad, split
PARTICIPANTS = [
    ("sub-01", ["sub-01"], 1, 1, 0.97, "test"),
    ("sub-02", ["sub-02_ses-1", "sub-02_ses-2"], 1, 1, 0.95, "test"),
    ("sub-03", ["sub-03"], 1, 1, 0.92, "test"),
    ("sub-04", ["sub-04"], 1, 1, 0.70, "test"),
    ("sub-05", ["sub-05"], 1, 0, 0.30, "test"),
    ("sub-06", ["sub-06"], 0, 0, 0.10, "test"),
    ("sub-07", ["sub-07"], 0, 0, 0.20, "test"),
    ("sub-08", ["sub-08"], 0, 1, 0.60, "test"),
    ("sub-09", ["sub-09"], 0, 0, 0.05, "test"),
    ("sub-10", ["sub-10"], 1, 1, 0.80, "train"),  # no heatmaps: must be skipped
]
#: Areas atrophied per AD participant (the first two for everyone).
ATROPHY = {"sub-01": ["Hippocampus", "Amygdala", "PHG_parahippocampal_gyrus"],
           "sub-02": ["Hippocampus", "Amygdala", "Ent_entorhinal_area"],
           "sub-03": ["Hippocampus", "Amygdala", "ITG_inferior_temporal_gyrus"],
           "sub-04": ["Hippocampus", "Amygdala", "TMP_temporal_pole"],
           "sub-05": ["Hippocampus", "Amygdala", "FuG_fusiform_gyrus"],
           "sub-10": ["Hippocampus", "Amygdala"]}


@pytest.fixture(scope="session")
def grid6() -> Grid:
    return Grid.from_resolution(6.0)


@pytest.fixture(scope="session")
def atlas6(grid6) -> AtlasRegions:
    return AtlasRegions.fit("neuromorphometrics", grid6)


def tissue_loss(atlas: AtlasRegions, pid: str) -> np.ndarray:
    """Ground-truth tissue loss: 0.2-0.6 in the participant's atrophied areas, else 0."""
    loss = np.zeros(atlas.grid.shape, dtype=np.float32)
    for k, area in enumerate(ATROPHY.get(pid, [])):
        code = atlas.area_index(area) + 1
        loss[atlas.area_codes == code] = 0.6 - 0.2 * k
    return loss


def volume_loss_table(atlas: AtlasRegions, loss: np.ndarray) -> pd.DataFrame:
    """The simulator's per-label table, consistent with ``loss`` on the grid."""
    from brainlrp.atlas import region_sums

    lab = atlas.labels
    lost = region_sums(loss, atlas.codes, atlas.n_labels)
    before = lab["n_voxels"].to_numpy(float) * atlas.grid.voxel_volume
    after = before - lost * atlas.grid.voxel_volume
    return pd.DataFrame({"label": lab["region"], "index": lab["index"],
                         "volume_before_mm3": before, "volume_after_mm3": after,
                         "relative_loss": 1 - after / before})


def input_image(grid: Grid, atlas: AtlasRegions, scan_id: str) -> np.ndarray:
    """A deterministic model input in [0, 1] for ``scan_id``."""
    seed = int(scan_id.split("-")[1][:2])
    rng = np.random.default_rng(seed)
    pid = scan_id.split("_")[0]
    data = np.array(template(grid), dtype=np.float32) * (1 - 0.5 * tissue_loss(atlas, pid))
    data *= 1 + 0.05 * rng.standard_normal(data.shape).astype(np.float32)
    data = np.clip(data, 0, None) * brain_mask(grid)
    return (data / data.max()).astype(np.float32)


def grad_explain(model, x, method):
    """Input gradient (times input for "lrp" names) of the AD logit: a cheap stand-in."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
    return g * x.detach() if method.startswith("lrp") else g


@dataclass
class FakeRun:
    root: Path
    cohort: Path
    grid: Grid
    model: torch.nn.Module
    inputs_fn: object
    explain_fn: object


def twin_image(grid: Grid, scan_id: str) -> np.ndarray:
    """The healthy twin of ``input_image``: the same person without the tissue loss."""
    seed = int(scan_id.split("-")[1][:2])
    rng = np.random.default_rng(seed)
    data = np.array(template(grid), dtype=np.float32)
    data *= 1 + 0.05 * rng.standard_normal(data.shape).astype(np.float32)
    return np.clip(data, 0, None) * brain_mask(grid)


def make_run(base: Path, grid: Grid, atlas: AtlasRegions, methods=METHODS,
             ground_truth: bool = True, twins: bool = False) -> FakeRun:
    """Write a fake run directory and cohort under ``base``."""
    root, cohort = base / "run", base / "cohort"
    rd = RunDir(root)
    rows, covariates = [], []
    rng = np.random.default_rng(0)
    brain = brain_mask(grid)
    for pid, scan_ids, label, pred, p_ad, split in PARTICIPANTS:
        covariates.append({"participant_id": pid, "diagnosis": "AD" if label else "CN",
                           "hippocampus_volume": 3000 + 40 * int(pid[-2:]) - 500 * label})
        anat = cohort / pid / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for sid in scan_ids:
            name = sid if "_ses" in sid else pid
            nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), grid.affine_array),
                     str(anat / f"{name}_T1w.nii.gz"))
            outcome = {(1, 1): "TP", (0, 0): "TN", (0, 1): "FP", (1, 0): "FN"}[(label, pred)]
            rows.append({"participant_id": pid, "scan_id": sid,
                         "diagnosis": "AD" if label else "CN", "label": label, "p_ad": p_ad,
                         "predicted": pred, "outcome": outcome, "split": split})
        loss = tissue_loss(atlas, pid)
        if ground_truth and label == 1:
            gt_dir = cohort / "derivatives" / "ground_truth"
            save_nifti(gt_dir / f"{pid}_tissue_loss.nii.gz", loss, grid.affine_array)
            volume_loss_table(atlas, loss).to_csv(gt_dir / f"{pid}_volume_loss.tsv", sep="\t",
                                                  index=False)
            if twins:
                save_nifti(gt_dir / f"{pid}_desc-healthy_T1w.nii.gz",
                           twin_image(grid, scan_ids[0]), grid.affine_array)
        if split != "test":
            continue
        for sid in scan_ids:
            for method in methods:
                noise = rng.standard_normal(grid.shape).astype(np.float32)
                if method == "gb":
                    heat = (0.5 * loss + 0.1 * noise) * brain
                else:
                    scale = p_ad * (1.0 if method == "lrp-b0" else 0.8)
                    heat = scale * (loss + 0.05 * np.abs(noise)) * brain
                    if method != "lrp-b0":
                        heat -= 0.02 * np.abs(noise) * brain
                save_nifti(rd.heatmap(method, sid), heat, grid.affine_array)
    pd.DataFrame(covariates).to_csv(cohort / "participants.tsv", sep="\t", index=False)
    pd.DataFrame(rows).to_csv(root / "predictions.tsv", sep="\t", index=False)
    ModelCard("tiny", {}, Preprocessing(grid).to_dict()).write(root)
    rd.set_cohort({"source": str(cohort)})
    torch.manual_seed(0)
    model = build_model("tiny", grid.shape).eval()

    def inputs_fn(scan_ids):
        return np.stack([input_image(grid, atlas, s) for s in scan_ids])[:, None]

    return FakeRun(root=root, cohort=cohort, grid=grid, model=model, inputs_fn=inputs_fn,
                   explain_fn=grad_explain)


@pytest.fixture
def fake_run(tmp_path, grid6, atlas6) -> FakeRun:
    return make_run(tmp_path, grid6, atlas6)


@pytest.fixture(scope="session")
def tiny_atlas() -> AtlasRegions:
    """Labels Left_Foo (x < 3), Right_Foo (x >= 4, y < 4), Bar (x >= 4, y >= 4, z < 5)."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-6, -7, -8]
    grid = Grid(shape=SHAPE, affine=tuple(tuple(r) for r in affine), resolution=2.0)
    labels = np.zeros(SHAPE, dtype=np.int32)
    labels[:3] = 1                      # Left_Foo
    labels[4:, :4] = 2                  # Right_Foo
    labels[4:, 4:, :5] = 3              # Bar
    atlas = Atlas(name="hand", image=nib.Nifti1Image(labels, affine),
                  labels=label_table([1, 2, 3], ["Left_Foo", "Right_Foo", "Bar"], "hand"))
    return AtlasRegions.fit(atlas, grid)
