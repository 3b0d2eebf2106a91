"""``brainlrp import-model --bundle``: a MONAI bundle made into a run directory.

A MONAI bundle is a folder with ``configs/metadata.json`` (its ``network_data_format``
says what the network takes and gives), ``configs/inference.json`` (or ``.yaml``) whose
``network_def`` builds the network through MONAI's bundle parser, and
``models/model.pt``, the network's state dict. :func:`read_bundle` reads and checks
them; :func:`import_bundle` checks that brainlrp's inputs fit the network and then
imports it like any model trained elsewhere (:func:`~brainlrp.training.import_model`),
under the registered architecture ``monai-bundle``
(:func:`brainlrp.models.monai_nets.bundle_network`): the card stores ``network_def``
and every config item it refers to, so the run rebuilds the network without the
folder, and records the bundle (:class:`~brainlrp.card.ModelSource`).

Preprocessing stays brainlrp's (template grid, brain mask, [0, 1]); the bundle's own
``preprocessing`` transforms are not run. What the metadata says that does not fit is
a notice, or a refusal where predictions and heatmaps could mean nothing: a network
that takes more than one channel, or a value range that does not hold [0, 1].
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainlrp.card import InputFormat, ModelSource
from brainlrp.data.grid import Grid
from brainlrp.data.preprocess import Preprocessing
from brainlrp.errors import BrainLRPError
from brainlrp.training.importer import (
    ImportResult,
    _file_sha256,
    fit_state_dict,
    import_model,
    read_state_dict,
    stated_classes,
)

#: The architecture a bundle's network is filed under (:data:`brainlrp.models.MODELS`).
BUNDLE_ARCH = "monai-bundle"
METADATA = "configs/metadata.json"
#: Where the network is defined, in the order they are looked for.
INFERENCE_CONFIGS = ("configs/inference.json", "configs/inference.yaml",
                     "configs/inference.yml")
WEIGHTS = "models/model.pt"
#: What brainlrp's preprocessing gives the network (every ``--normalisation``).
BRAINLRP_RANGE = (0.0, 1.0)
#: The keys of MONAI's bundle format: the network's input and output.
INPUT_KEY, OUTPUT_KEY = "image", "pred"
NETWORK_ID = "network_def"
SPEC_FIX = ("see MONAI's bundle specification: "
            "https://docs.monai.io/en/stable/mb_specification.html")


@dataclass(frozen=True)
class Bundle:
    """A MONAI bundle folder as brainlrp reads it (:func:`read_bundle`).

    Attributes
    ----------
    root : Path
        The folder (absolute).
    name, version : str
        From ``metadata.json`` (the folder's name when it names none).
    config_file : str
        The config ``network_def`` was read from, relative to ``root``.
    config : dict
        ``network_def`` and every top-level item it refers to, plain JSON values: what
        :func:`brainlrp.models.monai_nets.bundle_network` builds the network from.
    weights : Path
        ``models/model.pt``.
    input : InputFormat
        The value range and channels of ``network_data_format.inputs.image``
        ([0, 1] when it states no range).
    stated_range : bool
        Whether the metadata states the value range.
    spatial_shape : tuple
        The input's ``spatial_shape``: sizes, or expressions such as ``"16*n"``.
    classes : list of str, optional
        The outputs' names in order (``outputs.pred.channel_def``), if given.
    transforms : tuple of str
        The class names of the bundle's own ``preprocessing`` (not run by brainlrp).
    """

    root: Path
    name: str
    version: str
    config_file: str
    config: dict
    weights: Path
    input: InputFormat
    stated_range: bool
    spatial_shape: tuple
    classes: list[str] | None
    transforms: tuple[str, ...]

    def source(self, notes: Sequence[str] = ()) -> ModelSource:
        """The card's record of this bundle (with the weights' SHA-256)."""
        return ModelSource(kind=BUNDLE_ARCH, path=str(self.root), name=self.name,
                           version=self.version, config=self.config_file,
                           sha256=_file_sha256(self.weights), notes=tuple(notes))


def _read_metadata(root: Path) -> dict:
    path = root / METADATA
    if not path.is_file():
        raise BrainLRPError(f"{root} is not a MONAI bundle: {METADATA} is missing",
                            "point --bundle at the bundle's top folder (the one holding "
                            "configs/ and models/)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BrainLRPError(f"{path} is not valid JSON ({' '.join(str(exc).split())[:120]})",
                            "fix the file's syntax") from None
    if not isinstance(data, dict):
        raise BrainLRPError(f"{path} holds {type(data).__name__}, not a JSON object",
                            SPEC_FIX)
    return data


def _data_format(metadata: dict, path: Path) -> tuple[dict, dict]:
    """``network_data_format``'s input (``image``) and output (``pred``) entries."""
    fmt = metadata.get("network_data_format")
    if not isinstance(fmt, dict):
        raise BrainLRPError(f"{path} has no network_data_format",
                            "add it: inputs.image (num_channels, spatial_shape, "
                            "value_range) and outputs.pred (channel_def); " + SPEC_FIX)
    found = []
    for side, key in (("inputs", INPUT_KEY), ("outputs", OUTPUT_KEY)):
        entries = fmt.get(side) if isinstance(fmt.get(side), dict) else {}
        entry = entries.get(key, next(iter(entries.values())) if len(entries) == 1 else None)
        if not isinstance(entry, dict):
            raise BrainLRPError(f"{path}: network_data_format.{side} has no {key!r} entry"
                                f" (found: {', '.join(entries) or 'none'})", SPEC_FIX)
        found.append(entry)
    return found[0], found[1]


