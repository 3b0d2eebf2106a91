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
def info(
    atlas: Annotated[str | None, typer.Option(
        "--atlas", help="Also list this atlas's labels (index, name, hemisphere, area).")] = None,
) -> None:
    """Version, torch and GPU, the built-in atlases and the template grids."""
    import torch

    from brainlrp import __version__
    from brainlrp.atlas import atlas_summary, load_atlas
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
    if atlas:
        table = load_atlas(atlas).labels
        _say(f"labels of {atlas} ({len(table)} labels, {table['area'].nunique()} areas):")
        for row in table.itertuples():
            _say(f"  {row.index:>5}  {row.name:<60} {row.hemisphere:<8} {row.area}")


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
def analyze(
    run: Annotated[Path, typer.Argument(help="Run directory with predictions.tsv and "
                                             "heatmaps/.")],
    atlas: Annotated[str, typer.Option(help="Built-in atlas name or a NIfTI label image "
                                            "(with NAME.tsv next to it).")
                     ] = "neuromorphometrics",
    methods: Annotated[list[str] | None, typer.Option(
        "--methods", "-m", help="Methods to analyse (repeat or comma-separate); default: "
                                "every method with heatmaps.")] = None,
    cohort: Annotated[Path | None, typer.Option(
        help="Cohort folder or table (covariates, ground truth); default: the one in "
             "run.json.")] = None,
    relevance: Annotated[str, typer.Option(
        help="auto (per method: positive for LRP/IG/occlusion, absolute for "
             "GB/gradient/SmoothGrad), positive, signed or absolute.")] = "auto",
    threshold: Annotated[float, typer.Option(
        help="Tissue loss above which a voxel counts as truly atrophied.")] = 0.05,
    top_k: Annotated[int, typer.Option(help="Areas compared in overlaps and recall.")] = 10,
    faithfulness: Annotated[bool, typer.Option(
        help="Region perturbation check (needs the model).")] = True,
    sanity: Annotated[bool, typer.Option(
        help="Cascading model randomisation check (needs the model).")] = True,
    faithfulness_subjects: Annotated[int, typer.Option(
        help="AD test scans in the perturbation check.")] = 4,
    faithfulness_steps: Annotated[int, typer.Option(help="Areas replaced one by one.")] = 20,
    sanity_subjects: Annotated[int, typer.Option(
        help="AD test scans in the randomisation check (its result depends on the "
             "model and method far more than on the scan).")] = 1,
    batch_size: Annotated[int, typer.Option(help="Heatmaps read at a time.")] = 8,
    seed: SeedOpt = 0,
) -> None:
    """Relevance per atlas region, subject and group, plus the paper's statistics."""
    from brainlrp.analysis import analyze as run_analyze

    result = run_analyze(run, atlas=atlas, methods=methods, cohort=cohort, relevance=relevance,
                         threshold=threshold, top_k=top_k, faithfulness=faithfulness,
                         sanity=sanity, faithfulness_subjects=faithfulness_subjects,
                         faithfulness_steps=faithfulness_steps, sanity_subjects=sanity_subjects,
                         batch_size=batch_size, seed=seed)
    for notice in result.notices:
        _say(f"note: {notice}")

    def fmt(value) -> str:
        return "-" if value is None else f"{value:.3g}"

    for method in result.methods:
        s = result.summary["methods"][method]
        _say(f"  {method}: {s['n_scans']} scans, HC/AD relevance {fmt(s['hc_ad_ratio'])}, "
             f"fingerprint similarity {fmt(s['fingerprint_mean_similarity'])}, hippocampus "
             f"r {fmt(s['hippocampus_r'])} (p {fmt(s['hippocampus_p'])}), AOPC gain "
             f"{fmt(s['aopc_difference'])}")
    _say(f"analysed {len(result.methods)} method(s) in {result.seconds:.1f} s; wrote "
         f"{result.run / 'analysis'}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
