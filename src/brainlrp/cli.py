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

from brainlrp.configs import AnalysisConfig as _A
from brainlrp.configs import BenchmarkConfig as _B
from brainlrp.configs import ExplainConfig as _E
from brainlrp.configs import TrainConfig as _T
from brainlrp.errors import BrainLRPError

app = typer.Typer(
    name="brainlrp",
    help="Train a 3D CNN to tell Alzheimer's disease from controls on T1 MRI and explain "
         "every decision with layer-wise relevance propagation (Böhle et al. 2019).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    # Plain click help: the rich renderer labels every flag and --help itself "<bool>".
    rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from brainlrp import __version__

        typer.echo(f"brainlrp {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """Train a 3D CNN to tell Alzheimer's disease from controls on T1 MRI and explain every
    decision with layer-wise relevance propagation (Böhle et al. 2019)."""


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


def _methods_help() -> str:
    """explain's ``--methods`` help, from the catalog: no method name is typed here."""
    from brainlrp import catalog

    # Families with a reference are described by $references.
    plain = [e for e in catalog.family_examples() if catalog.reference_of(e) is None]
    reference_methods = [m for m in catalog.listed() if catalog.lookup(m).needs_reference]
    defaults = catalog.default_methods()
    example = next((m for m in defaults if catalog.reference_of(m) is not None),
                   catalog.with_reference(reference_methods[0], catalog.DEFAULT_REFERENCE))
    without = [m for m in defaults if catalog.reference_of(m) is None]
    return (f"Methods (repeat or comma-separate): {', '.join(catalog.listed())}; also "
            f"{', '.join(plain)}. A reference method ({', '.join(reference_methods)}) names "
            f"what it explains against as <method>@<reference>, e.g. {example}; "
            f"<reference> is $references. Bare, it takes --reference. Default: "
            f"{','.join(defaults)} (without training controls to build a reference from: "
            f"{','.join(without)}).")


def _reference_help() -> str:
    """explain's ``--reference`` help (the kinds are filled in when help is shown)."""
    from brainlrp import catalog

    reference_methods = [m for m in catalog.listed() if catalog.lookup(m).needs_reference]
    return (f"What a bare reference method ({', '.join(reference_methods)}) explains "
            f"against: $references; or a NIfTI file. Default {catalog.DEFAULT_REFERENCE}. "
            "Heatmaps go to heatmaps/<method>@<reference>/.")


def _references_text() -> str:
    """The built-in references, from brainlrp.data.reference (and the catalog's list of
    those only a simulated cohort has)."""
    from brainlrp import catalog
    from brainlrp.data.reference import BASE_KINDS, RESTORE

    controls = [k for k in BASE_KINDS if k not in catalog.TWIN_REFERENCES]
    simulated = [k for k in BASE_KINDS if k in catalog.TWIN_REFERENCES]
    text = f"{', '.join(controls)} (built from the training controls)"
    if simulated:
        text += f", {', '.join(simulated)} (simulated cohorts only)"
    return (f"{text}, or any of these with {RESTORE} (the scan with only its lost signal "
            "restored from that reference)")


class _CatalogHelpCommand(typer.core.TyperCommand):
    """A command whose option help names the built-in references (``$references``) or
    the shipped disease models (``$disease_models``).

    They are read from :mod:`brainlrp.data.reference` and :mod:`brainlrp.simulate.disease`
    when the help is shown: those modules import numpy and pandas, which every start of
    the command line (``brainlrp --version``, other commands' help) would otherwise pay
    for.
    """

    def format_help(self, ctx, formatter) -> None:
        from string import Template

        from brainlrp.simulate.disease import shipped_models

        fields = {"references": _references_text(),
                  "disease_models": ", ".join(sorted(shipped_models()))}
        for param in self.params:
            if getattr(param, "help", None):
                param.help = Template(param.help).safe_substitute(fields)
        super().format_help(ctx, formatter)


ArchCheckOpt = Annotated[str, typer.Option(
    "--arch", help="Architecture the grid is meant for: a --resolution too coarse for it is "
                   "refused here, not at train time (tiny takes very coarse grids).")]
_RESOLUTION_HELP = "Grid resolution in mm (1 = the paper's 193x229x193; 2 = 97x115x97)."
ResolutionOpt = Annotated[float, typer.Option("--resolution", "-r", help=_RESOLUTION_HELP)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", help="Preprocessing cache (default $BRAINLRP_CACHE_DIR or "
                        "~/.cache/brainlrp).")]
RegisterOpt = Annotated[bool, typer.Option(
    "--register", help="Scans are in native (scanner) space: N4, then register them to "
                       "the ICBM 2009c template with ANTsPy.")]
NormalisationOpt = Annotated[str, typer.Option(
    "--normalisation", help="How each masked scan is scaled to [0, 1]: minmax (the "
                            "paper's) or robust (min-max with the brain's brightest 0.5 % "
                            "clipped).")]
RegistrationOpt = Annotated[str | None, typer.Option(
    "--registration", help="Registration: affine (rigid + affine, default) or syn "
                           "(+ deformable); implies --register.")]


def parse_registration(register: bool, method: str | None):
    """``--register`` / ``--registration METHOD`` as a
    :class:`~brainlrp.data.register.Registration` (``--registration`` alone implies
    ``--register``; neither: ``None``)."""
    if method is None and not register:
        return None
    from brainlrp.data.register import Registration

    return Registration(method=(method or "affine").lower())


def _check_grid_fits(arch: str, resolution: float) -> None:
    """``--arch`` of prepare and simulate: a grid too coarse for the network is refused
    before any scan is read or written (``models`` knows architectures; ``data`` and
    ``simulate`` do not)."""
    from brainlrp.data.grid import Grid
    from brainlrp.models import check_grid_fits

    check_grid_fits(arch, Grid.from_resolution(resolution).shape)


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

    table = load_atlas(atlas).labels if atlas else None  # a bad name fails before any output
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
    if table is not None:
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
    resolution: ResolutionOpt = _T.resolution,
    test: Annotated[float, typer.Option(help="Test subjects per class, or a fraction.")] = _T.test,
    val: Annotated[float, typer.Option(help="Validation subjects per class, or a "
                                            "fraction.")] = _T.val,
    seed: SeedOpt = _T.seed,
    cache_dir: CacheOpt = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Preprocessing processes.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing split.")] = False,
    allow_external_paths: Annotated[bool, typer.Option(
        help="Accept scan paths outside the cohort folder.")] = False,
    arch: ArchCheckOpt = _T.arch,
    register: RegisterOpt = False,
    registration: RegistrationOpt = None,
    normalisation: NormalisationOpt = _T.normalisation,
) -> None:
    """Validate a cohort, preprocess every scan into the cache, write splits.tsv."""
    from brainlrp.data.prepare import prepare as run_prepare

    _check_grid_fits(arch, resolution)
    result = run_prepare(cohort, out, resolution=resolution, test=test, val=val, seed=seed,
                         cache_dir=cache_dir, n_jobs=jobs, overwrite=overwrite,
                         allow_external_paths=allow_external_paths,
                         registration=parse_registration(register, registration),
                         normalisation=normalisation)
    for notice in result.notices:
        _say(f"note: {notice}")
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    _say(f"{result.n_subjects} subjects ({counts}), {result.n_scans} scans preprocessed in "
         f"{result.seconds:.1f} s")
    for split, c in result.split_counts.items():
        _say(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    _say(f"wrote {result.run / 'splits.tsv'}")


ModelKwargsOpt = Annotated[str | None, typer.Option(
    "--model-kwargs", metavar="JSON",
    help='Architecture keyword arguments as a JSON object, e.g. \'{"conv1_t_stride": 2}\'.')]


def _parse_kwargs(text: str | None) -> dict:
    if not text:
        return {}
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BrainLRPError(f"--model-kwargs {text!r} is not JSON ({exc.msg})",
                            'write a JSON object, e.g. \'{"dropout": 0.2}\'') from None
    if not isinstance(value, dict):
        raise BrainLRPError(f"--model-kwargs {text!r} is not a JSON object",
                            'write a JSON object, e.g. \'{"dropout": 0.2}\'')
    return value


def _parse_shift(text: str) -> tuple[int, int] | None:
    if text.strip().lower() in ("none", "off", "0"):
        return None
    try:
        low, high = (int(v) for v in text.split(","))
    except ValueError:
        raise BrainLRPError(f"--shift {text!r} is not LOW,HIGH",
                            "write e.g. --shift=-2,3 or --shift none") from None
    return low, high


@app.command()
@cli_errors
def train(
    cohort: Annotated[Path, typer.Argument(help="BIDS-like folder or CSV/TSV table.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")],
    resolution: ResolutionOpt = _T.resolution,
    arch: Annotated[str, typer.Option(
        help="Architecture: paper, tiny, densenet121, resnet10, resnet18 (MONAI) or "
             "module:factory (docs/models.md).")] = _T.arch,
    model_kwargs: ModelKwargsOpt = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = _T.epochs,
    patience: Annotated[int, typer.Option(
        help="Early-stopping patience (val loss).")] = _T.patience,
    early_stopping_start: Annotated[int, typer.Option(
        help="Epochs ignored by early stopping.")] = _T.early_stopping_start,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = _T.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _T.lr,
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay.")] = _T.weight_decay,
    trials: Annotated[int, typer.Option(help="Repeats with different seeds.")] = _T.trials,
    test: Annotated[float, typer.Option(help="Test subjects per class, or a fraction.")] = _T.test,
    val: Annotated[float, typer.Option(help="Validation subjects per class, or a "
                                            "fraction.")] = _T.val,
    seed: SeedOpt = _T.seed,
    flip: Annotated[bool, typer.Option(help="Random left-right flip (use --no-flip when "
                                            "the effect is one-sided).")] = _T.flip,
    shift: Annotated[str, typer.Option(help="Random left-right shift range in voxels "
                                            "(LOW,HIGH or none).")] = ",".join(map(str, _T.shift)),
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator.")] = _T.accelerator,
    devices: Annotated[str, typer.Option(
        help="Lightning devices (e.g. 1, 4, auto).")] = str(_T.devices),
    strategy: Annotated[str, typer.Option(help="Lightning strategy (auto, ddp, ...).")
                        ] = _T.strategy,
    num_nodes: Annotated[int, typer.Option(help="Lightning nodes.")] = _T.num_nodes,
    precision: Annotated[str, typer.Option(help="Lightning precision.")] = _T.precision,
    workers: Annotated[int, typer.Option(help="DataLoader workers.")] = _T.workers,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Preprocessing processes.")] = 1,
    cache_dir: CacheOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Retrain into a finished run.")] = False,
    allow_external_paths: Annotated[bool, typer.Option(
        help="Accept scan paths outside the cohort folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No per-epoch lines.")] = False,
    register: RegisterOpt = False,
    registration: RegistrationOpt = None,
    normalisation: NormalisationOpt = _T.normalisation,
) -> None:
    """Train the paper's 3D CNN (AD vs HC) and evaluate it on the test split."""
    from brainlrp.training import TrainConfig
    from brainlrp.training import train as run_train

    reg = parse_registration(register, registration)

    config = TrainConfig(
        arch=arch, resolution=resolution, epochs=epochs, patience=patience,
        early_stopping_start=early_stopping_start, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, trials=trials, seed=seed, test=test, val=val, flip=flip,
        shift=_parse_shift(shift), accelerator=accelerator,
        devices=int(devices) if devices.isdigit() else devices, strategy=strategy,
        num_nodes=num_nodes, precision=precision, workers=workers,
        model_kwargs=_parse_kwargs(model_kwargs), registration=reg.method if reg else None,
        normalisation=normalisation)
    result = run_train(cohort, out, config, overwrite=overwrite, cache_dir=cache_dir,
                       jobs=jobs, allow_external_paths=allow_external_paths,
                       progress=not quiet)
    if not result.is_main:
        return
    for notice in result.notices:
        _say(f"note: {notice}")
    m = result.metrics["test"]
    _say(f"test: balanced accuracy {m['balanced_accuracy']:.3f}, sensitivity "
         f"{m['sensitivity']:.3f}, specificity {m['specificity']:.3f}, ROC AUC "
         f"{m['roc_auc']:.3f} (n = {m['n']})")
    if "trials_summary" in result.metrics:
        s = result.metrics["trials_summary"]["balanced_accuracy"]
        _say(f"{len(result.trials)} trials: balanced accuracy {s['mean']:.3f} +- {s['sd']:.3f}"
             f"; kept trial {result.selected_trial} (best validation)")
    _say(f"trained in {result.seconds / 60:.1f} min; model in {result.run / 'model'}")


@app.command("import-model")
@cli_errors
def import_model(
    cohort: Annotated[Path, typer.Argument(help="BIDS-like folder or CSV/TSV table: every "
                                                "scan is preprocessed and predicted.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to make.")],
    arch: Annotated[str | None, typer.Option(
        help="A registered architecture (paper, tiny, densenet121, resnet10, resnet18) or "
             "module:factory, factory(input_shape, **kwargs) -> nn.Module; the module is "
             "imported (it runs code) now and whenever the run's model is loaded.")] = None,
    weights: Annotated[Path | None, typer.Option(
        help="State dict saved with torch.save (raw or under 'state_dict'); loaded "
             "weights-only.")] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="A MONAI bundle folder instead of --arch and --weights: configs/metadata.json "
             "(network_data_format), configs/inference.json or .yaml (network_def), "
             "models/model.pt. Building network_def runs its code (_target_ imports, $ "
             "expressions), now and whenever the run's model is loaded.")] = None,
    maps: Annotated[Path | None, typer.Option(
        help="A ClinicaDL MAPS folder instead of --arch and --weights: maps.json, "
             "split-K/best-METRIC/model.pth.tar; its scans are prepared as ClinicaDL's were "
             "(t1-linear crop, MinMax), its training groups become the train/val split. "
             "ClinicaDL's own networks need ClinicaDL installed (docs/models.md).")] = None,
    split: Annotated[int | None, typer.Option(
        "--split", help="With --maps: the split K (default 0, or the only one).")] = None,
    selection_metric: Annotated[str | None, typer.Option(
        help="With --maps: the best-METRIC model (default maps.json's first selection "
             "metric, or the only one).")] = None,
    classes: Annotated[str | None, typer.Option(
        help="The model's outputs in order: HC,AD (or CN,AD) or AD,HC. Default HC,AD; "
             "with --bundle, its metadata's channel_def.")] = None,
    resolution: Annotated[float | None, typer.Option(
        "--resolution", "-r", help=f"{_RESOLUTION_HELP} Default 2; a MAPS brings its own.")
    ] = None,
    model_kwargs: ModelKwargsOpt = None,
    splits: Annotated[Path | None, typer.Option(
        help="splits.tsv (participant_id, split) marking the scans the model was trained "
             "and validated on; default: every scan is a test scan.")] = None,
    batch_size: Annotated[int, typer.Option(help="Scans per forward pass.")] = 4,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Preprocessing processes.")] = 1,
    cache_dir: CacheOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a model in --out.")] = False,
    allow_external_paths: Annotated[bool, typer.Option(
        help="Accept scan paths outside the cohort folder.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress lines.")] = False,
    normalisation: NormalisationOpt = "minmax",
) -> None:
    """Make a run from a model trained elsewhere, ready for explain, analyze and report."""
    from brainlrp.training import import_model as run_import
    from brainlrp.training.bundle import import_bundle

    common = dict(resolution=2.0 if resolution is None else resolution, splits=splits,
                  batch_size=batch_size, overwrite=overwrite, cache_dir=cache_dir, jobs=jobs,
                  allow_external_paths=allow_external_paths, progress=not quiet,
                  normalisation=normalisation)
    given = [flag for flag, value in (("--arch", arch), ("--weights", weights),
                                      ("--model-kwargs", model_kwargs)) if value is not None]
    if maps is not None or split is not None or selection_metric is not None:
        result = _import_maps(cohort, out, maps, split, selection_metric, classes,
                              [*given, *(["--bundle"] if bundle is not None else []),
                               *(["--resolution"] if resolution is not None else [])],
                              model_kwargs, common)
    elif bundle is not None and given:
        raise BrainLRPError(f"--bundle brings its own network and weights: {', '.join(given)}"
                            " cannot go with it",
                            "give either --bundle FOLDER or --arch NAME --weights FILE")
    elif bundle is not None:
        result = import_bundle(cohort, out, bundle, classes=classes, **common)
    elif arch is None or weights is None:
        raise BrainLRPError("import-model needs the model: --arch NAME and --weights FILE, "
                            "or --bundle FOLDER, or --maps FOLDER",
                            "see `brainlrp import-model --help`")
    else:
        result = run_import(cohort, out, arch, weights, classes=classes or "HC,AD",
                            model_kwargs=_parse_kwargs(model_kwargs), **common)
    _say_imported(result)


