"""The registry of reference kinds: estimators fitted on a run's training controls, the
catalog's one list of kinds, and ``twin``/``rescan`` registered from ``simulate``."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from brainlrp import catalog
from brainlrp.data.grid import Grid
from brainlrp.data.preprocess import Preprocessing
from brainlrp.data.reference import (
    BASE_KINDS,
    CONTROL_KINDS,
    REFERENCE_KINDS,
    RESTORE,
    KnnReference,
    MeanReference,
    PcaReference,
    Reference,
    References,
    register_reference,
    registered_kinds,
)
from brainlrp.errors import BrainLRPError

GRID = Grid.from_resolution(6)


def test_the_kinds_are_the_catalogs():
    assert BASE_KINDS == ("mean", "knn", "pca", "twin", "rescan")
    assert set(REFERENCE_KINDS) == set(catalog.REFERENCE_LABELS)
    assert {k.removesuffix(RESTORE) for k in catalog.TWIN_REFERENCES} == {"twin", "rescan"}
    assert CONTROL_KINDS == ("knn", "pca")
    with pytest.raises(ValueError, match="not a reference kind of brainlrp.catalog"):
        register_reference("median", MeanReference)


def test_every_kind_has_an_estimator_once_simulate_is_loaded():
    import brainlrp.simulate  # noqa: F401
    from brainlrp.simulate.references import RescanReference, TwinReference

    assert set(registered_kinds()) == set(BASE_KINDS)
    for factory in (MeanReference, KnnReference, PcaReference, TwinReference,
                    RescanReference):
        assert isinstance(factory(), Reference)


def _fresh(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ))
    return out.stdout.strip()


def test_data_alone_names_the_missing_kind(tmp_path):
    """Without brainlrp.simulate the kinds from the controls are there, and a twin
    reference says where it comes from (data never imports simulate)."""
    code = ("import sys\n"
            "from brainlrp.data.grid import Grid\n"
            "from brainlrp.data.preprocess import Preprocessing\n"
            "from brainlrp.data.reference import References, registered_kinds\n"
            "from brainlrp.errors import BrainLRPError\n"
            f"refs = References({str(tmp_path)!r}, Preprocessing(Grid.from_resolution(6)))\n"
            "try:\n"
            "    refs.twin('sub-01')\n"
            "except BrainLRPError as exc:\n"
            "    print(exc.one_line())\n"
            "print(','.join(registered_kinds()), 'brainlrp.simulate' in sys.modules)")
    error, kinds = _fresh(code).splitlines()
    assert "healthy twin reference ('twin') is not loaded" in error
    assert "brainlrp.simulate" in error
    assert kinds == "mean,knn,pca False"


def test_explaining_registers_the_simulated_kinds(tmp_path):
    """brainlrp's commands build references through MethodCalls, which loads them."""
    code = ("from brainlrp.data.grid import Grid\n"
            "from brainlrp.data.preprocess import Preprocessing\n"
            "from brainlrp.data.reference import registered_kinds\n"
            "from brainlrp.explain.call import MethodCalls\n"
            f"calls = MethodCalls({str(tmp_path)!r}, Preprocessing(Grid.from_resolution(6)), 1)\n"
            "calls.references\n"
            "print(','.join(sorted(registered_kinds())))")
    assert _fresh(code) == "knn,mean,pca,rescan,twin"


class _Constant(Reference):
    """A kind that counts its fits and builds a constant image."""

    fits = 0

    def fit(self, controls):
        type(self).fits += 1
        return super().fit(controls)

    def build(self, scan_ids, x):
        return np.full(x[:, 0].shape, 0.5, np.float32)


def test_a_registered_estimator_is_fitted_once_and_restores_like_the_others(tmp_path):
    refs = References(tmp_path, Preprocessing(GRID))
    x = np.random.default_rng(0).random((2, 1, *GRID.shape), dtype=np.float32)
    register_reference("mean", _Constant)
    try:
        ref = refs.get("mean", ["a", "b"], x)
        restored = refs.get("mean-restore", ["a", "b"], x)
    finally:
        register_reference("mean", MeanReference)
    assert _Constant.fits == 1 and isinstance(refs.reference("mean"), _Constant)
    assert ref.shape == x.shape and ref.dtype == np.float32 and (ref == 0.5).all()
    brain = refs.brain
    np.testing.assert_array_equal(restored[:, 0][:, brain], np.maximum(x[:, 0], 0.5)[:, brain])
    np.testing.assert_array_equal(restored[:, 0][:, ~brain], x[:, 0][:, ~brain])


def test_unknown_kinds_and_files(tmp_path):
    refs = References(tmp_path, Preprocessing(GRID))
    x = np.zeros((1, 1, *GRID.shape), np.float32)
    with pytest.raises(BrainLRPError, match="unknown reference 'median'"):
        refs.get("median", ["a"], x)
    with pytest.raises(BrainLRPError, match="unknown reference 'median'"):
        refs.reference("median")
