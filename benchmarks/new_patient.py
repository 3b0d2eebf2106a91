"""One new patient through every route: Colin27 explained by a run's model.

A clinician-researcher brings one scan. This script takes a real one, Colin27 from
Debian's ``mricron-data`` (``ch2.nii.gz`` with its skull, ``ch2bet.nii.gz`` without),
through the routes a user may take with ``brainlrp explain RUN --scan`` and the run's
default methods, each as a fresh command line (so the times include starting Python,
loading the model and building the references):

- ``ch2bet --resample`` and ``ch2 --resample``: the MNI-space files as they are (a model
  trained on brain-extracted scans refuses ``ch2``, which still has its skull);
- ``ch2bet --register`` and ``ch2 --register``: registered to ICBM 2009c (N4, rigid,
  affine) as if they were native scans;
- ``moved ch2bet --register`` and ``moved ch2 --register``: the same brain moved by a
  known rigid + affine transform (8 and -6 degree rotations, scales 1.04 / 0.97 / 1.02,
  a 16 mm shift) onto a native-like 1 x 1 x 1.2 mm LAS int16 grid.

Each registration starts cold (its cache entry is removed first); the training
controls' arrays stay in the cache, as after the run's training. For each route the
script records the wall time, p(AD) and the class, and the intensity QC verdict; it
then correlates the preprocessed inputs (``OUT/input.nii.gz``) of routes that show the
same brain, inside the template brain mask where both are brain (> 0.05):

- ``moved ch2bet --register`` against ``ch2bet --register`` (the same registration from
  another pose) and against ``ch2bet --resample`` (which adds Colin27's own difference
  from the ICBM average: registering the MNI-space file moves it too);
- ``ch2 --register`` against ``ch2bet --register`` (the skull's effect).

Results go to ``benchmarks/results/new_patient.json`` (with the commit, the machine's
load before and after, and the settings).

Usage::

    python benchmarks/new_patient.py RUN [--out DIR] [--methods NAMES]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from _results import write_result
from registration import MRICRON, known_transform, native_scan  # noqa: E402

from brainlrp.data.grid import brain_mask  # noqa: E402
from brainlrp.data.preprocess import PreprocessCache, default_cache_dir  # noqa: E402
from brainlrp.data.register import Registration, registration_dir  # noqa: E402


def routes(scans: Path) -> dict[str, tuple[Path, list[str]]]:
    """Route name -> (scan, extra CLI arguments)."""
    return {"ch2bet --resample": (MRICRON / "ch2bet.nii.gz", ["--resample"]),
            "ch2 --resample": (MRICRON / "ch2.nii.gz", ["--resample"]),
            "ch2bet --register": (MRICRON / "ch2bet.nii.gz", ["--register"]),
            "ch2 --register": (MRICRON / "ch2.nii.gz", ["--register"]),
            "moved ch2bet --register": (scans / "moved_ch2bet.nii.gz", ["--register"]),
            "moved ch2 --register": (scans / "moved_ch2.nii.gz", ["--register"])}


def forget_registration(scan: Path, grid) -> None:
    """Remove a scan's cached registration so the route starts cold."""
    cache = PreprocessCache(default_cache_dir())
    shutil.rmtree(registration_dir(cache.root, cache.content_hash(scan), Registration(),
                                   grid), ignore_errors=True)


def correlation(a: Path, b: Path, mask: np.ndarray) -> float:
    x, y = (np.asarray(nib.load(p).dataobj, np.float32) for p in (a, b))
    both = mask & (x > 0.05) & (y > 0.05)
    return float(np.corrcoef(x[both], y[both])[0, 1])