def _say_imported(result) -> None:
    """What import-model made: notices, the network, its test scores, the next step."""
    for notice in result.notices:
        _say(f"note: {notice}")
    _say(f"{result.architecture} ({result.n_parameters:,} parameters), classes "
         f"{','.join(result.classes)} (AD = output {result.target_class}): "
         f"{result.n_scans} scans predicted")
    m = result.metrics["test"]
    _say(f"test: balanced accuracy {m['balanced_accuracy']:.3f}, sensitivity "
         f"{m['sensitivity']:.3f}, specificity {m['specificity']:.3f}, ROC AUC "
         f"{m['roc_auc']:.3f} (n = {m['n']})")
    _say(f"model in {result.run / 'model'}; next: brainlrp explain {result.run}")


def _import_maps(cohort, out, maps, split, selection_metric, classes, given, model_kwargs,
                 common):
    """``import-model --maps``: the options that cannot go with it are refused."""
    from brainlrp.training.maps import import_maps

    if maps is None:
        raise BrainLRPError("--split and --selection-metric choose a model of a MAPS",
                            "give the MAPS with --maps FOLDER")
    given = [g for g in given if g != "--model-kwargs"]  # a brainlrp arch in maps.json's
    del common["resolution"]  # the MAPS's own grid; a --resolution given is in ``given``
    if common.pop("normalisation") != "minmax":
        given.append("--normalisation")
    if given:
        raise BrainLRPError(f"--maps brings its own network, weights and preprocessing: "
                            f"{', '.join(given)} cannot go with it",
                            "give either --maps FOLDER or --arch NAME --weights FILE")
    return import_maps(cohort, out, maps, split=split, selection_metric=selection_metric,
                       classes=classes, model_kwargs=_parse_kwargs(model_kwargs), **common)


