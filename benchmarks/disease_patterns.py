"""The method benchmark on the disease patterns the recommendation was never chosen on.

For each shipped test pattern (``frontal``, ``right-temporal``; docs/simulation.md) this
simulates a cohort of the demo's size, trains the paper's CNN with the demo's settings
(``right-temporal`` without left-right flips, which would erase a one-sided disease),
explains the test scans with the demo's methods, analyses them against the simulated
truth and writes ``benchmarks/results/pattern_<name>.md`` and ``.json`` (through
``benchmarks/method_table.py``).

The recommendations under test are fixed before these cohorts exist: the catalog default
(``lrp-ref@knn-restore``) and the method the default cohort's planted validation controls
chose (``lrp-ref@pca-restore``, explained here besides the demo's methods). The tables
show whether they still beat ``edges``, ``noise`` and their own reference's difference
on another pattern.

Usage::

    python benchmarks/disease_patterns.py OUT [--patterns frontal right-temporal] [--seed 0]

Each stage resumes: a finished cohort, model, explanation or analysis is kept.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: Patterns whose disease is on one side: trained without flips.
ONE_SIDED = ("right-temporal",)
#: Explained besides the demo's methods.
EXTRA_METHODS = ("lrp-ref@pca-restore", "diff@pca-restore")


def run_pattern(out: Path, name: str, seed: int) -> Path:
    from brainlrp.analysis import analyze
    from brainlrp.demo import DemoSettings
    from brainlrp.explain.stage import explain_run
    from brainlrp.run import RunDir
    from brainlrp.simulate import simulate
    from brainlrp.training import TrainConfig, train

    s = DemoSettings()
    cohort, run = out / name / "cohort", RunDir(out / name / "run")
    started = time.perf_counter()
    simulate(cohort, n_subjects=s.n_subjects, resolution=s.resolution, seed=seed,
             disease_model=name, progress=False)
    print(f"{name}: simulated ({time.perf_counter() - started:.0f} s)", flush=True)
    if not run.card.is_file():
        config = TrainConfig(arch=s.arch, resolution=s.resolution, epochs=s.epochs,
                             early_stopping_start=s.early_stopping_start,
                             patience=s.patience, lr=s.lr, test=s.test, val=s.val,
                             seed=seed, flip=name not in ONE_SIDED)
        metrics = train(cohort, run.root, config, progress=False).metrics["test"]
        print(f"{name}: trained, test balanced accuracy {metrics['balanced_accuracy']:.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    # The demo's methods, and the reference the default cohort's planted validation
    # controls chose (lrp-ref@pca-restore) with its own difference floor.
    methods = (*s.methods, *EXTRA_METHODS)
    explained = explain_run(run.root, methods=methods, split="test", batch_size=4,
                            progress=False, method_options=s.method_options())
    print(f"{name}: explained ({time.perf_counter() - started:.0f} s)", flush=True)
    analyze(run.root, methods=list(explained.methods), progress=False,
            faithfulness_subjects=s.faithfulness_subjects)
    print(f"{name}: analysed ({time.perf_counter() - started:.0f} s)", flush=True)
    return run.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--patterns", nargs="+", default=["frontal", "right-temporal"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.patterns:
        run = run_pattern(args.out, name, args.seed)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "method_table.py"), str(run),
                        "--name", f"pattern_{name.replace('-', '_')}"], check=True)


if __name__ == "__main__":
    main()
