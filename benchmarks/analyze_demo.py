"""Time ``brainlrp analyze`` on a fake demo-sized run (2 mm grid, 60 test subjects).

Seven methods x 60 heatmaps (random smooth maps), a simulated-style cohort with
ground truth for the 30 AD subjects, and the paper's model at 2 mm with random
weights for the faithfulness and sanity checks. The explain function is an input
gradient (times the input for the ``lrp-*`` names): the real LRP should cost about
1.3x a gradient (docs/architecture.md, Performance), so sanity time scales by about that much.

Usage::

    PYTHONPATH=src python benchmarks/analyze_demo.py [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from scipy.ndimage import gaussian_filter

from brainlrp._io import save_nifti, write_json
from brainlrp.analysis import analyze
from brainlrp.analysis.regions import AtlasRegions
from brainlrp.atlas import region_sums
from brainlrp.data.grid import Grid, brain_mask, template
from brainlrp.models import build_model
from brainlrp.run import RunDir

METHODS = ("lrp-b0", "lrp-b0.25", "lrp-b0.5", "lrp-b0.75", "lrp-b1", "gb", "gradient")
N_PER_CLASS = 30
AFFECTED = ("Hippocampus", "Amygdala", "Ent_entorhinal_area", "PHG_parahippocampal_gyrus",
            "ITG_inferior_temporal_gyrus", "MTG_middle_temporal_gyrus", "TMP_temporal_pole",
            "FuG_fusiform_gyrus", "PCu_precuneus", "AnG_angular_gyrus",
            "PCgG_posterior_cingulate_gyrus", "Lateral Ventricles")


def build(workdir: Path) -> tuple[Path, Grid, AtlasRegions]:
    """Write the fake run and cohort (skipped when already there)."""
    grid = Grid.from_resolution(2.0)
    atlas = AtlasRegions.fit("neuromorphometrics", grid)
    run, cohort = workdir / "run", workdir / "cohort"
    if (run / "predictions.tsv").is_file():
        return run, grid, atlas
    rng = np.random.default_rng(0)
    brain = brain_mask(grid)
    # Smooth random bases, mixed per heatmap: smooth maps without 420 filter passes.
    bases = np.stack([gaussian_filter(rng.standard_normal(grid.shape), 4).astype(np.float32)
                      for _ in range(6)])
    bases /= np.abs(bases).max()
    rows, parts = [], []
    rd = RunDir(run)
    gt_dir = cohort / "derivatives" / "ground_truth"
    for k in range(2 * N_PER_CLASS):
        label = int(k < N_PER_CLASS)
        pid = f"sub-{k + 1:03d}"
        p_ad = float(np.clip(rng.normal(0.8 if label else 0.2, 0.2), 0.01, 0.99))
        pred = int(p_ad > 0.5)
        loss = np.zeros(grid.shape, np.float32)
        if label:
            for area in rng.choice(AFFECTED, size=6, replace=False):
                loss[atlas.area_codes == atlas.area_index(area) + 1] = rng.uniform(0.1, 0.4)
            save_nifti(gt_dir / f"{pid}_tissue_loss.nii.gz", loss, grid.affine_array)
            lost = region_sums(loss, atlas.codes, atlas.n_labels)
            before = atlas.labels["n_voxels"].to_numpy(float) * grid.voxel_volume
            after = before - lost * grid.voxel_volume
            pd.DataFrame({"label": atlas.labels["region"], "index": atlas.labels["index"],
                          "volume_before_mm3": before, "volume_after_mm3": after,
                          "relative_loss": 1 - after / before}).to_csv(
                gt_dir / f"{pid}_volume_loss.tsv", sep="\t", index=False)
        anat = cohort / pid / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), grid.affine_array),
                 str(anat / f"{pid}_T1w.nii.gz"))
        parts.append({"participant_id": pid, "diagnosis": "AD" if label else "CN",
                      "hippocampus_volume": rng.normal(3000 - 400 * label, 200)})
        outcome = {(1, 1): "TP", (0, 0): "TN", (0, 1): "FP", (1, 0): "FN"}[(label, pred)]
        rows.append({"participant_id": pid, "scan_id": pid, "diagnosis": parts[-1]["diagnosis"],
                     "label": label, "p_ad": p_ad, "predicted": pred, "outcome": outcome,
                     "split": "test"})
        for method in METHODS:
            mix = np.tensordot(rng.standard_normal(len(bases)).astype(np.float32), bases, 1)
            heat = (p_ad * (np.abs(mix) + loss) * brain).astype(np.float32)
            save_nifti(rd.heatmap(method, pid), heat, grid.affine_array)
    pd.DataFrame(parts).to_csv(cohort / "participants.tsv", sep="\t", index=False)
    pd.DataFrame(rows).to_csv(run / "predictions.tsv", sep="\t", index=False)
    write_json(rd.card, {"architecture": "paper", "grid": grid.to_dict()})
    rd.set_cohort({"source": str(cohort)})
    return run, grid, atlas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the fake run")
    parser.add_argument("--build-only", action="store_true", help="only write the fake run")
    parser.add_argument("--sanity-subjects", type=int, default=None)
    parser.add_argument("--faithfulness-subjects", type=int, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="brainlrp-bench-"))
    t0 = time.perf_counter()
    run, grid, atlas = build(workdir)
    print(f"fake run ready in {time.perf_counter() - t0:.1f} s: {run}")
    if args.build_only:
        return

    torch.manual_seed(0)
    model = build_model("paper", grid.shape).eval()
    tmpl = np.asarray(template(grid), dtype=np.float32)
    tmpl = tmpl / tmpl.max()

    def inputs_fn(ids):
        out = np.empty((len(ids), 1, *grid.shape), np.float32)
        for i, sid in enumerate(ids):
            scale = 1 + 0.05 * np.random.default_rng(int(sid[-3:])).standard_normal()
            out[i, 0] = np.clip(tmpl * scale, 0, 1)
        return out

    def explain_fn(model, x, method):
        x = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
        return g * x.detach() if method.startswith("lrp") else g

    t0, c0 = time.perf_counter(), time.process_time()
    options = {k: v for k, v in (("sanity_subjects", args.sanity_subjects),
                                 ("faithfulness_subjects", args.faithfulness_subjects))
               if v is not None}
    res = analyze(run, model=model, inputs_fn=inputs_fn, explain_fn=explain_fn, progress=False,
                  **options)
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"analyze: {total:.1f} s wall, {cpu:.1f} s CPU for {len(res.methods)} methods x "
          f"{max(res.n_scans.values())} heatmaps on {grid.describe()}; "
          f"peak RSS {peak:.0f} MiB; torch threads {torch.get_num_threads()}")
    for name, sec in res.timings.items():
        print(f"  {name:<22} {sec:6.1f} s  ({sec / total:5.1%})")
    for notice in res.notices:
        print(f"  note: {notice}")
    # Reference costs on the same machine, so the total reads as a ratio.
    x = torch.from_numpy(inputs_fn(["sub-001"]))
    with torch.inference_mode():
        model(x)
        t0 = time.perf_counter()
        for _ in range(3):
            model(x)
        forward = (time.perf_counter() - t0) / 3
    t0 = time.perf_counter()
    for _ in range(3):
        explain_fn(model, x, "gradient")
    gradient = (time.perf_counter() - t0) / 3
    print(f"reference: forward {forward:.3f} s, input gradient {gradient:.3f} s per scan; "
          f"analyze = {total / forward:.0f} forwards = {total / gradient:.0f} gradients; "
          f"options {options or 'default'}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