@app.command(cls=_CatalogHelpCommand)
@cli_errors
def explain(
    run: Annotated[Path, typer.Argument(help="A trained run directory.")],
    methods: Annotated[list[str] | None, typer.Option(
        "--methods", "-m", metavar="NAMES", help=_methods_help())] = None,
    split: Annotated[str, typer.Option(help="Scans to explain: test, val, train or all.")
                     ] = _E.split,
    cohort: Annotated[Path | None, typer.Option(
        help="Cohort (default: the one recorded in run.json).")] = None,
    scan: Annotated[Path | None, typer.Option(
        help="Explain this one new scan instead of the run's scans (needs --out).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder for --scan.")
                   ] = None,
    batch_size: Annotated[int, typer.Option(help="Scans per batch.")] = _E.batch_size,
    start: Annotated[str, typer.Option(
        help="Relevance starts at the target's softmax probability (probability, the "
             "paper) or its logit.")] = "probability",
    resample: Annotated[bool, typer.Option(
        help="Resample scans that are not on the model grid.")] = _E.resample,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator.")] = _E.accelerator,
    devices: Annotated[str, typer.Option(help="Lightning devices.")] = str(_E.devices),
    strategy: Annotated[str, typer.Option(help="Lightning strategy (auto, ddp, ...).")
                        ] = _E.strategy,
    num_nodes: Annotated[int, typer.Option(help="Lightning nodes.")] = _E.num_nodes,
    cache_dir: CacheOpt = None,
    overwrite: Annotated[bool, typer.Option(help="Recompute existing heatmaps.")] = _E.overwrite,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    register: RegisterOpt = False,
    registration: RegistrationOpt = None,
    reference: Annotated[str | None, typer.Option(
        "--reference", help=_reference_help())] = None,
) -> None:
    """Write LRP (and comparison) heatmaps as NIfTI on the model grid."""
    from brainlrp.explain.stage import explain_run, explain_scan

    if start not in ("probability", "logit"):
        raise BrainLRPError(f"--start {start!r} is unknown", "use probability or logit")
    options = {"start": start}
    if not methods and scan is None:
        from brainlrp.explain.call import run_default_methods

        methods, why = run_default_methods(run, cohort)
        if why:
            _say(f"note: {why}")
    if scan is not None:
        if out is None:
            raise BrainLRPError("--scan needs --out", "add --out DIR for the heatmaps")
        result = explain_scan(run, scan, out, methods=methods, options=options,
                              overwrite=overwrite, resample=resample, cache_dir=cache_dir,
                              register=parse_registration(register, registration),
                              reference=reference, say=None if quiet else _say)
        for notice in result.notices:
            _say(f"note: {notice}")
        _say(f"AD probability {result.p_ad:.3f} ({'AD' if result.p_ad >= 0.5 else 'HC'})")
        _say(_scan_files_line(result))
        return
    res = explain_run(run, methods=methods, split=split, cohort=cohort,
                      batch_size=batch_size, overwrite=overwrite, cache_dir=cache_dir,
                      accelerator=accelerator,
                      devices=int(devices) if devices.isdigit() else devices,
                      strategy=strategy, num_nodes=num_nodes, options=options,
                      resample=resample, progress=not quiet, reference=reference)
    if not res.is_main:  # under DDP rank 0 prints the counts of every rank
        return
    if res.n_written == 0 and res.n_skipped == res.n_scans:
        _say(f"heatmaps of {res.n_scans} scans x {len(res.methods)} methods are up to date "
             "(all exist); nothing written - --overwrite recomputes them")
    else:
        _say(f"{res.n_scans} scans x {len(res.methods)} methods: {res.n_written} heatmaps "
             f"written, {res.n_skipped} scans already complete ({res.seconds:.1f} s)")
    _say(f"heatmaps in {res.run / 'heatmaps'}")


