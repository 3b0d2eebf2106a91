"""Planting into a real brain: Colin27 with known atrophy, and what a run's model says.

Colin27 (Debian's ``mricron-data``, ``ch2bet.nii.gz``) is registered to ICBM 2009c and
prepared as the run's model sees it (``brainlrp explain RUN --scan ... --register``, whose
``input.nii.gz`` is the model's input), then patients drawn from a disease model are
planted into it (:func:`brainlrp.simulate.plant.plant_atrophy`). For each draw the model's
p(AD) of the planted scan is recorded beside the original's. The first draw is drawn as
a figure: the original, the planted scan, their difference with the truth (tissue lost
> 5 %) outlined, on axial, coronal and sagittal slices through the most atrophied voxel.

Writes ``benchmarks/results/plant_colin.json`` and ``docs/planted_colin.png``.

Usage::

    python benchmarks/plant_colin.py RUN [--out DIR] [--draws 5] [--disease-model NAME]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import ROOT, write_result

COLIN = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
FIGURE = ROOT / "docs" / "planted_colin.png"



def model_input(run: Path, out: Path) -> Path:
    """Colin27 registered and prepared for the run's model (``input.nii.gz``)."""
    target = out / "colin"
    if not (target / "input.nii.gz").is_file():
        subprocess.run([sys.executable, "-m", "brainlrp.cli", "explain", str(run), "--scan",
                        str(COLIN), "--register", "--out", str(target), "--methods",
                        "lrp-b0"], check=True, cwd=ROOT)
    return target / "input.nii.gz"


def figure(original, planted, loss, grid, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from brainlrp.simulate.anatomy import template_anatomy

    # Slices through the left hippocampus (the atlas on the model grid).
    a = template_anatomy(grid)
    hippo = a.paste(a.labels) == a.label_index("Left_Hippocampus")
    centre = tuple(int(round(c)) for c in np.argwhere(hippo).mean(0))
    views = [("axial", lambda a: a[:, :, centre[2]].T),
             ("coronal", lambda a: a[:, centre[1], :].T),
             ("sagittal", lambda a: a[centre[0], :, :].T)]
    diff = planted - original
    lim = float(np.abs(diff).max()) or 1.0
    fig, axes = plt.subplots(3, 3, figsize=(9, 9.4))
    for row, (name, cut) in enumerate(views):
        for col, (image, label) in enumerate(((original, "Colin27 (original)"),
                                              (planted, "planted atrophy"),
                                              (diff, "planted - original, truth outlined"))):
            ax = axes[row, col]
            if col < 2:
                ax.imshow(cut(image), cmap="gray", origin="lower", vmin=0, vmax=1)
            else:
                ax.imshow(cut(original), cmap="gray", origin="lower", vmin=0, vmax=1)
                shown = np.ma.masked_where(np.abs(cut(diff)) < 0.1 * lim, cut(diff))
                ax.imshow(shown, cmap="RdBu_r", origin="lower",
                          vmin=-lim, vmax=lim, alpha=0.85)
                ax.contour(cut(loss > 0.05).astype(float), levels=[0.5], colors="yellow",
                           linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=10)
            if col == 0:
                ax.set_ylabel(name, fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    import nibabel as nib
    import numpy as np
    import torch

    from brainlrp.card import read_card
    from brainlrp.simulate.disease import load_disease_model
    from brainlrp.simulate.plant import plant_atrophy, segment
    from brainlrp.training import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--disease-model", default="default")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="plant-colin-"))
    card = read_card(args.run)
    grid = card.prep.grid
    original = np.asarray(nib.load(model_input(args.run, out)).dataobj, dtype=np.float32)
    model, _ = load_model(args.run)
    disease = load_disease_model(args.disease_model)

    def p_ad(volume) -> float:
        with torch.no_grad():
            logits = model(torch.from_numpy(volume[None, None].copy()))
        return float(torch.softmax(logits, 1)[0, card.target_class])

    seg = segment(original, grid)
    base = p_ad(original)
    draws, first = [], None
    for i in range(args.draws):
        subtype, severity, losses = disease.draw(np.random.default_rng([0, i, 0xC0]))
        planted = plant_atrophy(original, grid, losses, seg)
        brain = original > 0.05
        draws.append({"draw": i, "subtype": subtype, "severity": round(severity, 4),
                      "p_ad_planted": round(p_ad(planted.image), 4),
                      "atrophied_share_of_brain": round(float(
                          (planted.tissue_loss[brain] > 0.05).mean()), 4)})
        first = first or (planted, subtype, severity)
        print(draws[-1])
    planted, subtype, severity = first
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure(original, planted.image, planted.tissue_loss, grid, FIGURE,
           f"Colin27 registered to ICBM 2009c; '{disease.name}' atrophy planted "
           f"({subtype}, severity {severity:.2f}). p(AD): original {base:.3f}, planted "
           f"{draws[0]['p_ad_planted']:.3f}")
    rises = [d["p_ad_planted"] - base for d in draws]
    result = {"run": str(args.run), "disease_model": disease.name,
              "segmentation_means_csf_gm_wm": [round(m, 4) for m in seg.means],
              "p_ad_original": round(base, 4), "draws": draws,
              "mean_rise": round(float(np.mean(rises)), 4),
              "min_rise": round(float(np.min(rises)), 4), "figure": str(FIGURE.relative_to(ROOT))}
    written = write_result("plant_colin", result)
    print(f"p(AD) original {base:.3f}; planted mean rise {result['mean_rise']:.3f} "
          f"(min {result['min_rise']:.3f}); wrote {written} and {FIGURE}")


if __name__ == "__main__":
    main()
