"""The Python API (``brainlrp.api``, ``import brainlrp as bl``) and its example notebook.

The quickstart notebook (``examples/quickstart.py``, paired with ``quickstart.ipynb``)
is executed once; the run it makes is the ``run_dir`` of the API's examples, which run
as doctests. What the examples cannot show is tested below them. With
``BRAINLRP_NOTEBOOK_OUT=DIR`` the executed notebook and its heatmap image
(``DIR/quickstart.ipynb``, ``DIR/quickstart-heatmap.png``) are kept.
"""

from __future__ import annotations

import doctest
import importlib.util
import inspect
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import brainlrp
from brainlrp import api, catalog
from brainlrp.errors import BrainLRPError

# One worker executes the notebook and runs every test of this module on its run.
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "quickstart.ipynb"


def _executor():
    spec = importlib.util.spec_from_file_location("execute", EXAMPLES / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The executed quickstart notebook and the folder it worked in."""
    work = tmp_path_factory.mktemp("quickstart")
    executor = _executor()
    out = None if os.environ.get(executor.OUT_VARIABLE) else work / "out"
    with pytest.MonkeyPatch.context() as patch:
        # The session's cache (tests/conftest.py), which its per-test fixture sets only
        # after module fixtures: the kernel inherits it.
        patch.setenv("BRAINLRP_CACHE_DIR", str(tmp_path_factory.getbasetemp()
                                               / "brainlrp-cache"))
        notebook, info = executor.execute(NOTEBOOK, work, out, timeout=120)
    return notebook, info, work / "brainlrp-quickstart"


def test_the_notebook_and_its_script_hold_the_same_cells():
    """quickstart.ipynb is quickstart.py paired by jupytext (``jupytext --sync
    examples/quickstart.py`` after editing either)."""
    import jupytext

    script = jupytext.read(EXAMPLES / "quickstart.py")
    notebook = jupytext.read(NOTEBOOK)
    cells = [[(c.cell_type, c.source.strip()) for c in nb.cells] for nb in (script, notebook)]
    assert cells[0] == cells[1], "run `jupytext --sync examples/quickstart.py`"
    assert all(not c.get("outputs") for c in notebook.cells), "commit the notebook unexecuted"


def test_the_notebook_runs_and_shows_a_heatmap_regions_and_the_benchmark(quickstart):
    notebook, info, work = quickstart
    images = [o for c in notebook.cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "the heatmap cell displayed no image"
    assert info["image"] is not None and info["image"].read_bytes()[:4] == b"\x89PNG"
    tables = [o["data"]["text/plain"] for c in notebook.cells for o in c.get("outputs", [])
              if "text/html" in o.get("data", {})]
    assert any("mean_density" in t for t in tables) and any("mass_accuracy" in t
                                                            for t in tables)
    errors = [o for c in notebook.cells for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    run = api.Run(work / "run")
    assert set(catalog.default_methods()[:1]) <= set(run.methods())


def test_the_examples_run(quickstart, tmp_path):
    """Every example of the API runs and prints what its docstring says."""
    work = quickstart[2]
    globs = {"bl": brainlrp, "run_dir": work / "run", "cohort_dir": work / "cohort",
             "tmp_dir": tmp_path}
    tests = doctest.DocTestFinder().find(api, "brainlrp.api", extraglobs=globs)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
    assert result.attempted >= 40


def test_every_public_name_has_a_numpydoc_example():
    """Each class and function the API defines, and each public method and property of
    :class:`~brainlrp.api.Run`, shows an example (so runs in the test above)."""
    own = [(n, getattr(api, n)) for n in api.__all__
           if getattr(getattr(api, n), "__module__", None) == api.__name__]
    members = own + [(f"Run.{n}", m) for n, m in vars(api.Run).items()
                     if not n.startswith("_") and (inspect.isfunction(m)
                                                   or isinstance(m, property))]
    missing = [name for name, m in members
               if "Examples\n" not in ((m.fget if isinstance(m, property) else m).__doc__
                                       or "")]
    assert not missing, f"no Examples section: {missing}"
    assert len(members) > 25


def test_the_package_gives_the_api():
    """``bl.<name>`` is the API's name (imported at first use: tests/test_architecture.py
    checks that ``import brainlrp`` alone does not load it)."""
    assert set(brainlrp._API) == set(api.__all__) - {"simulate"}
    assert all(getattr(brainlrp, n) is getattr(api, n) for n in brainlrp._API)
    assert {"Run", "explain_tensor"} <= set(dir(brainlrp))
    assert brainlrp.simulate_cohort is api.simulate is brainlrp.simulate.simulate
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        brainlrp.nothing  # noqa: B018


def test_tensor_controls_build_the_runs_references(quickstart):
    """Controls held in memory give the run's own mean and knn references (and their
    restored forms): the same kinds, fitted the same way."""
    from brainlrp.data.reference import References, training_control_paths

    run = api.Run(quickstart[2] / "run")
    prep = run.card.prep
    refs = References(run.dir, prep)
    controls = np.stack([np.load(p) for p in refs.control_arrays()])
    assert len(controls) == len(training_control_paths(run.dir))
    ids = run.scan_ids("test")
    x = run.inputs(ids).numpy()
    mine = api.TensorControls(controls, prep.grid.shape)
    for kind in ("knn", "knn-restore", "mean-restore"):
        np.testing.assert_allclose(mine.get(kind, x), refs.get(kind, ids, x), atol=1e-6,
                                   err_msg=kind)


def test_a_run_and_its_controls_explain_alike(quickstart):
    """Through the run or through its controls in memory, lrp-ref@knn explains the same
    scans against the same reference; the gap is the engine's."""
    from brainlrp.data.reference import References

    run = api.Run(quickstart[2] / "run")
    ids = run.scan_ids("test")[:2]
    x = run.inputs(ids)
    method = catalog.with_reference("lrp-ref", "knn")
    by_run = run.explain_tensor(x, method)
    controls = np.stack([np.load(p) for p in References(run.dir, run.card.prep)
                         .control_arrays()])
    in_memory = api.explain_tensor(run.model(), x, method, controls=torch.from_numpy(controls))
    torch.testing.assert_close(by_run.relevance, in_memory.relevance)
    assert by_run.conserves and by_run.method == method
    torch.testing.assert_close(by_run.gap, by_run.totals - by_run.explained.double())


