"""Registration accuracy and speed on a real T1: Colin27 moved by a known transform.

Colin27 (Debian's ``mricron-data``: ``ch2.nii.gz``, the whole head, and ``aal.nii.gz``
on the same grid) lies in MNI space. It is moved by a known rigid + affine transform
(8 and -6 degree rotations, scales 1.04 / 0.97 / 1.02, a 16 mm translation) and
resampled onto a native-like grid: 1 x 1 x 1.2 mm, LAS orientation, int16 with a
``scl_slope``. brainlrp registers it back to the ICBM 2009c template on the model
grid and we measure, over the template brain's voxels:

* ``recovery error``: mean distance (mm) between where the recovered transform
  sends each template point and where it should send it, the known transform
  composed with brainlrp's registration of the unmoved Colin27 (so the anatomical
  difference between Colin27 and the ICBM average is not counted);
* ``error vs MNI``: the same against the known transform alone (Colin27 taken as
  exactly in ICBM 2009c space; includes that anatomical difference);
* hippocampus Dice: AAL's hippocampus drawn on Colin27, carried into the template
  grid through the recovered transform, against the same carried through the
  reference registration (``dice recovered``) and against the Neuromorphometrics
  hippocampus of the template (``dice nmm``);
* seconds per scan (N4 + both registration passes + resampling), affine and SyN,
  with ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` threads.

Usage::

    python benchmarks/registration.py [--resolution 1] [--methods affine,syn]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(len(os.sched_getaffinity(0))))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from brainlrp.data.grid import Grid, brain_mask  # noqa: E402
from brainlrp.data.register import Registration, register_scan, to_ants  # noqa: E402

MRICRON = Path("/usr/share/mricron/templates")
AAL_HIPPOCAMPUS = (37, 38)


def known_transform() -> np.ndarray:
    """The native-from-MNI world transform's inverse: MNI point = T @ native point."""
    def rot(axis: int, degrees: float) -> np.ndarray:
        t = np.deg2rad(degrees)
        r = np.eye(4)
        i, j = [k for k in range(3) if k != axis]
        r[i, i] = r[j, j] = np.cos(t)
        r[i, j], r[j, i] = -np.sin(t), np.sin(t)
        return r

    t = rot(0, 8) @ rot(2, -6)
    t[:3, :3] = t[:3, :3] @ np.diag([1.04, 0.97, 1.02])
    t[:3, 3] = [6, -12, 9]
    return t


def native_scan(source: Path, out: Path, transform: np.ndarray, scale: float = 1.0,
                order: int = 1, dtype=np.int16) -> Path:
    """Resample ``source`` (MNI) onto a 1 x 1 x 1.2 mm LAS grid through ``transform``."""
    import scipy.ndimage as ndi

    img = nib.load(source)
    shape = (int(200 / scale), int(232 / scale), int(200 / (1.2 * scale)))
    affine = np.diag([-scale, scale, 1.2 * scale, 1.0])
    affine[:3, 3] = [100, -116, -100]
    m = np.linalg.inv(img.affine) @ transform @ affine
    data = ndi.affine_transform(np.asarray(img.dataobj, np.float32), m[:3, :3], m[:3, 3],
                                output_shape=shape, order=order)
    out_img = nib.Nifti1Image(data.astype(dtype), affine)
    if dtype == np.int16:
        out_img.header.set_slope_inter(0.5, 0.0)
        out_img = nib.Nifti1Image((data * 2).astype(np.int16), affine, out_img.header)
    nib.save(out_img, out)
    return out


def map_points(reg, points_ras: np.ndarray) -> np.ndarray:
    """Send template points (RAS mm) into the scan through a registration's transforms."""
    import ants
    import pandas as pd

    pts = pd.DataFrame(points_ras * [-1, -1, 1], columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, pts, [str(p) for p in reg.forward])
    return mapped[["x", "y", "z"]].to_numpy() * [-1, -1, 1]


def carry_labels(reg, labels: Path, grid: Grid) -> np.ndarray:
    """A native label image pulled onto the model grid through the forward transform."""
    import ants

    img = nib.load(labels)
    moving = to_ants(np.asarray(img.dataobj, np.float32), img.affine)
    fixed = to_ants(np.zeros(grid.shape, np.float32), grid.affine_array)
    out = ants.apply_transforms(fixed=fixed, moving=moving,
                                transformlist=[str(p) for p in reg.forward],
                                interpolator="nearestNeighbor")
    return np.isin(np.rint(out.numpy()), AAL_HIPPOCAMPUS)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def nmm_hippocampus(grid: Grid) -> np.ndarray:
    from brainlrp.atlas import load_atlas, resample_labels

    atlas = load_atlas("neuromorphometrics")
    idx = atlas.labels.loc[atlas.labels["area"].str.contains("Hippocampus"), "index"]
    labels = resample_labels(atlas, grid)
    return np.isin(labels, idx.to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--methods", default="affine,syn")
    args = parser.parse_args()
    if not (MRICRON / "ch2.nii.gz").is_file():
        sys.exit("needs Debian's mricron-data (apt-get install mricron-data)")
    grid = Grid.from_resolution(args.resolution)
    t = known_transform()
    points = nib.affines.apply_affine(grid.affine_array, np.argwhere(brain_mask(grid)))
    nmm = nmm_hippocampus(grid)
    threads = os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
                             str(len(os.sched_getaffinity(0))))
    print(f"Colin27 (ch2, whole head) on a 1 x 1 x 1.2 mm LAS int16 grid -> ICBM 2009c at "
          f"{grid.describe()}; {threads} ITK threads")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        moved = native_scan(MRICRON / "ch2.nii.gz", tmp / "moved.nii.gz", t)
        moved_aal = native_scan(MRICRON / "aal.nii.gz", tmp / "moved_aal.nii.gz", t,
                                order=0, dtype=np.float32)
        still = native_scan(MRICRON / "ch2.nii.gz", tmp / "still.nii.gz", np.eye(4))
        still_aal = native_scan(MRICRON / "aal.nii.gz", tmp / "still_aal.nii.gz", np.eye(4),
                                order=0, dtype=np.float32)
        for method in args.methods.split(","):
            reg = Registration(method)
            start = time.perf_counter()
            recovered = register_scan(moved, reg, grid, tmp / f"moved-{method}")
            seconds = time.perf_counter() - start
            reference = register_scan(still, reg, grid, tmp / f"still-{method}")
            want = nib.affines.apply_affine(np.linalg.inv(t), map_points(reference, points))
            got = map_points(recovered, points)
            err = np.linalg.norm(got - want, axis=1)
            err_mni = np.linalg.norm(got - nib.affines.apply_affine(np.linalg.inv(t), points),
                                     axis=1)
            hip = carry_labels(recovered, moved_aal, grid)
            hip_ref = carry_labels(reference, still_aal, grid)
            print(f"{method:>6}: recovery error {err.mean():.2f} mm (95th pct "
                  f"{np.percentile(err, 95):.2f}), error vs MNI {err_mni.mean():.2f} mm, "
                  f"dice recovered {dice(hip, hip_ref):.3f}, dice nmm {dice(hip, nmm):.3f}, "
                  f"correlation {recovered.correlation:.3f}, {seconds:.1f} s per scan")


if __name__ == "__main__":
    main()