def _input_format(image: dict, path: Path) -> tuple[InputFormat, bool]:
    """The input's value range and channels, and whether the range was stated."""
    channels = image.get("num_channels", 1)
    value_range = image.get("value_range") or []
    what = f"{path}: network_data_format.inputs.{INPUT_KEY}"
    if not isinstance(channels, int) or channels < 1:
        raise BrainLRPError(f"{what}.num_channels must be a positive integer, got "
                            f"{channels!r}", "fix metadata.json")
    if not value_range:
        return InputFormat(value_range=BRAINLRP_RANGE, channels=channels), False
    try:
        low, high = (float(v) for v in value_range)
        fmt = InputFormat.from_dict({"value_range": [low, high], "channels": channels})
    except (TypeError, ValueError):
        raise BrainLRPError(f"{what}.value_range must be [low, high] with low < high, got "
                            f"{value_range!r}", "fix metadata.json") from None
    return fmt, True


def _channel_def(pred: dict, path: Path) -> list[str] | None:
    """The outputs' names by index (``channel_def``), or ``None`` when not given."""
    channel_def = pred.get("channel_def")
    if not channel_def:
        return None
    try:
        order = sorted(channel_def.items(), key=lambda kv: int(kv[0]))
    except (AttributeError, TypeError, ValueError):
        raise BrainLRPError(f"{path}: network_data_format.outputs.{OUTPUT_KEY}.channel_def "
                            "must map output indices to names, e.g. {\"0\": \"HC\", "
                            f"\"1\": \"AD\"}}, got {channel_def!r}",
                            "fix metadata.json, or pass --classes") from None
    return [str(name) for _, name in order]


def _load_config(root: Path) -> tuple[str, dict]:
    """The first inference config there is, and its content."""
    from monai.bundle import ConfigParser

    for name in INFERENCE_CONFIGS:
        path = root / name
        if path.is_file():
            break
    else:
        raise BrainLRPError(f"{root} has no {INFERENCE_CONFIGS[0]} (nor .yaml) defining "
                            f"{NETWORK_ID}", "add the bundle's inference config; " + SPEC_FIX)
    try:
        config = ConfigParser.load_config_file(path)
    except Exception as exc:  # json's and yaml's syntax errors, encoding errors
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:140]
        raise BrainLRPError(f"cannot read {path} ({reason})", "fix the file's syntax"
                            ) from None
    if not isinstance(config, dict) or NETWORK_ID not in config:
        raise BrainLRPError(f"{path} has no {NETWORK_ID}",
                            f"define the network under {NETWORK_ID} with _target_ and its "
                            "arguments; " + SPEC_FIX)
    return name, config