def test_targets_by_name_follow_the_class_order(quickstart):
    run = api.Run(quickstart[2] / "run")
    x = run.inputs(run.scan_ids()[:1])
    ad = run.explain_tensor(x, "gradient", target="AD")
    hc = api.explain_tensor(run.model(), x, "gradient", target="AD", classes=["AD", "HC"])
    assert ad.target.tolist() == [1] and hc.target.tolist() == [0]
    torch.testing.assert_close(ad.p_target + hc.p_target, torch.ones(1))


def test_references_given_as_images_and_files(quickstart, tmp_path):
    """A NIfTI reference is a T1 scan preprocessed like the run's scans (a cohort scan
    comes back as the model saw it); without a run an image is used as it is and must be
    on the scans' grid."""
    import nibabel as nib

    work = quickstart[2]
    run = api.Run(work / "run")
    ids = run.scan_ids()
    x = run.inputs(ids[:1])
    path = work / "cohort" / ids[1] / "anat" / f"{ids[1]}_T1w.nii.gz"
    by_file = run.explain_tensor(x, "lrp-ref", reference=path)
    assert by_file.method == catalog.with_reference("lrp-ref", f"{ids[1]}_T1w")
    torch.testing.assert_close(by_file.reference, run.inputs(ids[1:2]))
    image = nib.Nifti1Image(run.inputs(ids[1:2])[0, 0].numpy(), np.eye(4))
    as_is = api.explain_tensor(run.model(), x, "lrp-ref", reference=image)
    assert as_is.method == "lrp-ref"
    torch.testing.assert_close(as_is.relevance, by_file.relevance)
    small = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4))
    with pytest.raises(BrainLRPError, match="not the scans'"):
        api.explain_tensor(run.model(), x, "lrp-ref", reference=small)


def test_run_readers_refuse_what_is_not_there(quickstart):
    run = api.Run(quickstart[2] / "run")
    with pytest.raises(BrainLRPError, match="run.explain"):
        run.heatmap("gb", run.scan_ids()[0])
    with pytest.raises(BrainLRPError, match="run.analyze"):
        run.group_mean("gb", "AD")
    with pytest.raises(BrainLRPError, match="subjects or groups"):
        run.regions("lrp-b0", "areas")
    with pytest.raises(TypeError, match="unexpected option"):
        run.analyze(no_such_option=1)
    assert api.Run(run).path == run.path


def test_bad_inputs_are_refused_with_a_fix():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(24, 2))
    x = torch.rand(1, 1, 2, 3, 4)
    with pytest.raises(BrainLRPError, match="give \\(X, Y, Z\\)"):
        api.explain_tensor(model, torch.rand(2, 3), "gradient")
    with pytest.raises(BrainLRPError, match="do not fit scans"):
        api.explain_tensor(model, x, "lrp-ref@mean", controls=torch.rand(3, 2, 3, 5))
    with pytest.raises(BrainLRPError, match="no class 'MCI'"):
        api.explain_tensor(model, x, "gradient", target="MCI")
    with pytest.raises(BrainLRPError, match="no grid"):
        api.explain_tensor(model, x, "gradient").to_nifti()
    # 3-D scans and arrays are batched; an index target is kept.
    one = api.explain_tensor(model, np.random.default_rng(0).random((2, 3, 4)), "gradient",
                             target=0)
    assert one.relevance.shape == (1, 1, 2, 3, 4) and one.target.tolist() == [0]


def test_docs_api_md_names_every_public_name():
    """docs/api.md documents each name the package gives and each method of a run."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    names = [f"bl.{n}" for n in brainlrp._API]
    names += [f"run.{n}" for n in vars(api.Run) if not n.startswith("_")]
    missing = [n for n in names if f"`{n}" not in text]
    assert not missing, f"docs/api.md does not document {missing}"