def _scan_files_line(result) -> str:
    """What ``explain --scan`` wrote, by kind: the input, a heatmap per method on the
    model grid and, for a registered scan, on the scan's own grid (``native/``), then
    ``prediction.json`` and the registration figure."""
    out = Path(result.out)
    paths = [Path(p) for p in result.files.values()]
    maps = [p for p in paths if p.name.endswith(".nii.gz") and p.name != "input.nii.gz"]
    native = [p for p in maps if p.parent != out]
    parts = [p.name for p in paths if p.name == "input.nii.gz"]
    parts.append(f"{len(maps) - len(native)} heatmap(s) on the model grid")
    if native:
        folders = ", ".join(sorted({f"{p.parent.relative_to(out)}/" for p in native}))
        parts.append(f"{len(native)} on the scan's own grid in {folders}")
    parts += sorted(p.name for p in paths if not p.name.endswith(".nii.gz"))
    return (f"wrote {', '.join(parts)} to {out} in {sum(result.seconds.values()):.0f} s")


@app.command()
@cli_errors
def analyze(
    run: Annotated[Path, typer.Argument(help="Run directory with predictions.tsv and "
                                             "heatmaps/.")],
    atlas: Annotated[str, typer.Option(help="Built-in atlas name or a NIfTI label image "
                                            "(with NAME.tsv next to it).")
                     ] = _A.atlas,
    methods: Annotated[list[str] | None, typer.Option(
        "--methods", "-m", metavar="NAMES",
        help="Methods to analyse (repeat or comma-separate); default: every method with "
             "heatmaps.")] = None,
    cohort: Annotated[Path | None, typer.Option(
        help="Cohort folder or table (covariates, ground truth); default: the one in "
             "run.json.")] = None,
    relevance: Annotated[str, typer.Option(
        help="auto (per method: positive for LRP/IG/occlusion, absolute for "
             "GB/gradient/SmoothGrad), positive, signed or absolute.")] = _A.relevance,
    threshold: Annotated[float, typer.Option(
        help="Tissue loss above which a voxel counts as truly atrophied.")] = _A.threshold,
    top_k: Annotated[int, typer.Option(help="Areas compared in overlaps and recall.")] = _A.top_k,
    faithfulness: Annotated[bool, typer.Option(
        help="Region perturbation check (needs the model).")] = _A.faithfulness,
    sanity: Annotated[bool, typer.Option(
        help="Cascading model randomisation check (needs the model).")] = _A.sanity,
    costs: Annotated[bool, typer.Option(
        help="Time every method against the input gradient for the benchmark's cost "
             "column (needs the model).")] = _A.costs,
    faithfulness_subjects: Annotated[int, typer.Option(
        help="AD test scans in the perturbation check.")] = _A.faithfulness_subjects,
    faithfulness_steps: Annotated[int, typer.Option(
        help="Areas replaced one by one.")] = _A.faithfulness_steps,
    sanity_subjects: Annotated[int, typer.Option(
        help="AD test scans in the randomisation check (its result depends on the "
             "model and method far more than on the scan).")] = _A.sanity_subjects,
    batch_size: Annotated[int, typer.Option(help="Heatmaps read at a time.")] = _A.batch_size,
    seed: SeedOpt = _A.seed,
    overwrite: Annotated[bool, typer.Option(
        help="Recompute even when heatmaps, predictions, model and options are unchanged "
             "since the last analysis.")] = False,
) -> None:
    """Relevance per atlas region, subject and group, plus the paper's statistics."""
    from brainlrp.analysis import analyze as run_analyze

    result = run_analyze(run, atlas=atlas, methods=methods, cohort=cohort, relevance=relevance,
                         threshold=threshold, top_k=top_k, faithfulness=faithfulness,
                         sanity=sanity, costs=costs, faithfulness_subjects=faithfulness_subjects,
                         faithfulness_steps=faithfulness_steps, sanity_subjects=sanity_subjects,
                         batch_size=batch_size, seed=seed, overwrite=overwrite)
    if result.skipped:
        _say(f"analysis of {', '.join(result.methods)} is up to date (inputs unchanged); "
             f"{result.run / 'analysis'} kept - pass --overwrite to recompute")
        return
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