def network_config(config: dict, metadata: dict, path: Path) -> dict:
    """``network_def`` and every top-level item it refers to, transitively.

    Macros and relative references are resolved first (MONAI's parser), so the result
    builds the network alone; ``@_meta_::...`` references take ``metadata``.

    Raises
    ------
    BrainLRPError
        When ``network_def`` refers to an item the config does not define, or the items
        are not plain JSON values.
    """
    from monai.bundle import ConfigParser
    from monai.bundle.reference_resolver import ReferenceResolver

    parser = ConfigParser(config)
    parser.read_meta(metadata)
    try:
        parser.parse()
        resolved = parser.get()
    except Exception as exc:  # a macro naming a missing file or id
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:140]
        raise BrainLRPError(f"MONAI cannot parse {path} ({reason})", SPEC_FIX) from None
    kept: dict[str, Any] = {}
    todo = [NETWORK_ID]
    while todo:
        key = todo.pop()
        if key in kept:
            continue
        if key not in resolved:
            ref = f"{ReferenceResolver.ref}{key}"
            raise BrainLRPError(f"{path}: {NETWORK_ID} refers to {ref}, which the config does "
                                "not define", f"define {key} in {path.name}")
        kept[key] = resolved[key]
        refs = ReferenceResolver.find_refs_in_config(resolved[key], key)
        todo += [ref.split(ReferenceResolver.sep)[0] for ref in refs]
    try:
        return json.loads(json.dumps(kept))
    except (TypeError, ValueError):
        raise BrainLRPError(f"{path}: {NETWORK_ID} holds values that are not plain JSON "
                            "(numbers, strings, lists, mappings)",
                            "write them as JSON values") from None


def _transforms(config: dict) -> tuple[str, ...]:
    """The class names the bundle's ``preprocessing`` instantiates, in order."""
    names: list[str] = []

    def walk(item):
        if isinstance(item, dict):
            target = item.get("_target_")
            if isinstance(target, str):
                names.append(target.replace("::", ".").rsplit(".", 1)[-1])
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(config.get("preprocessing"))
    return tuple(dict.fromkeys(n for n in names if n != "Compose"))


def read_bundle(folder: str | os.PathLike) -> Bundle:
    """Read and check a MONAI bundle folder (files and metadata; the network is not
    built yet).

    Raises
    ------
    BrainLRPError
        Naming the file that is missing or malformed.
    """
    root = Path(folder).absolute()
    if not root.is_dir():
        raise BrainLRPError(f"bundle folder not found: {root}",
                            "give the MONAI bundle's top folder (configs/, models/)")
    metadata = _read_metadata(root)
    meta_path = root / METADATA
    image, pred = _data_format(metadata, meta_path)
    input_format, stated = _input_format(image, meta_path)
    config_file, config = _load_config(root)
    weights = root / WEIGHTS
    if not weights.is_file():
        other = sorted(p.name for p in (root / "models").glob("*")) if (
            root / "models").is_dir() else []
        raise BrainLRPError(f"{root} has no {WEIGHTS}"
                            + (f" (models/ holds {', '.join(other[:4])})" if other else ""),
                            "brainlrp reads the network's state dict from models/model.pt "
                            "(TorchScript models/model.ts is not read): save it with "
                            "torch.save(model.state_dict(), 'models/model.pt')")
    return Bundle(root=root, name=str(metadata.get("name") or root.name),
                  version=str(metadata.get("version", "")), config_file=config_file,
                  config=network_config(config, metadata, root / config_file),
                  weights=weights, input=input_format, stated_range=stated,
                  spatial_shape=tuple(image.get("spatial_shape") or ()),
                  classes=_channel_def(pred, meta_path), transforms=_transforms(config))


