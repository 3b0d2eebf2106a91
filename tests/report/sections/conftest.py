"""Building single sections from the fake run."""

from __future__ import annotations

import pytest

from brainlrp import catalog
from brainlrp.report.inputs import load_run
from brainlrp.report.sections import Context


@pytest.fixture
def make_ctx():
    """``make_ctx(root, methods=None)``: the context the stage would build (no own scans)."""

    def make(root, methods=None) -> Context:
        data = load_run(root, methods)
        main, compare = catalog.choose_main_and_comparison(data.methods)
        return Context(data=data, main=main, compare=compare, inputs_fn=None)

    return make