@app.command(cls=_CatalogHelpCommand)
@cli_errors
def benchmark(
    run: Annotated[Path, typer.Argument(help="A trained or imported run.")],
    disease_model: Annotated[str, typer.Option(
        "--disease-model", help="A shipped disease model ($disease_models) or a JSON file "
                                "(docs/simulation.md).")] = _B.disease_model,
    n: Annotated[int, typer.Option(
        "--n", help="Most held-out controls planted per split (validation, test).")] = _B.n,
    methods: Annotated[list[str] | None, typer.Option(
        "--methods", "-m", metavar="NAMES",
        help="Methods to benchmark (repeat or comma-separate); default: the benchmark "
             "set of brainlrp.catalog.METHOD_SETS.")] = None,
    seed: SeedOpt = _B.seed,
) -> None:
    """Score every method against known atrophy planted into the run's own held-out
    controls: ground truth on any cohort, simulated or real."""
    from brainlrp.benchmark import BenchmarkConfig
    from brainlrp.benchmark import benchmark as run_benchmark

    config = BenchmarkConfig(disease_model=disease_model, n=n, seed=seed,
                             methods=methods or None)
    result = run_benchmark(run, config, say=_say)
    for notice in result.notices:
        _say(f"note: {notice}")
    _say(f"p(AD) rises by {result.mean_rise:.3f} on average from the original test "
         f"controls to their planted copies")
    if result.recommended:
        row = result.table[result.table["method"] == result.recommended].iloc[0]
        _say(f"recommended (chosen on the validation plants): {result.recommended}; on the "
             f"test plants mass {row['mass_accuracy']:.3f}, |.|-AUC {row['auc_abs']:.3f}, "
             f"restoration rho {row['spearman_restoration']:.3f}")
    _say(f"wrote {result.run / 'benchmark' / 'method_benchmark.tsv'} in "
         f"{result.seconds / 60:.1f} min")


