"""``brainlrp import-model --maps``: a ClinicaDL MAPS becomes a run that explain, analyze
and report take unchanged, its scans prepared as ClinicaDL's were; a malformed MAPS
stops with one line naming the file."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import textwrap

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from brainlrp.card import read_card
from brainlrp.cli import app
from brainlrp.data.grid import T1_LINEAR_CROP, Grid
from brainlrp.data.preprocess import Preprocessing, preprocess_image
from brainlrp.training import load_model
from brainlrp.training.maps import SIZE_REDUCTION, clinicadl_preprocessing, read_maps
from tests.conftest import TINY_NET, make_bids_cohort, one_line_error

runner = CliRunner()
GRID = Grid.from_resolution(6)
#: ClinicaDL's size reduction by 5 of the t1-linear crop: 32 x 40 x 32 at 5 mm, as small
#: as the tests' 6 mm grid.
FACTOR = 5
CROP = Grid.t1_linear()
REDUCED = CROP.sub_grid(*SIZE_REDUCTION[FACTOR], step=FACTOR)

#: A stand-in for ClinicaDL 1.x's ``clinicadl.utils.network``: a class built as ClinicaDL
#: builds its networks (input_size with channels first, gpu, output_size, dropout; a
#: forward pass on zeros sizes the dense layer; the network moved to its device).
FAKE_CLINICADL = textwrap.dedent("""
    import numpy as np
    import torch
    from torch import nn

    class PadMaxPool3d(nn.Module):
        # Zero-pads each axis at its start to a multiple of the stride, then max-pools.
        def __init__(self, kernel_size, stride):
            super().__init__()
            self.stride = stride
            self.pool = nn.MaxPool3d(kernel_size, stride)
            self.pad = nn.ConstantPad3d(padding=0, value=0)

        def forward(self, x):
            extra = [-x.size(i + 2) % self.stride for i in range(3)]
            self.pad.padding = (extra[2], 0, extra[1], 0, extra[0], 0)
            return self.pool(self.pad(x))

    class TinyCNN(nn.Module):
        def __init__(self, input_size, gpu=True, output_size=2, dropout=0.5):
            super().__init__()
            layers = [nn.Conv3d(input_size[0], 2, 3, padding=1), nn.BatchNorm3d(2),
                      nn.ReLU(), PadMaxPool3d(2, 2)]
            for _ in range(3):  # 32 x 40 x 32 -> 2 x 3 x 2: the last pool pads 5 to 6
                layers += [nn.Conv3d(2, 2, 3, padding=1), nn.ReLU(), PadMaxPool3d(2, 2)]
            convolutions = nn.Sequential(*layers)
            n = int(np.prod(convolutions(torch.zeros(input_size).unsqueeze(0)).shape))
            self.device = "cuda" if gpu else "cpu"
            self.convolutions = convolutions.to(self.device)
            self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(p=dropout),
                                    nn.Linear(n, output_size)).to(self.device)

        def forward(self, x):
            return self.fc(self.convolutions(x))
