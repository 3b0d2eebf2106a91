"""Draw docs/simulation.png: a simulated CN and AD subject and the AD ground truth.

Usage::

    python docs/make_simulation_figure.py [--out docs/simulation.png] [--seed 0]

Simulates a small cohort at 2 mm in a temporary folder with the default disease
model, picks the AD patient with the largest hippocampal loss and the CN subject
closest in age, and draws orthogonal slices through the left hippocampus: the CN
scan, the AD scan, the AD scan with its tissue-loss map, and (bottom row) the
medial temporal lobes of the same patient rendered without and with the disease.
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


def _slices(volume: np.ndarray, ijk) -> list[np.ndarray]:
    """Coronal, sagittal and axial slices (rows = superior/anterior up)."""
    i, j, k = ijk
    return [volume[:, j, :].T, volume[i, :, :].T, volume[:, :, k].T]


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
        truth = {pid: pd.read_csv(subject_paths(result.root, pid)["table"], sep="\t")
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
        loss = load(patient.participant_id, "atrophy")

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
    vmax = 1.0
    fig = plt.figure(figsize=(13.5, 12.5), facecolor="black")
    outer = fig.add_gridspec(2, 1, height_ratios=[3, 1.25], hspace=0.12)
    top = outer[0].subgridspec(3, 3, wspace=0.02, hspace=0.05)
    columns = [
        (f"CN  {control.participant_id}, {control.age:.0f} y, {control.sex}", t1_cn, None),
        (f"AD  {patient.participant_id}, {patient.age:.0f} y, {patient.sex}, "
         f"{patient.subtype}, severity {patient.severity:.2f}", t1_ad, None),
        ("AD ground truth: fraction of tissue lost", t1_ad, loss),
    ]
    for c, (title, t1, overlay) in enumerate(columns):
        for r, (img, over) in enumerate(zip(_slices(t1, ijk),
                                            _slices(overlay, ijk) if overlay is not None
                                            else [None] * 3, strict=True)):
            ax = fig.add_subplot(top[r, c])
            ax.imshow(img, cmap="gray", origin="lower", vmin=0, vmax=vmax,
                      interpolation="bilinear")
            if over is not None:
                ax.imshow(np.ma.masked_less(over, 0.1), cmap="hot", origin="lower",
                          vmin=0, vmax=0.6, alpha=0.85, interpolation="nearest")
            ax.set_axis_off()
            if r == 0:
                ax.set_title(title, color="white", fontsize=9)

    # Bottom: medial temporal lobes, same patient without and with the disease.
    i, j, k = ijk
    i_lo, i_hi = _voxel(grid, (-52, 0, 0))[0], _voxel(grid, (52, 0, 0))[0]
    k_lo, k_hi = _voxel(grid, (0, 0, -42))[2], _voxel(grid, (0, 0, 8))[2]
    crops = [("same patient without disease", t1_well[i_lo:i_hi, j, k_lo:k_hi].T, "gray"),
             ("with disease", t1_ad[i_lo:i_hi, j, k_lo:k_hi].T, "gray"),
             ("difference (with - without)",
              (t1_ad - t1_well)[i_lo:i_hi, j, k_lo:k_hi].T, "RdBu_r")]
    bottom = outer[1].subgridspec(1, 3, wspace=0.02)
    for c, (title, img, cmap) in enumerate(crops):
        ax = fig.add_subplot(bottom[0, c])
        if cmap == "gray":
            ax.imshow(img, cmap=cmap, origin="lower", vmin=0, vmax=vmax,
                      interpolation="bilinear")
        else:
            lim = 0.4 * vmax
            ax.imshow(img, cmap=cmap, origin="lower", vmin=-lim, vmax=lim,
                      interpolation="bilinear")
        ax.set_title(f"{title}, coronal y = {CUT[1]:g} mm", color="white", fontsize=9)
        ax.set_axis_off()
    fig.suptitle("brainlrp simulate: default disease model, 2 mm ICBM 2009c grid "
                 f"(slices through MNI {CUT})", color="white", fontsize=11)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90, facecolor="black", bbox_inches="tight")
    print(f"wrote {args.out} (CN {control.participant_id}, AD {patient.participant_id}, "
          f"hippocampal loss {patient.hippo_loss:.0%})")


if __name__ == "__main__":
    main()
