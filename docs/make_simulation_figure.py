"""Draw docs/simulation.png: a simulated CN and AD subject and the AD ground truth.

Usage::

    python docs/make_simulation_figure.py [--out docs/simulation.png] [--seed 0]

Simulates a small cohort at 2 mm in a temporary folder with the default disease
model, picks the AD patient with the largest hippocampal loss and the CN subject
closest in age, and draws orthogonal slices through the left hippocampus: the CN
scan, the AD scan, the same patient rendered without the disease (same anatomy,
age and scanner), and the AD scan with its tissue-loss map.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from brainlrp.data.grid import Grid  # noqa: E402
from brainlrp.simulate import load_disease_model, simulate, subject_paths  # noqa: E402
from brainlrp.simulate.anatomy import template_anatomy  # noqa: E402
from brainlrp.simulate.scanner import scanner_effects  # noqa: E402
from brainlrp.simulate.subject import draw_subject, render_subject  # noqa: E402

#: Slices through the left hippocampus (MNI mm).
CUT = (-28.0, -22.0, -14.0)


def _voxel(grid: Grid, xyz) -> tuple[int, int, int]:
    ijk = np.linalg.solve(grid.affine_array, np.append(xyz, 1.0))[:3]
    return tuple(int(round(v)) for v in ijk)


def _views(grid: Grid, ijk):
    """Zoomed coronal, sagittal and axial cuts around the medial temporal lobes."""
    i, j, k = ijk
    (x0, y0, z0), (x1, y1, z1) = _voxel(grid, (-56, -60, -44)), _voxel(grid, (56, 12, 12))
    return [(f"coronal y = {CUT[1]:g}", lambda v: v[x0:x1, j, z0:z1].T),
            (f"sagittal x = {CUT[0]:g}", lambda v: v[i, y0:y1, z0:z1].T),
            (f"axial z = {CUT[2]:g}", lambda v: v[x0:x1, y0:y1, k].T)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "simulation.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-subjects", type=int, default=16)
    args = parser.parse_args()

    grid = Grid.from_resolution(2)
    with tempfile.TemporaryDirectory() as tmp:
        result = simulate(Path(tmp) / "cohort", n_subjects=args.n_subjects, resolution=2,
                          seed=args.seed, n_jobs=2, progress=False)
        table = result.participants
        truth = {pid: pd.read_csv(subject_paths(result.root, pid)["volume_loss"], sep="\t")
                 for pid in table["participant_id"]}
        ad = table[table["diagnosis"] == "AD"].copy()
        ad["hippo_loss"] = [
            1 - truth[p].query("label.str.endswith('_Hippocampus')", engine="python")
            ["volume_after_mm3"].sum() / truth[p].query(
                "label.str.endswith('_Hippocampus')", engine="python")
            ["volume_before_mm3"].sum() for p in ad["participant_id"]]
        patient = ad.sort_values("hippo_loss").iloc[-1]
        cn = table[table["diagnosis"] == "CN"]
        control = cn.iloc[int(np.argmin(np.abs(cn["age"] - patient["age"])))]

        def load(pid, key):
            return np.asarray(nib.load(subject_paths(result.root, pid)[key]).dataobj,
                              dtype=np.float32)

        t1_cn, t1_ad = load(control.participant_id, "t1"), load(patient.participant_id, "t1")
        loss = load(patient.participant_id, "tissue_loss")

    # The same patient without the disease (same anatomy, age and scanner).
    anatomy = template_anatomy(grid)
    model = load_disease_model("default")
    index = int(patient.participant_id.split("-")[1]) - 1
    spec = draw_subject(args.seed, index, patient.participant_id, "AD", model)
    healthy = spec.without_disease()
    images = render_subject(healthy, anatomy)
    t1_well = anatomy.paste(scanner_effects(images.t1, images.brain, anatomy.wm_intensity,
                                            healthy.scanner_seed)).astype(np.float32)

    ijk = _voxel(grid, CUT)
    # Each scan to its own bright end (scanner gains differ); the patient without
    # disease shares the patient's scanner, hence the patient's scale.
    scale_cn = float(np.percentile(t1_cn[t1_cn > 0], 99.5))
    scale_ad = float(np.percentile(t1_ad[t1_ad > 0], 99.5))
    t1_cn, t1_ad, t1_well = t1_cn / scale_cn, t1_ad / scale_ad, t1_well / scale_ad

    views = _views(grid, ijk)
    columns = [
        (f"CN {control.participant_id}, {control.age:.0f} y {control.sex}", t1_cn, None),
        (f"AD {patient.participant_id}, {patient.age:.0f} y {patient.sex}, "
         f"{patient.subtype}, severity {patient.severity:.2f}", t1_ad, None),
        (f"{patient.participant_id} rendered without the disease", t1_well, None),
        (f"{patient.participant_id}: ground truth (tissue lost)", t1_ad, loss),
    ]
    fig, axes = plt.subplots(len(views), len(columns), figsize=(16.5, 8.4),
                             facecolor="black",
                             gridspec_kw={"wspace": 0.03, "hspace": 0.08})
    heat = None
    for c, (title, t1, overlay) in enumerate(columns):
        for r, (name, cut) in enumerate(views):
            ax = axes[r, c]
            ax.imshow(cut(t1), cmap="gray", origin="lower", vmin=0, vmax=1.0,
                      interpolation="bilinear")
            if overlay is not None:
                heat = ax.imshow(np.ma.masked_less(cut(overlay), 0.1), cmap="hot",
                                 origin="lower", vmin=0, vmax=0.6, alpha=0.85,
                                 interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if r == 0:
                ax.set_title(title, color="white", fontsize=10)
            if c == 0:
                ax.set_ylabel(name, color="white", fontsize=10)
    bar = fig.colorbar(heat, ax=axes.ravel().tolist(), shrink=0.5, pad=0.015, fraction=0.02)
    bar.set_label("fraction of the voxel's tissue lost (shown from 0.1)", color="white")
    bar.ax.tick_params(colors="white")
    fig.suptitle("brainlrp simulate, default disease model, 2 mm ICBM 2009c grid: medial "
                 f"temporal lobes through MNI {CUT} (left hemisphere on the left)",
                 color="white", fontsize=12, y=0.95)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110, facecolor="black", bbox_inches="tight")
    print(f"wrote {args.out} (CN {control.participant_id}, AD {patient.participant_id}, "
          f"hippocampal loss {patient.hippo_loss:.0%})")


if __name__ == "__main__":
    main()