@app.command(cls=_CatalogHelpCommand)
@cli_errors
def simulate(
    out: Annotated[Path, typer.Argument(help="Cohort folder to write (BIDS-like).")],
    n_subjects: Annotated[int, typer.Option("--n-subjects", "-n", help="Number of "
                                            "subjects.")] = 200,
    resolution: ResolutionOpt = 2.0,
    seed: SeedOpt = 0,
    disease_model: Annotated[str, typer.Option(
        "--disease-model", help="A shipped disease model ($disease_models) or a JSON file "
                                "(see docs/simulation.md).")] = "default",
    ad_fraction: Annotated[float, typer.Option(help="Fraction of AD subjects.")] = 0.5,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Worker processes "
                                             "(default: all CPUs).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Re-simulate subjects whose files "
                                                 "exist.")] = False,
    arch: ArchCheckOpt = "paper",
) -> None:
    """Write a synthetic cohort of T1 scans with known, heterogeneous atrophy."""
    from brainlrp.simulate import simulate as run_simulate

    _check_grid_fits(arch, resolution)
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


@app.command()
@cli_errors
def report(
    run: Annotated[Path, typer.Argument(help="Run directory after `brainlrp analyze`.")],
    methods: Annotated[list[str] | None, typer.Option(
        "--methods", "-m", metavar="NAMES",
        help="Methods to show (repeat or comma-separate); default: every analysed "
             "method.")] = None,
    cards: Annotated[bool, typer.Option(help="Write a PNG explanation card per test scan.")
                     ] = True,
    quiet: Annotated[bool, typer.Option(help="No progress lines.")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Rebuild even when nothing the report reads has changed since the last "
             "report.")] = False,
) -> None:
    """The self-contained HTML report (report/index.html) and per-subject cards."""
    from brainlrp.report import report as run_report

    result = run_report(run, methods=methods, cards=cards, progress=not quiet,
                        overwrite=overwrite)
    if result.skipped:
        _say(f"report is up to date: {result.index} ({len(result.cards)} card(s)); "
             "--overwrite rebuilds it")
        return
    for notice in result.notes:
        _say(f"note: {notice}")
    _say(f"wrote {result.index} ({result.size_bytes / 1e6:.1f} MB) and {len(result.cards)} "
         f"card(s) in {result.seconds:.1f} s")


@app.command()
@cli_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for cohort/ and run/.")
                   ] = Path("brainlrp-demo"),
    quick: Annotated[bool, typer.Option(help="Small cohort, few epochs, fewer methods "
                                             "(a few minutes).")] = False,
    seed: SeedOpt = 0,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Processes for simulation "
                                             "and preprocessing (default: all CPUs).")] = None,
    quiet: Annotated[bool, typer.Option(help="Stage lines only.")] = False,
) -> None:
    """Simulate a cohort, train, explain, analyze and report: the whole pipeline."""
    from brainlrp.demo import demo as run_demo

    result = run_demo(out, quick=quick, seed=seed, jobs=jobs, progress=not quiet, say=_say)
    total = sum(result.timings.values())
    _say("stage times: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in
                                     result.timings.items()) + f"; total {total / 60:.1f} min")
    _say(f"report: {result.report}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
