"""Throughput and peak memory of ``explain`` and ``analyze`` as the cohort grows.

Simulates one cohort of ``--base`` subjects at 2 mm and trains a model on it (a
couple of epochs: the model's quality does not matter here), then builds cohorts
of each ``--sizes`` by symlinking the base subjects under new participant ids (T1
scans and ground-truth files alike, so every subject costs the same work) with a
run directory each: the trained model, and the base predictions repeated under
the new ids. For every size it runs, as separate processes,

    brainlrp explain RUN --split all --methods lrp-b0
    brainlrp analyze RUN --no-faithfulness --no-sanity

(the model checks work on a fixed sample, not on every subject) and reports
wall time, subjects per second and the peak resident memory of each process
(``ru_maxrss`` from ``wait4``, which includes nothing of the parent).

Usage::

    python benchmarks/cohort_scale.py --workdir /tmp/scale --sizes 100 400 1600
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

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from brainlrp.simulate import ground_truth as gt  # noqa: E402


def brainlrp(*args) -> list[str]:
    return [sys.executable, "-m", "brainlrp", *map(str, args)]


def run_measured(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; wall seconds and the child's peak resident memory in MiB."""
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONWARNINGS="ignore"))
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd[2:4])} failed; see {log}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def base_run(work: Path, n_base: int, seed: int) -> tuple[Path, Path]:
    cohort, run = work / "base-cohort", work / "base-run"
    if not (cohort / "participants.tsv").is_file():
        subprocess.run(brainlrp("simulate", cohort, "--n-subjects", n_base, "--resolution", 2,
                                "--seed", seed), check=True)
    if not (run / "predictions.tsv").is_file():
        subprocess.run(brainlrp("train", cohort, "--out", run, "--resolution", 2,
                                "--epochs", 2, "--test", 0.3, "--val", 0.2, "--lr", 5e-4,
                                "--quiet"), check=True)
    return cohort, run


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(src.resolve(), dst)


def scaled_copy(cohort: Path, run: Path, size: int, work: Path) -> Path:
    """A cohort of ``size`` subjects (symlinks to the base ones) and a run for it."""
    base = pd.read_csv(cohort / "participants.tsv", sep="\t", dtype={"participant_id": str})
    pred = pd.read_csv(run / "predictions.tsv", sep="\t",
                       dtype={"participant_id": str, "scan_id": str})
    pred_of = {row["participant_id"]: row for row in pred.to_dict("records")}
    out_cohort, out_run = work / f"cohort-{size}", work / f"run-{size}"
    shutil.rmtree(out_run, ignore_errors=True)
    width = max(5, len(str(size)))
    rows, pred_rows = [], []
    for k in range(size):
        src = base.iloc[k % len(base)]
        pid = f"sub-{k + 1:0{width}d}"
        old, new = gt.subject_paths(cohort, src["participant_id"]), gt.subject_paths(out_cohort,
                                                                                     pid)
        for key in old:
            _link(old[key], new[key])
        rows.append(src.to_dict() | {"participant_id": pid})
        pred_rows.append(pred_of[src["participant_id"]] | {"participant_id": pid, "scan_id": pid})
    for name in ("dataset_description.json", "participants.json"):
        _link(cohort / name, out_cohort / name)
    truth = gt.folder(cohort)
    for path in truth.iterdir():
        if path.is_file():
            _link(path, gt.folder(out_cohort) / path.name)
    pd.DataFrame(rows).to_csv(out_cohort / "participants.tsv", sep="\t", index=False)

    out_run.mkdir(parents=True)
    shutil.copytree(run / "model", out_run / "model",
                    ignore=shutil.ignore_patterns("lightning"))
    pd.DataFrame(pred_rows).to_csv(out_run / "predictions.tsv", sep="\t", index=False)
    record = json.loads((run / "run.json").read_text())
    record["cohort"] = record.get("cohort", {}) | {"source": str(out_cohort.resolve())}
    (out_run / "run.json").write_text(json.dumps(record, indent=2))
    return out_run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/brainlrp-scale"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    parser.add_argument("--base", type=int, default=100, help="distinct simulated subjects")
    parser.add_argument("--methods", default="lrp-b0")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--analyze-only", action="store_true",
                        help="time analyze again on the runs an earlier call explained")
    args = parser.parse_args(argv)

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BRAINLRP_CACHE_DIR", str(work / "cache"))
    cohort, run = base_run(work, args.base, args.seed)
    results = []
    for size in args.sizes:
        if args.analyze_only:
            target = work / f"run-{size}"
            explain = {"seconds": float("nan"), "peak_rss_mib": float("nan")}
        else:
            target = scaled_copy(cohort, run, size, work)
            explain = run_measured(brainlrp("explain", target, "--split", "all", "--methods",
                                            args.methods, "--batch-size", args.batch_size,
                                            "--quiet"), work / f"explain-{size}.log")
        analyze = run_measured(brainlrp("analyze", target, "--no-faithfulness", "--no-sanity"),
                               work / f"analyze-{size}.log")
        row = {"subjects": size,
               "explain_s": explain["seconds"], "explain_subj_per_s": size / explain["seconds"],
               "explain_peak_mib": explain["peak_rss_mib"],
               "analyze_s": analyze["seconds"], "analyze_subj_per_s": size / analyze["seconds"],
               "analyze_peak_mib": analyze["peak_rss_mib"]}
        results.append(row)
        print(json.dumps({k: round(v, 2) for k, v in row.items()}), flush=True)

    table = pd.DataFrame(results)
    # Fixed costs (imports, model, atlas) weigh on small cohorts; the marginal rate
    # between consecutive sizes is the per-subject throughput itself.
    for stage in ("explain", "analyze"):
        table[f"{stage}_marginal_subj_per_s"] = (table["subjects"].diff()
                                                 / table[f"{stage}_s"].diff())
    print()
    print(f"methods {args.methods}, batch {args.batch_size}, 2 mm grid, "
          f"{os.cpu_count()} CPUs, torch threads default")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for col in ("explain_subj_per_s", "explain_marginal_subj_per_s", "explain_peak_mib",
                "analyze_subj_per_s", "analyze_marginal_subj_per_s", "analyze_peak_mib"):
        lo, hi = table[col].min(), table[col].max()
        print(f"{col}: max/min = {hi / lo:.3f}")
    if args.json:
        args.json.write_text(table.to_json(orient="records", indent=2))


if __name__ == "__main__":
    main()
