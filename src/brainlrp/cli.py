"""The ``brainlrp`` command line: thin wrappers that parse, call a stage, print.

A :class:`~brainlrp.errors.BrainLRPError` becomes one line on stderr and exit code 2.
Heavy imports happen inside the commands so ``brainlrp --help`` stays fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from brainlrp.errors import BrainLRPError

app = typer.Typer(
    name="brainlrp",
    help="Train a 3D CNN to tell Alzheimer's disease from controls on T1 MRI and explain "
         "every decision with layer-wise relevance propagation (Böhle et al. 2019).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def cli_errors(func):
    """Turn input errors into one line and exit code 2; never a traceback for them."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BrainLRPError as exc:
            _fail(exc.one_line())
        except KeyboardInterrupt:
            typer.echo("interrupted; run the same command again to resume", err=True)
            raise typer.Exit(code=130) from None
        except MemoryError:
            _fail("out of memory - lower --batch-size or use --resolution 2")
        except OSError as exc:
            if getattr(exc, "errno", None) == 28:
                _fail(f"no space left on device ({exc.filename or ''}) - free disk space "
                      "and run the same command again to resume")
            raise

    return wrapper


def _say(text: str) -> None:
    typer.echo(text)


ResolutionOpt = Annotated[float, typer.Option(
    "--resolution", "-r", help="Grid resolution in mm (1 = the paper's 193x229x193; "
                               "2 = 97x115x97).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Preprocessing cache (default $BRAINLRP_CACHE_DIR or "
                        "~/.cache/brainlrp).")]


@app.command()
@cli_errors
def info() -> None:
    """Version, torch and GPU, the built-in atlases and the template grids."""
    import torch

    from brainlrp import __version__
    from brainlrp.atlas import atlas_summary
    from brainlrp.data.grid import TEMPLATE_NAME, Grid, template_path

    _say(f"brainlrp {__version__}")
    gpu = (f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}"
           if torch.cuda.is_available() else "no GPU visible (CPU only)")
    _say(f"torch {torch.__version__}; {gpu}")
    _say(f"template: {TEMPLATE_NAME} ({template_path().name})")
    for r in (1, 2):
        g = Grid.from_resolution(r)
        origin = ", ".join(f"{v:g}" for v in g.affine_array[:3, 3])
        _say(f"  grid at {r} mm: {' x '.join(map(str, g.shape))} voxels, origin ({origin}) mm")
    _say("atlases (name: labels - description):")
    for a in atlas_summary():
        _say(f"  {a['name']}: {a['n_labels']} labels - {a['description']}")


@app.command()
@cli_errors
def prepare(
    cohort: Annotated[Path, typer.Argument(help="BIDS-like folder with participants.tsv, or "
                                                "a CSV/TSV with participant_id, diagnosis, "
                                                "path.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")],
    resolution: ResolutionOpt = 2.0,
    test: Annotated[float, typer.Option(help="Test subjects per class, or a fraction.")] = 30,
    val: Annotated[float, typer.Option(help="Validation subjects per class, or a "
                                            "fraction.")] = 18,
    seed: SeedOpt = 0,
    cache_dir: CacheOpt = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Preprocessing processes.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing split.")] = False,
    allow_external_paths: Annotated[bool, typer.Option(
        help="Accept scan paths outside the cohort folder.")] = False,
) -> None:
    """Validate a cohort, preprocess every scan into the cache, write splits.tsv."""
    from brainlrp.data.prepare import prepare as run_prepare

    result = run_prepare(cohort, out, resolution=resolution, test=test, val=val, seed=seed,
                         cache_dir=cache_dir, n_jobs=jobs, overwrite=overwrite,
                         allow_external_paths=allow_external_paths)
    for notice in result.notices:
        _say(f"note: {notice}")
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    _say(f"{result.n_subjects} subjects ({counts}), {result.n_scans} scans preprocessed in "
         f"{result.seconds:.1f} s")
    for split, c in result.split_counts.items():
        _say(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    _say(f"wrote {result.run / 'splits.tsv'}")


@app.command()
@cli_errors
def simulate(
    out: Annotated[Path, typer.Argument(help="Cohort folder to write (BIDS-like).")],
    n_subjects: Annotated[int, typer.Option("--n-subjects", "-n", help="Number of "
                                            "subjects.")] = 200,
    resolution: ResolutionOpt = 2.0,
    seed: SeedOpt = 0,
    disease_model: Annotated[str, typer.Option(
        "--disease-model", help="A shipped disease model's name (default) or a JSON file "
                                "(see docs/simulation.md).")] = "default",
    ad_fraction: Annotated[float, typer.Option(help="Fraction of AD subjects.")] = 0.5,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes "
                                             "(default: all CPUs).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Re-simulate subjects whose files "
                                                 "exist.")] = False,
) -> None:
    """Write a synthetic cohort of T1 scans with known, heterogeneous atrophy."""
    from brainlrp.simulate import simulate as run_simulate

    result = run_simulate(out, n_subjects=n_subjects, resolution=resolution, seed=seed,
                          disease_model=disease_model, ad_fraction=ad_fraction,
                          n_jobs=jobs, overwrite=overwrite)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    kept = f", {result.n_skipped} kept from an earlier run" if result.n_skipped else ""
    _say(f"{len(result.participants)} subjects ({counts}) on the {result.grid.describe()} "
         f"grid, disease model '{result.disease_model}': {result.n_written} simulated in "
         f"{result.seconds:.1f} s with {result.n_jobs} process(es){kept}")
    _say(f"wrote {result.root / 'participants.tsv'} and "
         f"{result.root / 'derivatives' / 'ground_truth'}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
