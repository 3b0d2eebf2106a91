"""Time to preprocess one 1 mm scan onto the model grid, cold and from the cache.

The scan is the ICBM 2009c template with noise, stored the way FSL writes MNI
data: 182 x 218 x 182 voxels at 1 mm, LAS orientation (negative x axis), int16 —
so loading has to reorient and the resampling is real. ``cold`` is a fresh cache:
content hash, validation, reorientation, resampling to 193 x 229 x 193 with
nilearn, brain mask, min-max scaling and the atomic write of the array. ``cached``
is the same call again (stat index and file lookup only); ``load`` memory-maps and
reads the cached array, what training and explain do per scan.

Usage::

    python benchmarks/preprocess_speed.py [--repeats 3] [--resolution 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from brainlrp.data.grid import Grid, template  # noqa: E402
from brainlrp.data.preprocess import PreprocessCache, Preprocessing  # noqa: E402

FSL_SHAPE = (182, 218, 182)
FSL_AFFINE = np.array([[-1.0, 0, 0, 90], [0, 1, 0, -126], [0, 0, 1, -72], [0, 0, 0, 1]])


def fsl_style_scan(path: Path, seed: int = 0) -> Path:
    from nilearn.image import resample_img

    grid = Grid.from_resolution(1)
    src = nib.Nifti1Image(np.asarray(template(grid), np.float32), grid.affine_array)
    img = resample_img(src, target_affine=FSL_AFFINE, target_shape=FSL_SHAPE,
                       interpolation="linear", force_resample=True, copy_header=True)
    data = img.get_fdata(dtype=np.float32)
    rng = np.random.default_rng(seed)
    data = np.clip(data * (1 + 0.03 * rng.standard_normal(data.shape)), 0, None)
    out = nib.Nifti1Image(np.round(data / data.max() * 1000).astype(np.int16), FSL_AFFINE)
    out.set_sform(FSL_AFFINE, code=4)
    out.set_qform(FSL_AFFINE, code=4)
    nib.save(out, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=float, default=1.0)
    args = parser.parse_args()
    prep = Preprocessing(Grid.from_resolution(args.resolution))
    times: dict[str, list[float]] = {"cold": [], "cached": [], "load": []}
    with tempfile.TemporaryDirectory() as tmp:
        scan = fsl_style_scan(Path(tmp) / "sub-01_T1w.nii.gz")
        PreprocessCache(Path(tmp) / "warm").get(scan, prep)  # imports, template, atlas
        for k in range(args.repeats):
            cache = PreprocessCache(Path(tmp) / f"cache-{k}")
            tick = time.perf_counter()
            cache.get(scan, prep)
            times["cold"].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            array = cache.get(scan, prep)
            times["cached"].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            np.asarray(np.load(array, mmap_mode="r"), dtype=np.float32).sum()
            times["load"].append(time.perf_counter() - tick)
    print(f"one {FSL_SHAPE} 1 mm LAS int16 scan -> {prep.grid.describe()} "
          f"(median of {args.repeats})")
    for name, values in times.items():
        print(f"  {name:7s} {statistics.median(values):8.4f} s")
    ratio = statistics.median(times["cold"]) / statistics.median(times["cached"])
    print(f"  cold / cached = {ratio:.0f}x")


if __name__ == "__main__":
    main()
