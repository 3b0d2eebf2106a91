"""``brainlrp import-model --maps``: a model of a ClinicaDL MAPS made into a run directory.

A MAPS (ClinicaDL 1.x's model folder) holds ``maps.json``, the training parameters
(``architecture``, ``input_size``, ``output_size``, ``label_code``,
``selection_metrics``, ``preprocessing_dict``, ``normalize``, ``size_reduction``, ...),
``environment.txt`` (the ``pip freeze`` of the training, ClinicaDL's version in it),
the training and validation groups of each split (``groups/train/split-<k>/data.tsv``,
``groups/validation/split-<k>/data.tsv``) and one model per split and selection metric,
``split-<k>/best-<metric>/model.pth.tar`` (a dict: ``model``, the state dict; ``epoch``;
``name``). Old MAPS call their splits ``fold-<k>``.

:func:`read_maps` reads and checks one model of a MAPS; :func:`import_maps` imports it
like any model trained elsewhere (:func:`~brainlrp.training.import_model`): the network
is ClinicaDL's own class (the registered architecture ``clinicadl``,
:mod:`brainlrp.models.clinicadl_nets`; ClinicaDL must be installed), or brainlrp's when
``maps.json`` names a brainlrp architecture or a ``module:factory``; the class order is
``maps.json``'s ``label_code`` (ClinicaDL numbers the sorted labels); the scans are
prepared as ClinicaDL prepared them (:func:`clinicadl_preprocessing`); the MAPS's
training and validation participants become the run's train and val splits. The card
records all of it (:class:`~brainlrp.card.ModelSource`), so the run needs the MAPS no
more. What brainlrp cannot reproduce (slice, patch or ROI models, pipelines other than
``t1-linear``, inputs not min-max scaled, several networks) is refused in one line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from brainlrp.card import ModelSource
from brainlrp.data.grid import Grid
from brainlrp.data.preprocess import Preprocessing
from brainlrp.errors import BrainLRPError
from brainlrp.run import RunDir
from brainlrp.training.importer import (
    ImportResult,
    _file_sha256,
    fit_state_dict,
    import_model,
    read_state_dict,
    stated_classes,
)

MAPS_JSON = "maps.json"
WEIGHTS = "model.pth.tar"
ENVIRONMENT = "environment.txt"
#: The card's ``source.kind`` of a MAPS's model.
SOURCE_KIND = "clinicadl-maps"
#: ClinicaDL's ``size_reduction_factor`` k: the voxels ``start:stop:k`` its
#: ``SizeReduction`` keeps after MinMax (start and stop along x, y, z).
SIZE_REDUCTION = {2: ((4, 8, 8), (164, 200, 168)), 3: ((0, 8, 4), (168, 200, 172)),
                  4: ((4, 8, 8), (164, 200, 168)), 5: ((4, 0, 8), (164, 200, 168))}
#: ClinicaDL 1.x's classifiers (``clinicadl.utils.network``), named in messages when
#: ClinicaDL is not installed.
CLINICADL_CLASSIFIERS = ("Conv5_FC3", "Conv4_FC3", "Stride_Conv5_FC3", "ResNet3D",
                         "SqueezeExcitationCNN", "RandomArchitecture")
#: Older ``maps.json`` names (ClinicaDL reads them the same way).
RENAMED = {"model": "architecture", "minmaxnormalization": "normalize"}
#: What :func:`~brainlrp.models.clinicadl_nets.clinicadl_network` sets itself.
_BUILT_ARGS = ("self", "input_size", "gpu", "output_size", "dropout")
_FIX_MAPS = "point --maps at the MAPS's top folder (the one holding maps.json)"


@dataclass(frozen=True)
class MapsModel:
    """One model of a ClinicaDL MAPS, as brainlrp reads it (:func:`read_maps`).

    Attributes
    ----------
    root : Path
        The MAPS folder (absolute).
    split : int
    selection_metric : str
    weights : Path
        ``split-<k>/best-<metric>/model.pth.tar``.
    network : str
        ``maps.json``'s ``architecture`` (e.g. ``Conv5_FC3``).
    arch, model_kwargs
        The brainlrp architecture that builds it (``clinicadl`` with ``{"network": ...,
        "output_size": ..., "dropout": ...}``, or a brainlrp name) and its arguments.
    classes : list of str, optional
        The outputs' labels in order (``label_code``), if ``maps.json`` gives them.
    preprocessing : Preprocessing
        How brainlrp prepares scans for it (:func:`clinicadl_preprocessing`).
    pipeline : str
        ClinicaDL's own name for that, e.g. ``"t1-linear, cropped, MinMax"``.
    clinicadl_version : str
        The ClinicaDL that trained it (``environment.txt``); ``""`` when unknown.
    groups : dict
        ``{"train": [...], "val": [...]}``: the split's participants.
    """

    root: Path
    split: int
    selection_metric: str
    weights: Path
    network: str
    arch: str
    model_kwargs: dict
    classes: list[str] | None
    preprocessing: Preprocessing
    pipeline: str
    clinicadl_version: str = ""
    groups: dict = field(default_factory=dict)

    @property
    def relative_weights(self) -> str:
        """The weights file within the MAPS."""
        return self.weights.relative_to(self.root).as_posix()

    def source(self, notes: Sequence[str] = ()) -> ModelSource:
        """The card's record of this model (with the weights' SHA-256)."""
        return ModelSource(kind=SOURCE_KIND, path=str(self.root), name=self.network,
                           version=self.clinicadl_version, config=MAPS_JSON,
                           sha256=_file_sha256(self.weights), notes=tuple(notes),
                           split=self.split, selection_metric=self.selection_metric,
                           preprocessing=self.pipeline)


def _read_parameters(root: Path) -> dict:
    if not root.is_dir():
        raise BrainLRPError(f"MAPS folder not found: {root}", _FIX_MAPS)
    path = root / MAPS_JSON
    if not path.is_file():
        raise BrainLRPError(f"no {MAPS_JSON} in {root}: not a ClinicaDL MAPS", _FIX_MAPS)
    try:
        params = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BrainLRPError(f"{path} is not valid JSON ({' '.join(str(exc).split())[:100]})",
                            "restore the file ClinicaDL wrote") from None
    if not isinstance(params, dict):
        raise BrainLRPError(f"{path} holds no training parameters (a JSON object)",
                            "restore the file ClinicaDL wrote")
    for old, new in RENAMED.items():
        if old in params and new not in params:
            params[new] = params.pop(old)
    if "architecture" not in params:
        raise BrainLRPError(f"{path} names no architecture: not a ClinicaDL 1.x MAPS",
                            "brainlrp reads MAPS written by ClinicaDL 1.x "
                            "(split-<k>/best-<metric>/model.pth.tar)")
    return params


def _check_task(params: dict, path: Path) -> None:
    """Refuse what brainlrp cannot explain: not a two-class classifier, or several
    networks."""
    task = params.get("network_task", "classification")
    if task != "classification":
        raise BrainLRPError(f"{path}: network_task {task!r}; brainlrp explains classifiers",
                            "import a MAPS trained with `clinicadl train classification`")
    for key in ("multi_network", "ssda_network"):
        if params.get(key):
            raise BrainLRPError(f"{path}: {key} is true; brainlrp imports one network",
                                "import a MAPS trained with one network")
    size = params.get("output_size")
    if size is not None and int(size) != 2:
        raise BrainLRPError(f"{path}: output_size {size}; brainlrp explains two-class "
                            "models (AD against controls)",
                            "import a MAPS trained on two diagnoses, e.g. AD and CN")


def clinicadl_preprocessing(params: dict, path: str | os.PathLike = MAPS_JSON
                            ) -> tuple[Preprocessing, str]:
    """How brainlrp prepares scans as ClinicaDL prepared them for the MAPS ``params``.

    ClinicaDL's image mode on ``t1-linear`` scans feeds the network the scan registered
    to MNI space, cropped to 169 x 208 x 179 at 1 mm (:data:`~brainlrp.data.grid.
    T1_LINEAR_CROP`; the full 193 x 229 x 193 with ``use_uncropped_image``), with its
    skull (no brain mask), min-max scaled over the whole image (``MinMaxNormalization``),
    then, with ``size_reduction``, one voxel in k (:data:`SIZE_REDUCTION`).

    Parameters
    ----------
    params : dict
        ``maps.json``.
    path : path-like
        Named in errors.

    Returns
    -------
    (Preprocessing, str)
        brainlrp's preprocessing and ClinicaDL's name for it.

    Raises
    ------
    BrainLRPError
        For a mode, pipeline or scaling brainlrp cannot reproduce.
    """
    prep = params.get("preprocessing_dict") or {}
    mode = prep.get("mode", params.get("mode", "image"))
    pipeline = prep.get("preprocessing", params.get("preprocessing"))
    if mode != "image":
        raise BrainLRPError(f"{path}: mode {mode!r}; brainlrp cannot reproduce ClinicaDL's "
                            f"{mode} inputs, only whole images (mode 'image')",
                            "import a MAPS trained in image mode")
    if pipeline != "t1-linear":
        raise BrainLRPError(f"{path}: preprocessing {pipeline!r}; brainlrp reproduces "
                            "ClinicaDL's t1-linear images only",
                            "import a MAPS trained on t1-linear images")
    if not params.get("normalize", True):
        raise BrainLRPError(f"{path}: normalize is false (raw intensities); brainlrp "
                            "scales every scan to [0, 1] as ClinicaDL's MinMax does",
                            "import a MAPS trained with normalize: true (the default)")
    cropped = not prep.get("use_uncropped_image", params.get("use_uncropped_image", False))
    base = Grid.t1_linear(cropped=cropped)
    name = f"t1-linear, {'cropped' if cropped else 'uncropped'}, MinMax"
    if not params.get("size_reduction"):
        return Preprocessing(grid=base, mask=False, clean_edge=False), name
    factor = params.get("size_reduction_factor", 2)
    if factor not in SIZE_REDUCTION:
        raise BrainLRPError(f"{path}: size_reduction_factor {factor!r} is not one of "
                            f"ClinicaDL's {sorted(SIZE_REDUCTION)}",
                            "restore the file ClinicaDL wrote")
    grid = base.sub_grid(*SIZE_REDUCTION[factor], step=factor)
    return (Preprocessing(grid=grid, mask=False, clean_edge=False, scale_grid=base),
            f"{name}, size reduction {factor}")


def _folder(parent: Path, kind: str, wanted, default) -> Path:
    """``parent/<kind>-<wanted>``; without ``wanted``, ``<kind>-<default>``, else the only
    ``<kind>-*`` folder there is."""
    found = sorted(p for p in parent.glob(f"{kind}-*") if p.is_dir())
    names = ", ".join(p.name for p in found) or "none"
    option = "--split K" if kind in ("split", "fold") else "--selection-metric NAME"
    name = f"{kind}-{wanted if wanted is not None else default}"
    if (wanted is not None or default is not None) and (parent / name).is_dir():
        return parent / name
    if wanted is None and len(found) == 1:
        return found[0]
    if wanted is None and default is None:
        raise BrainLRPError(f"{parent} holds {len(found)} {kind}-* folders ({names})",
                            f"choose one with {option}")
    raise BrainLRPError(f"no {name} in {parent} (it has: {names})", f"choose one with "
                        f"{option}" if found else "restore the folders ClinicaDL wrote")


def _locate_weights(root: Path, params: dict, split: int | None,
                    selection_metric: str | None) -> tuple[Path, int, str]:
    """``split-<k>/best-<metric>/model.pth.tar`` (``fold-<k>`` in old MAPS)."""
    kind = "fold" if any(root.glob("fold-*")) and not any(root.glob("split-*")) else "split"
    split_dir = _folder(root, kind, split, 0)
    metrics = params.get("selection_metrics") or []
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    best = _folder(split_dir, "best", selection_metric, metrics[0] if metrics else None)
    weights = best / WEIGHTS
    if not weights.is_file():
        raise BrainLRPError(f"no {WEIGHTS} in {best}",
                            "choose another --split or --selection-metric, or restore the "
                            "file ClinicaDL wrote")
    try:
        number = int(split_dir.name.partition("-")[2])
    except ValueError:
        raise BrainLRPError(f"{split_dir} is not named {kind}-<number>",
                            "restore the folder ClinicaDL wrote") from None
    return weights, number, best.name.partition("-")[2]


def _architecture(params: dict, path: Path, model_kwargs: dict | None) -> tuple[str, dict]:
    """The brainlrp architecture and arguments that build ``maps.json``'s network."""
    import inspect

    from brainlrp.models import MODELS
    from brainlrp.models.clinicadl_nets import clinicadl_class, clinicadl_version

    network = str(params["architecture"])
    if (network in MODELS and network != "clinicadl") or ":" in network:
        return network, dict(model_kwargs or {})
    if clinicadl_version() is None and network not in CLINICADL_CLASSIFIERS:
        raise BrainLRPError(
            f"{path}: architecture {network!r} is neither brainlrp's ({', '.join(MODELS)}) "
            f"nor a ClinicaDL 1.x classifier ({', '.join(CLINICADL_CLASSIFIERS)})",
            "check maps.json's architecture")
    try:
        cls = clinicadl_class(network)
    except BrainLRPError as exc:
        raise BrainLRPError(f"{path}: {exc.message}", exc.fix) from None
    options = {name: params[name] for name in inspect.signature(cls.__init__).parameters
               if name not in _BUILT_ARGS and name in params}
    return "clinicadl", {"network": network, "output_size": int(params.get("output_size", 2)),
                         "dropout": float(params.get("dropout", 0.0)), **options,
                         **(model_kwargs or {})}


