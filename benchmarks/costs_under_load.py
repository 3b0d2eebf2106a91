"""Does the method benchmark's cost column hold on a busy machine?

``analyze`` times every method back to back on one AD test scan, on one thread's CPU
time (:mod:`brainlrp.analysis.costs`), and writes the ratios to the input gradient into
``analysis/method_benchmark.tsv``. This script measures those ratios on a run the way
``analyze`` does, first with the machine as it is and then with ``K`` extra processes
that keep a core busy each (``while True: pass``), beside ``benchmarks/lrp_speed.py`` in
the same conditions (the paper's network at the run's grid, random weights; wall time,
1 and 2 threads). Results go to ``benchmarks/results/costs_under_load.json`` with the
load average seen before each measurement.

Usage::

    python benchmarks/costs_under_load.py RUN [--busy 0 2] [--methods lrp-b0 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _results import ROOT, write_result

BUSY = "while True: pass"


def analyze_costs(run: Path, methods: list[str], repeats: int) -> dict[str, float]:
    """The ratios ``analyze`` would write, on the run's first AD test scan."""
    import numpy as np
    import pandas as pd
    import torch

    from brainlrp.analysis.costs import measure_costs
    from brainlrp.analysis.stage import _RunExplainer
    from brainlrp.data import load_inputs
    from brainlrp.run import RunDir
    from brainlrp.training import load_model

    rd = RunDir.existing(run)
    model, card = load_model(rd)
    pred = pd.read_csv(rd.predictions, sep="\t", dtype={"scan_id": str})
    ids = pred[(pred["split"] == "test") & (pred["label"] == 1)]["scan_id"].tolist()[:1]
    x = torch.from_numpy(np.asarray(load_inputs(rd, ids, card.prep), dtype=np.float32))
    explainer = _RunExplainer(rd, card.target_class, card.prep, ids)
    costs = measure_costs(lambda m: explainer(model, x, m), methods, repeats=repeats)
    return {m: round(costs.ratio[m], 3) for m in methods}


def lrp_speed(grid: tuple[int, ...], threads: int) -> float:
    """``lrp-b0 / gradient`` from benchmarks/lrp_speed.py."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lrp_speed.py"),
                          "--grid", *map(str, grid), "--batch", "1", "--threads", str(threads),
                          "--no-zennit", "--no-memory", "--repeats", "5"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"lrp-b0 / gradient = ([0-9.]+)", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--methods", nargs="+", default=["lrp-b0", "lrp-ref@knn-restore"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from brainlrp.card import read_card

    grid = read_card(args.run).grid.shape
    rows = []
    for busy in args.busy:
        procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
        try:
            time.sleep(3 if busy else 0)
            load = [round(v, 2) for v in os.getloadavg()]
            row = {"busy_processes": busy, "load_average_before": load,
                   "analyze": analyze_costs(args.run, args.methods, args.repeats),
                   "lrp_speed_lrp_b0_1_thread": lrp_speed(grid, 1),
                   "lrp_speed_lrp_b0_2_threads": lrp_speed(grid, 2)}
        finally:
            for p in procs:
                p.kill()
                p.wait()
        rows.append(row)
        print(json.dumps(row), flush=True)
    written = write_result("costs_under_load", {"run": str(args.run.resolve()),
                                                "cpus": len(os.sched_getaffinity(0)),
                                                "repeats": args.repeats, "rows": rows})
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