def skull_effect(grid, registered: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Median intensity inside Colin27's brain with its skull over without (1.0: the
    skull changes nothing), per preprocessing: the MNI-space files as they are, and the
    two registered heads (``registered``: name -> cache folder of the registration)."""
    import nibabel as nib

    from brainlrp.data.nifti import load_scan
    from brainlrp.data.preprocess import Preprocessing, preprocess_image

    mask = np.asarray(brain_mask(grid))
    images = {"mni": {n: load_scan(MRICRON / f"{n}.nii.gz") for n in ("ch2", "ch2bet")},
              "registered": {n: nib.Nifti1Image(np.asarray(nib.load(
                  f / "registered.nii.gz").dataobj, np.float32), grid.affine_array)
                  for n, f in registered.items()}}
    out: dict[str, dict[str, float]] = {}
    for name, kwargs in {"minmax without the edge step (before)": {"clean_edge": False},
                         "minmax": {}, "robust": {"normalisation": "robust"}}.items():
        prep = Preprocessing(grid=grid, **kwargs)
        out[name] = {}
        for route, pair in images.items():
            on, off = (preprocess_image(pair[n], prep) for n in ("ch2", "ch2bet"))
            brain = mask & (off > 0.05)
            out[name][route] = round(float(np.median(on[brain]) / np.median(off[brain])), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, default=Path("new-patient"))
    parser.add_argument("--methods", default=None, help="default: the run's default methods")
    args = parser.parse_args()
    if not (MRICRON / "ch2.nii.gz").is_file():
        sys.exit("needs Debian's mricron-data (apt-get install mricron-data)")
    from brainlrp.card import read_card

    grid = read_card(args.run).grid
    args.out.mkdir(parents=True, exist_ok=True)
    scans = args.out / "scans"
    scans.mkdir(exist_ok=True)
    for name in ("ch2bet", "ch2"):
        if not (scans / f"moved_{name}.nii.gz").is_file():
            native_scan(MRICRON / f"{name}.nii.gz", scans / f"moved_{name}.nii.gz",
                        known_transform())
    load_before = os.getloadavg()
    rows = {}
    for route, (scan, extra) in routes(scans).items():
        if "--register" in extra:
            forget_registration(scan, grid)
        out = args.out / route.replace(" --", "-").replace(" ", "-")
        cmd = [sys.executable, "-m", "brainlrp", "explain", str(args.run), "--scan", str(scan),
               "--out", str(out), "--overwrite", *extra]
        if args.methods:
            cmd += ["--methods", args.methods]
        tick = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - tick
        if proc.returncode == 2:  # refused with one line (a scan with its skull)
            rows[route] = {"seconds": round(seconds, 1), "refused": proc.stderr.strip()}
            print(f"{route:>24}: refused: {proc.stderr.strip()}", flush=True)
            continue
        if proc.returncode != 0:
            sys.exit(f"{route} failed:\n{proc.stdout}\n{proc.stderr}")
        pred = json.loads((out / "prediction.json").read_text())
        rows[route] = {"seconds": round(seconds, 1), "p_ad": round(pred["p_ad"], 4),
                       "predicted": pred["predicted"],
                       "intensity_flagged": pred.get("intensity", {}).get("flagged"),
                       "intensity_robust_z": pred.get("intensity", {}).get("robust_z"),
                       "registration_correlation": pred.get("registration", {}).get(
                           "correlation"),
                       "steps": pred.get("seconds"), "methods": pred["methods"],
                       "input": str(out / "input.nii.gz")}
        print(f"{route:>24}: p(AD) {pred['p_ad']:.3f} ({pred['predicted']}), "
              f"{seconds:.0f} s", flush=True)
    mask = np.asarray(brain_mask(grid))

    def inp(route: str) -> Path:
        return Path(rows[route]["input"])

    pairs = {"moved ch2bet --register vs ch2bet --register": (
                 "moved ch2bet --register", "ch2bet --register"),
             "moved ch2bet --register vs ch2bet --resample": (
                 "moved ch2bet --register", "ch2bet --resample"),
             "ch2 --register vs ch2bet --register": ("ch2 --register", "ch2bet --register"),
             "ch2 --resample vs ch2bet --resample": ("ch2 --resample", "ch2bet --resample")}
    correlations = {k: round(correlation(inp(a), inp(b), mask), 4) for k, (a, b) in
                    pairs.items() if "input" in rows[a] and "input" in rows[b]}
    for k, v in correlations.items():
        print(f"  input correlation, {k}: {v:.3f}")
    cache = PreprocessCache(default_cache_dir())
    skull = skull_effect(grid, {n: registration_dir(cache.root, cache.content_hash(
        MRICRON / f"{n}.nii.gz"), Registration(), grid) for n in ("ch2", "ch2bet")})
    for k, v in skull.items():
        print(f"  ch2 / ch2bet brain median, {k}: MNI files {v['mni']:.3f}, registered "
              f"{v['registered']:.3f}")
    p = [rows[r]["p_ad"] for r in ("ch2 --register", "ch2bet --resample", "ch2bet --register")]
    result = {"run": str(args.run.resolve()),
              "grid": grid.describe(), "load_average_before": [round(v, 2) for v in
                                                               load_before],
              "load_average_after": [round(v, 2) for v in os.getloadavg()],
              "cpus": len(os.sched_getaffinity(0)),
              "routes": rows, "input_correlations": correlations,
              "skull_on_over_off_brain_median": skull,
              "p_ad_spread_ch2_register_ch2bet_resample_ch2bet_register": round(
                  max(p) - min(p), 4)}
    print(f"wrote {write_result('new_patient', result)}")


if __name__ == "__main__":
    main()