def _size_fits(spec, size: int) -> bool | None:
    """Whether one entry of ``spatial_shape`` allows ``size``: an integer (-1: any), or
    an expression such as ``"16*n"`` or ``"2**p*n"`` in at most two non-negative
    integers; ``None`` when it cannot be told."""
    if isinstance(spec, bool):
        return None
    if isinstance(spec, int):
        return spec in (-1, size)
    if not isinstance(spec, str):
        return None
    try:
        tree = ast.parse(spec.replace("^", "**"), mode="eval")
    except SyntaxError:
        return None
    allowed = (ast.Expression, ast.BinOp, ast.Name, ast.Load, ast.Constant, ast.Add,
               ast.Sub, ast.Mult, ast.Pow, ast.FloorDiv)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)):
        return None
    names = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)})
    if len(names) > 2:
        return None
    code = compile(tree, "<spatial_shape>", "eval")
    values = range(size + 1)
    grids = [{}] if not names else (
        [{names[0]: a} for a in values] if len(names) == 1 else
        [{names[0]: a, names[1]: b} for a in values for b in values])
    # Only arithmetic on small integers: the nodes were checked above.
    return any(eval(code, {"__builtins__": {}}, env) == size for env in grids)  # noqa: S307


def input_notices(bundle: Bundle, grid: Grid, normalisation: str) -> list[str]:
    """What differs between the bundle's inputs and brainlrp's, as notices.

    Raises
    ------
    BrainLRPError
        Where the network's predictions and heatmaps on brainlrp's inputs would mean
        nothing: it takes several channels, or a value range that does not hold [0, 1].
    """
    from brainlrp.data.preprocess import NORMALISATIONS

    meta = bundle.root / METADATA
    prep = Preprocessing(grid=grid, normalisation=normalisation).describe()
    scaled = NORMALISATIONS[normalisation]
    if bundle.input.channels != 1:
        raise BrainLRPError(f"{meta}: the network takes {bundle.input.channels} input "
                            "channels but brainlrp gives it one (a T1 scan)",
                            "import a network with num_channels 1")
    low, high = bundle.input.value_range
    if not low <= BRAINLRP_RANGE[0] < BRAINLRP_RANGE[1] <= high:
        raise BrainLRPError(f"{meta}: the network takes values in [{low:g}, {high:g}] but "
                            f"brainlrp's inputs are {scaled}: its predictions and the LRP box "
                            "rule's bounds would be meaningless",
                            "import a network trained on scans scaled to [0, 1], or correct "
                            "inputs.image.value_range if it was")
    notices = []
    if not bundle.stated_range:
        notices.append(f"{meta} states no value range for the input: the LRP box rule "
                       "takes brainlrp's [0, 1]")
    elif (low, high) != BRAINLRP_RANGE:
        notices.append(f"the bundle's network takes values in [{low:g}, {high:g}]; "
                       f"brainlrp's inputs are {scaled}, a part of that range: check that "
                       f"it was trained on such scans. The LRP box rule's bounds are "
                       f"[{low:g}, {high:g}]")
    fits = [_size_fits(s, n) for s, n in zip(bundle.spatial_shape, grid.shape, strict=False)]
    if len(bundle.spatial_shape) == 3 and False in fits:
        shape = " x ".join(map(str, bundle.spatial_shape))
        notices.append(f"the bundle's network was made for inputs of {shape} voxels; "
                       f"brainlrp gives it the template grid {grid.describe()}: it runs, "
                       "but was trained on another field of view or voxel size, so check "
                       "its test metrics before trusting its heatmaps")
    if bundle.transforms:
        notices.append(f"the bundle's own preprocessing ({', '.join(bundle.transforms[:6])}"
                       f"{', ...' if len(bundle.transforms) > 6 else ''}) is not run: "
                       f"brainlrp's is (template grid, {prep}); the network must have been "
                       "trained on such inputs")
    return notices


