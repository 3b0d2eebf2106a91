"""How long ``brainlrp demo`` takes, as a new user runs it.

Runs ``python -m brainlrp demo --out OUT`` (the README's first command; ``--quick`` passes
through) in a fresh folder as a separate process, and writes the demo's own stage times
(``run.json``'s ``demo`` record), the whole command's wall time, the machine's CPU count
and its load average before and after, the methods explained, the test metrics and the
method the report recommends to ``benchmarks/results/demo_time.json``, with a README
table in ``demo_time.md``.

Usage::

    python benchmarks/demo_time.py OUT [--quick] [--name demo_time]

OUT must not exist yet (a finished demo resumes in seconds, which is not what this
measures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _results import ROOT, write_result

STAGES = ("simulate", "train", "explain", "analyze", "report")


def run_demo(out: Path, quick: bool) -> tuple[float, str]:
    """Run the demo as a user would; its wall time and its last output line."""
    cmd = [sys.executable, "-m", "brainlrp", "demo", "--out", str(out),
           *(["--quick"] if quick else [])]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"demo failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout.strip().splitlines()[-1]


def markdown(record: dict) -> str:
    minutes = record["stage_minutes"]
    m = record["test_metrics"]
    head = "| " + " | ".join(["machine", *STAGES, "total (wall)", "test balanced accuracy",
                             "recommended"]) + " |"
    rule = "| --- | " + " | ".join(["---:"] * (len(STAGES) + 2)) + " | --- |"
    load = "/".join(f"{x:.1f}" for x in record["load_average_before"])
    row = [f"{record['cpus']} cores, load {load} before",
           *(f"{minutes[s]:.1f} min" for s in STAGES), f"{record['wall_minutes']:.1f} min",
           f"{m['balanced_accuracy']:.3f}", f"`{record['recommended']}`"]
    return "\n".join([head, rule, "| " + " | ".join(row) + " |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default="demo_time")
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists: give a new folder (a finished demo only resumes)")
    before = os.getloadavg()
    wall, last_line = run_demo(args.out, args.quick)
    after = os.getloadavg()

    import brainlrp as bl

    run = bl.Run(args.out / "run")
    stages = json.loads((args.out / "run" / "run.json").read_text())["stages"]
    seconds = stages["demo"]["seconds"]
    record = {
        "command": f"brainlrp demo --out OUT{' --quick' if args.quick else ''}",
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in before],
        "load_average_after": [round(x, 2) for x in after],
        "wall_minutes": round(wall / 60, 2),
        "stage_minutes": {s: round(seconds[s] / 60, 2) for s in STAGES},
        "methods": stages["explain"]["methods"],
        "n_test_scans": stages["explain"]["n_scans"],
        "test_metrics": run.metrics()["test"],
        "recommended": run.recommended_method,
        "last_line": last_line,
    }
    write_result(args.name, record, markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
