"""``brainlrp demo``: the whole pipeline on the built-in synthetic cohort, one command.

simulate -> train -> explain -> analyze -> report, each stage resumable, so running the
same command again after an interruption continues where it stopped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from brainlrp import catalog
from brainlrp.analysis.stage import AnalysisConfig
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; ``quick`` trades cohort size and epochs for time.

    The stages after training run with the options their commands default to (the
    methods aside, which explain records), so that ``brainlrp explain|analyze|report
    RUN`` after the demo find their work done; ``faithfulness_subjects`` other than
    analyze's default makes ``brainlrp analyze RUN`` recompute.
    """

    n_subjects: int = 200
    resolution: float = 2.0
    arch: str = "paper"
    test: int = 15
    val: int = 12
    epochs: int = 15
    early_stopping_start: int = 8
    patience: int = 3
    # 5x the paper's 1e-4: on the simulated cohort it reaches the same test accuracy in
    # about a third of the epochs, which is what makes a 15-minute CPU demo possible.
    lr: float = 5e-4
    ig_steps: int = 8
    faithfulness_subjects: int = AnalysisConfig.faithfulness_subjects
    methods: tuple[str, ...] = tuple(catalog.method_set("demo"))

    def method_options(self) -> dict[str, dict]:
        """``ig_steps`` for each method that integrates along a path (takes ``steps``)."""
        from brainlrp.explain import get_method

        return {m: {"steps": self.ig_steps} for m in self.methods
                if "steps" in get_method(m).options}

    @classmethod
    def quick(cls) -> DemoSettings:
        """A smoke run of a few minutes: small cohort, few epochs, fewer methods."""
        return cls(n_subjects=120, test=6, val=6, epochs=8, early_stopping_start=8,
                   patience=3, ig_steps=4,
                   methods=tuple(catalog.method_set("quick-demo")))


@dataclass
class DemoResult:
    """Paths and per-stage timings of a demo run."""

    out: Path
    cohort: Path
    run: Path
    report: Path
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def demo(out: str | os.PathLike = "brainlrp-demo", quick: bool = False, seed: int = 0,
         jobs: int | None = None, progress: bool = True, say=print,
         settings: DemoSettings | None = None) -> DemoResult:
    """Run the whole pipeline on a simulated cohort into ``out``.

    Parameters
    ----------
    out : path-like
        Folder for ``cohort/`` and ``run/``.
    quick : bool
        Smaller cohort and fewer epochs (a few minutes on 2 CPU cores).
    seed : int
    jobs : int, optional
        Processes for simulation and preprocessing (default: all CPUs).
    progress : bool
    say : callable
        Receives one line per stage.
    settings : DemoSettings, optional
        Overrides the sizes chosen by ``quick`` (e.g. a tiny grid in tests).
    """
    from brainlrp.analysis import analyze
    from brainlrp.explain.stage import explain_run
    from brainlrp.report import report
    from brainlrp.simulate import simulate
    from brainlrp.training import TrainConfig, train

    if settings is None:
        settings = DemoSettings.quick() if quick else DemoSettings()
    if jobs is not None and jobs < 1:
        raise BrainLRPError(f"--jobs must be at least 1, got {jobs}", "use 1 or more")
    out = Path(out)
    cohort, run = out / "cohort", RunDir(out / "run")
    jobs = jobs or os.cpu_count() or 1
    timings: dict[str, float] = {}

    def stage(name: str, what: str):
        say(f"[{len(timings) + 1}/5] {name}: {what}")
        return time.perf_counter()

    def done(name: str, started: float) -> None:
        timings[name] = time.perf_counter() - started
        say(f"  {name} took {_duration(timings[name])}")

    start = stage("simulate", f"{settings.n_subjects} subjects at {settings.resolution:g} mm")
    simulated = simulate(cohort, n_subjects=settings.n_subjects,
                         resolution=settings.resolution, seed=seed, n_jobs=jobs,
                         progress=progress)
    done("simulate", start)
    worked = simulated.n_written > 0

    start = stage("train", f"the paper's CNN, up to {settings.epochs} epochs")
    if run.card.is_file():
        say("  already trained; keeping the model")
        from brainlrp._io import read_json

        metrics = read_json(run.metrics)
    else:
        config = TrainConfig(arch=settings.arch, resolution=settings.resolution,
                             epochs=settings.epochs,
                             early_stopping_start=settings.early_stopping_start,
                             patience=settings.patience, lr=settings.lr, test=settings.test,
                             val=settings.val, seed=seed)
        metrics = train(cohort, run, config, jobs=jobs, progress=progress).metrics
        worked = True
    done("train", start)
    m = metrics["test"]
    say(f"  test balanced accuracy {m['balanced_accuracy']:.3f} (sensitivity "
        f"{m['sensitivity']:.3f}, specificity {m['specificity']:.3f})")

    start = stage("explain", ", ".join(settings.methods))
    explained = explain_run(run, methods=settings.methods, split="test", batch_size=4,
                            progress=progress,
                            method_options=settings.method_options())
    done("explain", start)
    worked |= explained.n_written > 0

    start = stage("analyze", "regions, groups, fingerprints, ground truth, faithfulness")
    analysed = analyze(run, methods=list(explained.methods), progress=progress,
                       faithfulness_subjects=settings.faithfulness_subjects)
    done("analyze", start)
    worked |= not analysed.skipped

    start = stage("report", "figures and the HTML page")
    result = report(run, progress=progress)
    done("report", start)
    worked |= not result.skipped
    if not worked:  # a finished demo run again: nothing changed, nothing is written
        say("  everything was up to date; no file changed")
        return DemoResult(out=out, cohort=cohort, run=run.root, report=Path(result.index),
                          timings=timings, metrics=metrics)
    run.record("demo", {"quick": quick, "seed": seed, "settings": settings.__dict__ | {
        "methods": list(settings.methods)}, "seconds": {k: round(v, 1)
                                                        for k, v in timings.items()}})
    return DemoResult(out=out, cohort=cohort, run=run.root, report=Path(result.index),
                      timings=timings, metrics=metrics)