def _checked_network(bundle: Bundle, grid: Grid) -> None:
    """Build the network, load the weights and run it on the grid; fail naming the
    bundle file at fault."""
    from brainlrp.models import check_grid_fits
    from brainlrp.models.monai_nets import bundle_network

    config_path = bundle.root / bundle.config_file
    try:
        model = bundle_network(grid.shape, bundle.config)
    except BrainLRPError as exc:
        raise BrainLRPError(f"{config_path}: {exc.message}", exc.fix) from None
    try:
        fit_state_dict(model, read_state_dict(bundle.weights), NETWORK_ID, bundle.weights)
    except BrainLRPError as exc:
        message = exc.message.replace(f"the {NETWORK_ID!r} architecture",
                                      f"the bundle's {NETWORK_ID}")
        raise BrainLRPError(f"{message} (built from {config_path})",
                            f"the weights were saved from another network: check "
                            f"{NETWORK_ID} in {bundle.config_file}") from None
    try:
        check_grid_fits(BUNDLE_ARCH, grid.shape, config=bundle.config)
    except BrainLRPError as exc:
        shape = " x ".join(map(str, bundle.spatial_shape)) or "not stated"
        raise BrainLRPError(f"{exc.message} (the bundle's {NETWORK_ID}; its metadata's "
                            f"spatial_shape: {shape})",
                            "use a --resolution whose grid the network takes, or a "
                            "network that pools globally") from None


def import_bundle(cohort: str | os.PathLike, out: str | os.PathLike,
                  bundle: str | os.PathLike, classes: str | Sequence[str] | None = None,
                  resolution: float = 2.0, splits: str | os.PathLike | None = None,
                  normalisation: str = "minmax", **options) -> ImportResult:
    """Make the run directory ``out`` from the MONAI bundle in ``bundle``.

    Parameters
    ----------
    cohort, out : path-like
        As for :func:`~brainlrp.training.import_model`.
    bundle : path-like
        The bundle's folder (``configs/metadata.json``, ``configs/inference.json`` or
        ``.yaml`` with ``network_def``, ``models/model.pt``).
    classes : str or sequence of str, optional
        The outputs in order; default the metadata's
        ``network_data_format.outputs.pred.channel_def``.
    resolution, splits, normalisation
        As for :func:`~brainlrp.training.import_model`. The network must take the
        template grid at ``resolution``.
    **options
        ``batch_size``, ``overwrite``, ``cache_dir``, ``jobs``,
        ``allow_external_paths``, ``progress`` of :func:`~brainlrp.training.import_model`.

    Returns
    -------
    ImportResult
        Its ``notices`` start with what differs between the bundle's inputs and
        brainlrp's (also in the card's ``source.notes``).

    Raises
    ------
    BrainLRPError
        For a malformed bundle (naming the file), a network that does not build, take
        the grid or fit the weights, or inputs that would make its results meaningless.
    """
    found = read_bundle(bundle)
    names = stated_classes(classes, found.classes, found.root / METADATA,
                           f"network_data_format.outputs.{OUTPUT_KEY}.channel_def")
    grid = Grid.from_resolution(resolution)
    notices = input_notices(found, grid, normalisation)
    _checked_network(found, grid)
    code = (f"loading this run builds the bundle's {NETWORK_ID} with MONAI's parser: it "
            "imports the classes its _target_ names and runs its $ expressions")
    result = import_model(cohort, out, BUNDLE_ARCH, found.weights, classes=names,
                          resolution=resolution, model_kwargs={"config": found.config},
                          splits=splits, normalisation=normalisation,
                          input_format=found.input,
                          source=found.source([*notices, code]), **options)
    result.notices = [*notices, *result.notices]
    return result


__all__ = ["BUNDLE_ARCH", "Bundle", "import_bundle", "input_notices", "network_config",
           "read_bundle"]