def _label_order(params: dict, path: Path) -> list[str] | None:
    """The outputs' labels in order: ``label_code`` (``{label: output}``), else the
    sorted ``diagnoses`` (how ClinicaDL numbers them); ``None`` when neither is given."""
    code = params.get("label_code")
    if isinstance(code, dict) and code:
        try:
            order = sorted(code, key=lambda label: int(code[label]))
        except (TypeError, ValueError):
            raise BrainLRPError(f"{path}: label_code {code} does not map labels to outputs",
                                "pass the outputs in order, e.g. --classes AD,CN") from None
        return [str(label) for label in order]
    diagnoses = params.get("diagnoses")
    if isinstance(diagnoses, list) and diagnoses:
        return sorted(str(d) for d in diagnoses)
    return None


def _environment_version(root: Path) -> str:
    path = root / ENVIRONMENT
    if not path.is_file():
        return ""
    match = re.search(r"^clinicadl\s*==\s*(\S+)", path.read_text(errors="replace"),
                      re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else ""


def _groups(root: Path, kind: str, split: int) -> dict[str, list[str]]:
    """The participants of the split's training and validation groups (empty when the
    MAPS lacks them)."""
    out = {}
    for group, name in (("train", "train"), ("validation", "val")):
        table = root / "groups" / group / f"{kind}-{split}" / "data.tsv"
        if table.is_file():
            ids = pd.read_csv(table, sep="\t", dtype=str).get("participant_id")
            out[name] = sorted(set(ids.dropna())) if ids is not None else []
    return out


def read_maps(folder: str | os.PathLike, split: int | None = None,
              selection_metric: str | None = None,
              model_kwargs: dict | None = None) -> MapsModel:
    """Read and check one model of a ClinicaDL MAPS.

    Parameters
    ----------
    folder : path-like
        The MAPS (the folder holding ``maps.json``).
    split : int, optional
        The split; default 0, or the only one there is.
    selection_metric : str, optional
        The ``best-<metric>`` model; default the first of ``maps.json``'s
        ``selection_metrics``, or the only one there is.
    model_kwargs : dict, optional
        Keyword arguments of a brainlrp architecture ``maps.json`` names (or extra
        constructor arguments of ClinicaDL's class).

    Returns
    -------
    MapsModel

    Raises
    ------
    BrainLRPError
        Naming the file, for a missing or malformed ``maps.json``, split, model file or
        architecture, or a MAPS brainlrp cannot reproduce.
    """
    root = Path(folder).absolute()
    params = _read_parameters(root)
    path = root / MAPS_JSON
    _check_task(params, path)
    prep, pipeline = clinicadl_preprocessing(params, path)
    size = params.get("input_size")
    if size is not None and [int(s) for s in size] != [1, *prep.grid.shape]:
        raise BrainLRPError(f"{path}: input_size {list(size)} is not what its "
                            f"preprocessing ({pipeline}) gives, [1, "
                            f"{', '.join(map(str, prep.grid.shape))}]",
                            "restore the file ClinicaDL wrote")
    weights, number, metric = _locate_weights(root, params, split, selection_metric)
    arch, kwargs = _architecture(params, path, model_kwargs)
    return MapsModel(root=root, split=number, selection_metric=metric, weights=weights,
                     network=str(params["architecture"]), arch=arch, model_kwargs=kwargs,
                     classes=_label_order(params, path), preprocessing=prep,
                     pipeline=pipeline, clinicadl_version=_environment_version(root),
                     groups=_groups(root, weights.parents[1].name.partition("-")[0],
                                    number))


def _check_weights(found: MapsModel) -> None:
    """Fail now, naming the MAPS, when the weights do not fit the network."""
    from brainlrp.models import build_model

    model = build_model(found.arch, found.preprocessing.grid.shape, **found.model_kwargs)
    try:
        fit_state_dict(model, read_state_dict(found.weights), found.network, found.weights)
    except BrainLRPError as exc:
        raise BrainLRPError(exc.message, f"{found.root / MAPS_JSON} (architecture, "
                            "input_size, output_size) must describe the network that was "
                            "saved; restore the MAPS as ClinicaDL wrote it") from None


def _group_splits(found: MapsModel, run: RunDir, cohort, allow_external_paths: bool
                  ) -> tuple[Path | None, str]:
    """``RUN/splits.tsv`` from the MAPS's training and validation groups (the cohort's
    other participants are test), and a note; ``None`` when the MAPS has no groups."""
    from brainlrp.data.cohort import load_cohort

    if not found.groups:
        return None, "the MAPS lists no training group: every scan is a test scan"
    pids = load_cohort(cohort, allow_external_paths=allow_external_paths).subjects[
        "participant_id"].astype(str)
    which = {p: name for name in ("train", "val") for p in found.groups.get(name, [])}
    split = [which.get(p, which.get(f"sub-{p}", "test")) for p in pids]
    if "test" not in split:
        raise BrainLRPError(f"every participant of {cohort} is in the training or validation "
                            f"group of {found.root} (split {found.split})",
                            "import with scans the model never saw, or pass --splits")
    table = pd.DataFrame({"participant_id": pids.to_numpy(), "split": split})
    run.root.mkdir(parents=True, exist_ok=True)
    table.to_csv(run.splits, sep="\t", index=False)
    n = table["split"].value_counts()
    return run.splits, (f"splits from the MAPS's groups of split {found.split}: "
                        f"{n.get('train', 0)} train, {n.get('val', 0)} val, "
                        f"{n.get('test', 0)} test participants of the cohort")


def import_maps(cohort: str | os.PathLike, out: str | os.PathLike,
                maps: str | os.PathLike, split: int | None = None,
                selection_metric: str | None = None,
                classes: str | Sequence[str] | None = None,
                model_kwargs: dict | None = None, splits: str | os.PathLike | None = None,
                overwrite: bool = False, allow_external_paths: bool = False,
                **options) -> ImportResult:
    """Make the run directory ``out`` from a model of the ClinicaDL MAPS ``maps``.

    Parameters
    ----------
    cohort, out : path-like
        As for :func:`~brainlrp.training.import_model`; the cohort's scans should be
        Clinica ``t1-linear`` outputs (a CAPS folder reads as it is), as the MAPS's were.
    maps : path-like
        The MAPS folder.
    split, selection_metric, model_kwargs
        As for :func:`read_maps`.
    classes : str or sequence of str, optional
        The outputs in order; default ``maps.json``'s ``label_code``.
    splits : path-like, optional
        A splits.tsv; default the MAPS's training and validation groups of ``split``
        (the cohort's other participants are test scans).
    overwrite, allow_external_paths, **options
        As for :func:`~brainlrp.training.import_model` (``batch_size``, ``cache_dir``,
        ``jobs``, ``progress``). The grid and scaling are the MAPS's: ``resolution`` and
        ``normalisation`` do not apply.

    Returns
    -------
    ImportResult
        Its ``notices`` start with how the MAPS was read (also in the card's
        ``source.notes``).

    Raises
    ------
    BrainLRPError
        For a malformed MAPS (naming the file), one brainlrp cannot reproduce, or weights
        that do not fit its network.
    """
    found = read_maps(maps, split, selection_metric, model_kwargs)
    names = stated_classes(classes, found.classes, found.root / MAPS_JSON,
                           "labels", example="AD,CN")
    _check_weights(found)
    run = RunDir(out)
    if run.card.is_file() and not overwrite:
        raise BrainLRPError(f"{run.root} already holds a model",
                            "pass --overwrite to replace it, or choose another --out")
    notes = [f"{found.relative_weights} of {found.root}: {found.network}, split "
             f"{found.split}, selected on {found.selection_metric}; inputs: {found.pipeline}"]
    if splits is None:
        splits, note = _group_splits(found, run, cohort, allow_external_paths)
        notes.append(note)
    if found.arch == "clinicadl":
        notes.append(f"loading this run builds ClinicaDL's {found.network}: ClinicaDL must "
                     "be installed")
    result = import_model(cohort, out, found.arch, found.weights, classes=names,
                          model_kwargs=found.model_kwargs, splits=splits,
                          preprocessing=found.preprocessing, source=found.source(notes),
                          overwrite=True, allow_external_paths=allow_external_paths,
                          **options)
    result.notices = [*notes, *result.notices]
    return result


__all__ = ["CLINICADL_CLASSIFIERS", "MapsModel", "SIZE_REDUCTION", "SOURCE_KIND",
           "clinicadl_preprocessing", "import_maps", "read_maps"]
