"""``brainlrp import-model --bundle``: a MONAI bundle becomes a run that explain, analyze
and report take unchanged, and that reloads without the bundle's folder; a malformed
bundle stops with one line naming the file."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from brainlrp.card import ModelCard, ModelSource, read_card
from brainlrp.cli import app
from brainlrp.data import load_inputs
from brainlrp.data.grid import Grid
from brainlrp.data.preprocess import Preprocessing
from brainlrp.explain import explain
from brainlrp.explain.call import MethodCalls
from brainlrp.training import import_bundle, load_model
from tests.conftest import make_bids_cohort, one_line_error

runner = CliRunner()
GRID = Grid.from_resolution(6)
BOX = "lrp-epsilon-gamma-box"

#: A tiny MONAI DenseNet (964 parameters) whose input channels come from another item.
NETWORK_DEF = {"_target_": "monai.networks.nets.DenseNet", "spatial_dims": 3,
               "in_channels": "@in_channels", "out_channels": 2, "init_features": 2,
               "growth_rate": 2, "block_config": [1, 1], "bn_size": 1}


def _network(network_def: dict):
    from monai.bundle import ConfigParser

    return ConfigParser({"in_channels": 1, "network_def": network_def}
                        ).get_parsed_content("network_def")


def make_bundle(root, *, value_range=(0, 1), spatial_shape=(33, 39, 33),
                channel_def=None, fmt="json", num_channels=1, seed=0, under_key=None,
                network_def=None):
    """A MONAI bundle folder: metadata.json, an inference config, models/model.pt."""
    network_def = dict(network_def or NETWORK_DEF)
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    image = {"type": "image", "format": "magnitude", "modality": "MR",
             "num_channels": num_channels, "spatial_shape": list(spatial_shape),
             "dtype": "float32", "value_range": list(value_range), "is_patch_data": False}
    pred = {"type": "probabilities", "format": "classes", "num_channels": 2,
            "spatial_shape": [2], "dtype": "float32", "value_range": [0, 1]}
    if channel_def is not None:
        pred["channel_def"] = channel_def
    metadata = {"name": "Tiny AD classifier", "version": "0.3.1",
                "network_data_format": {"inputs": {"image": image},
                                        "outputs": {"pred": pred}}}
    (root / "configs" / "metadata.json").write_text(json.dumps(metadata))
    config = {"imports": ["$import glob"], "bundle_root": ".", "in_channels": 1,
              "network_def": network_def,
              "preprocessing": {"_target_": "Compose", "transforms": [
                  {"_target_": "LoadImaged", "keys": "image"},
                  {"_target_": "ScaleIntensityd", "keys": "image"}]},
              "dataset": {"_target_": "Dataset", "data": "@datalist_nowhere"}}
    if fmt == "json":
        (root / "configs" / "inference.json").write_text(json.dumps(config))
    else:
        (root / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(seed)
    state = _network(network_def).state_dict()
    torch.save({under_key: state} if under_key else state, root / "models" / "model.pt")
    return root


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_bids_cohort(tmp_path_factory.mktemp("cohort"), GRID, 3, 3)


def test_bundle_through_explain_analyze_report(tmp_path, cohort):
    bundle = make_bundle(tmp_path / "bundle", value_range=(-1, 2),
                         spatial_shape=("16*n", "16*n", "16*n"),
                         channel_def={"1": "CN", "0": "AD"})
    sha = hashlib.sha256((bundle / "models" / "model.pt").read_bytes()).hexdigest()
    run = tmp_path / "run"
    result = runner.invoke(app, ["import-model", str(cohort), "--out", str(run),
                                 "--bundle", str(bundle), "--resolution", "6", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "AD = output 0" in result.output  # the class order came from channel_def
    notes = [ln for ln in result.output.splitlines() if ln.startswith("note: ")]
    assert any("values in [-1, 2]" in n and "box rule's bounds are [-1, 2]" in n
               for n in notes), notes
    assert any("16*n x 16*n x 16*n" in n for n in notes)  # 33 x 39 x 33 is no 16*n
    assert any("LoadImaged, ScaleIntensityd) is not run" in n for n in notes)

    card = read_card(run)
    assert card.architecture == "monai-bundle"
    config = card.model_kwargs["config"]
    assert set(config) == {"network_def", "in_channels"}  # what network_def refers to
    assert card.input.value_range == (-1.0, 2.0) and card.input.channels == 1
    assert card.classes == ["AD", "HC"] and card.target_class == 0
    source = card.source
    assert (source.kind, source.name, source.version) == ("monai-bundle",
                                                          "Tiny AD classifier", "0.3.1")
    assert source.path == str(bundle.absolute()) and source.sha256 == sha
    assert source.config == "configs/inference.json"
    assert any("runs its $ expressions" in n for n in source.notes)
    assert json.loads((run / "run.json").read_text())["stages"]["import"]["source"][
        "sha256"] == sha

    # The run rebuilds the network from the card's config: the folder may go.
    shutil.rmtree(bundle)
    model, _ = load_model(run)
    assert type(model).__name__ == "DenseNet"
    pred = pd.read_csv(run / "predictions.tsv", sep="\t", dtype={"scan_id": str})
    ids = pred["scan_id"].tolist()[:2]
    x = torch.from_numpy(load_inputs(run, ids, card.prep))
    with torch.no_grad():
        p_ad = torch.softmax(model(x), dim=1)[:, 0].numpy()
    np.testing.assert_allclose(pred["p_ad"].to_numpy()[:2], p_ad, rtol=1e-4, atol=1e-6)

    # The box rule's bounds are the card's value range, not [0, 1].
    calls = MethodCalls.of_card(run, card)
    assert {k: calls.method_kwargs(BOX)[k] for k in ("low", "high")} == {"low": -1.0,
                                                                        "high": 2.0}
    result = runner.invoke(app, ["explain", str(run), "-m", f"gradient,{BOX}", "--quiet"])
    assert result.exit_code == 0, result.output
    import nibabel as nib

    stored = np.asarray(nib.load(run / "heatmaps" / BOX / f"{ids[0]}.nii.gz").dataobj)
    expected = explain(model, x[:1], BOX, target=0, low=-1.0, high=2.0)[0, 0].detach()
    unit_box = explain(model, x[:1], BOX, target=0, low=0.0, high=1.0)[0, 0].detach()
    atol = 1e-5 * float(expected.abs().max())
    np.testing.assert_allclose(stored, expected.numpy(), rtol=1e-3, atol=atol)
    assert not np.allclose(stored, unit_box.numpy(), rtol=1e-3, atol=atol)

    result = runner.invoke(app, ["analyze", str(run), "--no-sanity", "--no-costs",
                                 "--faithfulness-subjects", "1", "--faithfulness-steps", "2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", str(run), "--no-cards", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (run / "report" / "index.html").is_file()


def test_yaml_bundle_in_python_classes_from_the_caller(tmp_path, cohort):
    bundle = make_bundle(tmp_path / "bundle", fmt="yaml", under_key="model")
    with pytest.raises(Exception, match="names no class order"):
        import_bundle(cohort, tmp_path / "run", bundle, resolution=6, progress=False)
    result = import_bundle(cohort, tmp_path / "run", bundle, classes="CN,AD", resolution=6,
                           progress=False)
    assert result.classes == ["HC", "AD"] and result.target_class == 1
    # [0, 1] and the grid's own shape: only the bundle's preprocessing is worth a notice.
    assert len(result.notices) == 1 and "is not run" in result.notices[0]
    card = read_card(tmp_path / "run")
    assert card.input.value_range == (0.0, 1.0)
    assert card.source.config == "configs/inference.yaml"
    model, _ = load_model(tmp_path / "run")
    saved = torch.load(bundle / "models" / "model.pt", weights_only=True)["model"]
    assert torch.equal(model.state_dict()["class_layers.out.weight"],
                       saved["class_layers.out.weight"])


def _write(path, text):
    path.write_text(text)


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _image(data):
    return data["network_data_format"]["inputs"]["image"]


MALFORMED = {
    "no folder": (shutil.rmtree, "bundle folder not found"),
    "no metadata": (lambda b: (b / "configs" / "metadata.json").unlink(),
                    "configs/metadata.json is missing"),
    "metadata not JSON": (lambda b: _write(b / "configs" / "metadata.json", "{name: 1"),
                          "metadata.json is not valid JSON"),
    "no network_data_format": (
        lambda b: _edit_json(b / "configs" / "metadata.json",
                             lambda d: d.pop("network_data_format")),
        "metadata.json has no network_data_format"),
    "no inference config": (lambda b: (b / "configs" / "inference.json").unlink(),
                            "has no configs/inference.json"),
    "inference config not JSON": (
        lambda b: _write(b / "configs" / "inference.json", '{"network_def": {'),
        "cannot read "),
    "no network_def": (lambda b: _edit_json(b / "configs" / "inference.json",
                                            lambda d: d.pop("network_def")),
                       "inference.json has no network_def"),
    "network_def does not build": (
        lambda b: _edit_json(b / "configs" / "inference.json",
                             lambda d: d["network_def"].update(_target_="NoSuchNet3000")),
        "MONAI cannot build the bundle's network_def"),
    "network_def refers to nothing": (
        lambda b: _edit_json(b / "configs" / "inference.json",
                             lambda d: d["network_def"].update(growth_rate="@nowhere")),
        "network_def refers to @nowhere"),
    "no model.pt": (lambda b: (b / "models" / "model.pt").unlink(), "has no models/model.pt"),
    "weights that do not fit": (
        lambda b: torch.save(_network(NETWORK_DEF | {"growth_rate": 3}).state_dict(),
                             b / "models" / "model.pt"),
        "model.pt do not fit"),
    "two input channels": (
        lambda b: _edit_json(b / "configs" / "metadata.json",
                             lambda d: _image(d).update(num_channels=2)),
        "takes 2 input channels"),
    "value range without [0, 1]": (
        lambda b: _edit_json(b / "configs" / "metadata.json",
                             lambda d: _image(d).update(value_range=[-1, 0.5])),
        "takes values in [-1, 0.5] but brainlrp's inputs are min-max"),
    "channel_def without AD": (
        lambda b: _edit_json(b / "configs" / "metadata.json",
                             lambda d: d["network_data_format"]["outputs"]["pred"].update(
                                 channel_def={"0": "HC", "1": "MCI"})),
        "channel_def HC,MCI"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_bundle_stops_with_one_line(tmp_path, case):
    break_it, expected = MALFORMED[case]
    bundle = make_bundle(tmp_path / "bundle", channel_def={"0": "HC", "1": "AD"})
    break_it(bundle)
    out = tmp_path / "run"
    line = one_line_error(["import-model", str(tmp_path / "cohort"), "--out", str(out),
                           "--bundle", str(bundle), "--resolution", "6"])
    assert expected in line, line
    assert str(bundle) in line  # the error names the file or folder at fault
    assert not out.exists()


def test_bundle_or_arch_and_weights(tmp_path):
    bundle = make_bundle(tmp_path / "bundle", channel_def={"0": "HC", "1": "AD"})
    args = ["import-model", str(tmp_path / "cohort"), "--out", str(tmp_path / "run")]
    line = one_line_error([*args, "--bundle", str(bundle), "--arch", "tiny"])
    assert "--bundle brings its own network and weights: --arch cannot go with it" in line
    line = one_line_error([*args, "--bundle", str(bundle), "--weights",
                           str(bundle / "models" / "model.pt")])
    assert "--weights cannot go with it" in line
    line = one_line_error(args)
    assert "needs the model: --arch NAME and --weights FILE, or --bundle FOLDER" in line
    line = one_line_error([*args, "--arch", "tiny"])
    assert "needs the model" in line


def test_card_source_round_trip_and_older_cards():
    source = ModelSource(kind="monai-bundle", path="/b", name="x", version="1",
                         config="configs/inference.json", sha256="ab", notes=("n",))
    card = ModelCard(architecture="tiny", model_kwargs={},
                     preprocessing=Preprocessing(grid=GRID).to_dict(), source=source)
    data = json.loads(json.dumps(card.to_dict()))
    assert ModelCard.from_dict(data).source == source
    assert source.describe() == "monai-bundle 'x' 1 (/b)"
    del data["source"]  # a card written before the field existed
    assert ModelCard.from_dict(data).source is None