""")

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_bids_cohort(tmp_path_factory.mktemp("cohort"), GRID, 3, 3)


@pytest.fixture
def fake_clinicadl(tmp_path, monkeypatch):
    """An importable ``clinicadl`` 1.6.1 package holding :data:`FAKE_CLINICADL`."""
    root = tmp_path / "site"
    package = root / "clinicadl" / "utils" / "network"
    package.mkdir(parents=True)
    (root / "clinicadl" / "__init__.py").write_text("__version__ = '1.6.1'\n")
    (root / "clinicadl" / "utils" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(FAKE_CLINICADL)
    info = root / "clinicadl-1.6.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clinicadl\nVersion: 1.6.1\n")
    for name in [m for m in sys.modules if m.split(".")[0] == "clinicadl"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(root))
    yield
    for name in [m for m in sys.modules if m.split(".")[0] == "clinicadl"]:
        del sys.modules[name]


def tiny_cnn(seed: int = 0):
    """The stand-in network, trained for nothing but seeded (needs ``fake_clinicadl``)."""
    from clinicadl.utils.network import TinyCNN

    torch.manual_seed(seed)
    model = TinyCNN([1, *REDUCED.shape], gpu=False, dropout=0.2)
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model.convolutions[1].running_mean.uniform_(-0.1, 0.1)
        model.convolutions[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def make_maps(root, state, architecture="TinyCNN", groups=True, **params):
    """A ClinicaDL 1.x MAPS with one model, ``split-0/best-loss/model.pth.tar``."""
    maps = {"architecture": architecture, "network_task": "classification",
            "mode": "image", "multi_network": False, "input_size": [1, *REDUCED.shape],
            "output_size": 2, "dropout": 0.2, "label": "diagnosis",
            "label_code": {"AD": 0, "CN": 1}, "diagnoses": ["AD", "CN"],
            "selection_metrics": ["loss", "BA"], "normalize": True,
            "size_reduction": True, "size_reduction_factor": FACTOR,
            "preprocessing_dict": {"preprocessing": "t1-linear", "mode": "image",
                                   "use_uncropped_image": False, "prepare_dl": False},
            "gpu": True, "seed": 0} | params
    root.mkdir(parents=True)
    (root / "maps.json").write_text(json.dumps(maps, indent=4))
    (root / "environment.txt").write_text("numpy==1.26.4\nclinicadl==1.6.1\ntorch==2.3.0\n")
    best = root / "split-0" / "best-loss"
    best.mkdir(parents=True)
    torch.save({"model": state, "epoch": 7, "name": architecture}, best / "model.pth.tar")
    if groups:
        for group, pids in (("train", ["sub-001", "sub-004"]), ("validation", ["sub-002"])):
            folder = root / "groups" / group / "split-0"
            folder.mkdir(parents=True)
            pd.DataFrame({"participant_id": pids, "session_id": "ses-M000",
                          "cohort": "single", "diagnosis": "CN"}).to_csv(
                folder / "data.tsv", sep="\t")
    return root


def clinicadl_input(path) -> torch.Tensor:
    """What ClinicaDL feeds its network for a scan: the 1 mm t1-linear crop (resampled
    here from the test scan), MinMax over the whole image, then one voxel in 5."""
    from nilearn.image import resample_img

    crop = resample_img(nib.load(path), target_affine=CROP.affine_array,
                        target_shape=CROP.shape, interpolation="linear",
                        force_resample=True, copy_header=True).get_fdata(dtype=np.float32)
    crop = (crop - crop.min()) / (crop.max() - crop.min())
    return torch.from_numpy(np.ascontiguousarray(crop[4:164:5, 0:200:5, 8:168:5]))[None]


def test_the_t1_linear_crop_and_size_reduction_follow_clinicadl():
    assert CROP.shape == (169, 208, 179) and CROP.resolution == 1
    np.testing.assert_allclose(CROP.affine_array[:3, 3], [-84, -119, -78])
    full = Grid.from_resolution(1)
    rng = np.random.default_rng(0)
    data = rng.random(full.shape, dtype=np.float32)
    data[12, 13, 0] = 5.0  # the crop's brightest voxel, which the size reduction skips
    img = nib.Nifti1Image(data, full.affine_array)
    box = tuple(slice(a, b) for a, b in T1_LINEAR_CROP)
    expected = (data[box] - data[box].min()) / (data[box].max() - data[box].min())
    prep, name = clinicadl_preprocessing({"mode": "image", "preprocessing": "t1-linear",
                                          "size_reduction": False})
    assert name == "t1-linear, cropped, MinMax" and not prep.mask
    cropped = preprocess_image(img, prep)
    np.testing.assert_allclose(cropped, expected, atol=1e-6)
    prep, _ = clinicadl_preprocessing({"mode": "image", "preprocessing": "t1-linear",
                                       "size_reduction": True, "size_reduction_factor": 5})
    reduced = preprocess_image(nib.Nifti1Image(data[box], CROP.affine_array), prep)
    np.testing.assert_allclose(reduced, expected[4:164:5, 0:200:5, 8:168:5], atol=1e-6)
    assert reduced.shape == (32, 40, 32) and reduced.max() < 0.9  # scaled before reducing
    assert Preprocessing.from_dict(prep.to_dict()).key() == prep.key()


def test_sub_grids_on_a_small_grid():
    grid = Grid(shape=(7, 8, 9), affine=((2, 0, 0, -7), (0, 2, 0, 3), (0, 0, 2, 1),
                                         (0, 0, 0, 1)), resolution=2.0)
    sub = grid.sub_grid((1, 2, 3), (6, 8, 9), step=2)
    assert sub.shape == (3, 3, 3) and sub.resolution == 4
    np.testing.assert_allclose(sub.affine_array[:3, 3], grid.affine_array[:3, :3]
                               @ [1, 2, 3] + grid.affine_array[:3, 3])
    values = np.arange(7 * 8 * 9).reshape(7, 8, 9)
    assert values[grid.slices_of(sub)][1, 2, 0] == values[3, 6, 3]
    off = sub.affine_array
    off[0, 3] += 1.0
    shifted = Grid(sub.shape, tuple(tuple(row) for row in off), sub.resolution)
    assert grid.slices_of(shifted) is None  # 1 mm off the voxel centres
    with pytest.raises(ValueError, match="not a box"):
        grid.sub_grid((0, 0, 0), (8, 8, 9))


def test_a_maps_through_explain_analyze_report(tmp_path, cohort, fake_clinicadl):
    model = tiny_cnn()
    maps = make_maps(tmp_path / "maps", model.state_dict())
    run = tmp_path / "run"
    result = runner.invoke(app, ["import-model", str(cohort), "--out", str(run), "--maps",
                                 str(maps), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "AD = output 0" in result.output and "2 train, 1 val, 3 test" in result.output
    card = read_card(run)
    assert (card.architecture, card.model_kwargs["network"]) == ("clinicadl", "TinyCNN")
    assert card.classes == ["AD", "HC"] and card.target_class == 0
    source = card.source
    weights = maps / "split-0" / "best-loss" / "model.pth.tar"
    assert (source.kind, source.path, source.name, source.version) == (
        "clinicadl-maps", str(maps), "TinyCNN", "1.6.1")
    assert (source.split, source.selection_metric, source.config) == (0, "loss", "maps.json")
    assert source.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert source.preprocessing == "t1-linear, cropped, MinMax, size reduction 5"
    assert card.grid == REDUCED and card.prep.scale_grid == CROP and not card.prep.mask
    splits = pd.read_csv(run / "splits.tsv", sep="\t").set_index("participant_id")["split"]
    assert (splits["sub-001"], splits["sub-002"], splits["sub-003"]) == ("train", "val", "test")

    # p_ad is AD's softmax (output 0) on the input ClinicaDL would have made.
    pred = pd.read_csv(run / "predictions.tsv", sep="\t", dtype={"scan_id": str})
    row = pred.iloc[0]
    scan = cohort / row["participant_id"] / "anat" / f"{row['participant_id']}_T1w.nii.gz"
    with torch.no_grad():
        expected = torch.softmax(model(clinicadl_input(scan)[None]), dim=1)[0, 0].item()
    assert row["p_ad"] == pytest.approx(expected, abs=1e-5)

    shutil.rmtree(maps)  # the run needs the MAPS no more
    reloaded, _ = load_model(run)
    assert type(reloaded).__name__ == "TinyCNN" and not reloaded.training
    for args in (["explain", str(run), "-m", "lrp-b0", "--quiet"],
                 ["analyze", str(run), "--no-sanity", "--no-costs", "--faithfulness-subjects", "1",
                  "--faithfulness-steps", "2"],
                 ["report", str(run), "--no-cards", "--quiet"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    test_scan = pred.loc[pred["split"] == "test", "scan_id"].iloc[0]
    heatmap = nib.load(run / "heatmaps" / "lrp-b0" / f"{test_scan}.nii.gz")
    assert heatmap.shape == REDUCED.shape
    np.testing.assert_allclose(heatmap.affine, REDUCED.affine_array, atol=1e-4)
    assert (run / "report" / "index.html").is_file()
    with pytest.MonkeyPatch.context() as gone:  # ClinicaDL gone: loading says why
        for name in [m for m in sys.modules if m.split(".")[0] == "clinicadl"]:
            gone.setitem(sys.modules, name, None)
        line = one_line_error(["explain", str(run), "-m", "gradient", "--quiet"])
    assert "ClinicaDL is not installed" in line and "brainlrp[clinicadl]" in line


def test_a_maps_naming_a_brainlrp_factory_needs_no_clinicadl(tmp_path, cohort, monkeypatch):
    (tmp_path / "mynets.py").write_text(TINY_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    from mynets import net

    maps = make_maps(tmp_path / "maps", net(REDUCED.shape, width=3).state_dict(),
                     architecture="mynets:net", groups=False, label_code={},
                     diagnoses=["CN", "AD"], selection_metrics=[])
    found = read_maps(maps, model_kwargs={"width": 3})
    assert (found.arch, found.classes, found.selection_metric) == ("mynets:net",
                                                                   ["AD", "CN"], "loss")
    result = runner.invoke(app, ["import-model", str(cohort), "--out", str(tmp_path / "run"),
                                 "--maps", str(maps), "--model-kwargs", '{"width": 3}',
                                 "--classes", "CN,AD", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "every scan is a test scan" in result.output
    card = read_card(tmp_path / "run")
    assert card.classes == ["HC", "AD"] and card.model_kwargs == {"width": 3}
    assert card.source.kind == "clinicadl-maps" and card.grid == REDUCED


def test_lrp_passes_clinicadl_zero_padding(fake_clinicadl):
    from clinicadl.utils.network import PadMaxPool3d

    from brainlrp.errors import BrainLRPError
    from brainlrp.explain.lrp import lrp

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3, padding=1), torch.nn.ReLU(),
                              PadMaxPool3d(2, 2), torch.nn.Flatten(),
                              torch.nn.Linear(2 * 4 * 4 * 3, 2)).eval()
    x = torch.rand(1, 1, 7, 8, 5, requires_grad=True)  # pads x and z
    relevance = lrp(net, x.detach(), "epsilon", target=1, start="logit").relevance
    (gradient,) = torch.autograd.grad(net(x)[0, 1], x)
    # On a ReLU network LRP-0 is gradient x input: padding moved relevance unchanged.
    np.testing.assert_allclose(relevance.numpy(), (gradient * x).detach().numpy(),
                               rtol=1e-4, atol=1e-6)
    net[2].pad.value = 0.5
    with pytest.raises(BrainLRPError, match="value=0.5"):
        lrp(net, x.detach(), "epsilon", target=1, start="logit")


def _maps_error(cohort, out, maps, *extra) -> str:
    line = one_line_error(["import-model", str(cohort), "--out", str(out), "--maps",
                           str(maps), *extra])
    assert not out.exists()
    return line


def test_a_malformed_maps_stops_with_one_line(tmp_path, cohort, fake_clinicadl):
    out = tmp_path / "run"
    state = tiny_cnn().state_dict()
    maps = make_maps(tmp_path / "maps", state)
    line = _maps_error(cohort, out, tmp_path / "nowhere")
    assert "MAPS folder not found" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"no maps.json in {empty}" in _maps_error(cohort, out, empty)
    broken = make_maps(tmp_path / "broken", state)
    (broken / "maps.json").write_text('{"architecture": "TinyCNN",')
    assert f"{broken / 'maps.json'} is not valid JSON" in _maps_error(cohort, out, broken)
    line = _maps_error(cohort, out, maps, "--split", "3")
    assert f"no split-3 in {maps}" in line and "split-0" in line
    line = _maps_error(cohort, out, maps, "--selection-metric", "BA")
    assert "no best-BA in" in line and "best-loss" in line
    (maps / "split-0" / "best-loss" / "model.pth.tar").rename(maps / "model.pth.tar")
    assert "no model.pth.tar in" in _maps_error(cohort, out, maps)


def test_a_maps_brainlrp_cannot_use_stops_with_one_line(tmp_path, cohort, fake_clinicadl):
    out = tmp_path / "run"
    state = tiny_cnn().state_dict()

    def maps(name, **params):
        return make_maps(tmp_path / name, state, **params)

    line = _maps_error(cohort, out, maps("unknown", architecture="NoSuchNet"))
    assert "maps.json: ClinicaDL 1.6.1 has no network 'NoSuchNet'" in line
    wrong = tiny_cnn().state_dict() | {"fc.2.weight": torch.zeros(2, 3)}
    line = _maps_error(cohort, out, make_maps(tmp_path / "wrong", wrong))
    assert "model.pth.tar do not fit the 'TinyCNN' architecture" in line
    assert "'fc.2.weight' has shape (2, 3)" in line and "maps.json" in line
    line = _maps_error(cohort, out, maps("slices", preprocessing_dict={
        "preprocessing": "t1-linear", "mode": "slice"}))
    assert "mode 'slice'" in line and "image" in line
    line = _maps_error(cohort, out, maps("pet", preprocessing_dict={
        "preprocessing": "pet-linear", "mode": "image"}))
    assert "preprocessing 'pet-linear'" in line
    line = _maps_error(cohort, out, maps("size", input_size=[1, 169, 208, 179]))
    assert "input_size [1, 169, 208, 179]" in line and "[1, 32, 40, 32]" in line
    line = _maps_error(cohort, out, maps("mci", label_code={"AD": 0, "MCI": 1}))
    assert "labels AD,MCI" in line and "--classes" in line
    line = _maps_error(cohort, out, maps("regression", network_task="regression"))
    assert "network_task 'regression'" in line
    line = _maps_error(cohort, out, maps("ok"), "--arch", "tiny")
    assert "--maps brings its own network" in line and "--arch" in line
    line = _maps_error(cohort, out, tmp_path / "ok", "--resolution", "2")  # even the default
    assert "--resolution cannot go with it" in line


def test_clinicadl_networks_need_clinicadl(tmp_path, cohort, monkeypatch):
    for name in ["clinicadl", *[m for m in sys.modules if m.startswith("clinicadl.")]]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    maps = make_maps(tmp_path / "maps", {"w": torch.zeros(1)}, architecture="Conv5_FC3")
    line = _maps_error(cohort, tmp_path / "run", maps)
    assert "'Conv5_FC3'" in line and "pip install 'brainlrp[clinicadl]'" in line
    assert "maps.json" in line


def test_real_clinicadl_conv5_fc3(tmp_path, cohort):
    pytest.importorskip("clinicadl.utils.network",
                        reason="ClinicaDL 1.x is an optional extra (docs/models.md)")
    from clinicadl.utils.network import Conv5_FC3

    from brainlrp.explain import explain

    torch.manual_seed(0)
    model = Conv5_FC3([1, *REDUCED.shape], gpu=False).eval()
    maps = make_maps(tmp_path / "maps", model.state_dict(), architecture="Conv5_FC3")
    result = runner.invoke(app, ["import-model", str(cohort), "--out", str(tmp_path / "run"),
                                 "--maps", str(maps), "--quiet"])
    assert result.exit_code == 0, result.output
    reloaded, card = load_model(tmp_path / "run")
    x = torch.rand(1, 1, *REDUCED.shape)
    heat = explain(reloaded, x, "lrp-b0", target=card.target_class)
    assert heat.shape == x.shape and torch.isfinite(heat).all()
