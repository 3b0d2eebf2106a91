"""Registration is deterministic through ANTs' public settings, chosen when it runs:
the seed through ``ANTS_RANDOM_SEED`` for one registration's calls, ITK's thread count
when brainlrp first reaches for ANTsPy; importing the module sets neither."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from brainlrp.data.grid import Grid
from brainlrp.data.register import (
    SEED_VARIABLE,
    THREADS_VARIABLE,
    Registration,
    register_scan,
)
from tests.data.native import template_native

pytest.importorskip("ants")
GRID = Grid.from_resolution(6)


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.name != "registration.json"}


def test_same_seed_same_transforms_and_the_seed_comes_back(tmp_path, monkeypatch):
    scan = template_native(tmp_path / "native.nii.gz", seed=0)
    monkeypatch.setenv(SEED_VARIABLE, "77")  # the caller's own seed ...
    one = register_scan(scan, Registration(seed=1), GRID, tmp_path / "one")
    assert os.environ[SEED_VARIABLE] == "77"  # ... is back after each registration
    monkeypatch.delenv(SEED_VARIABLE)
    two = register_scan(scan, Registration(seed=1), GRID, tmp_path / "two")
    assert SEED_VARIABLE not in os.environ
    other = register_scan(scan, Registration(seed=2), GRID, tmp_path / "other")
    assert _digests(one.folder) == _digests(two.folder)
    assert one.record["correlation"] == two.record["correlation"]
    # The seed reaches ANTs: another seed jitters the sampling grid elsewhere.
    assert (_digests(other.folder)["fwd_0GenericAffine.mat"]
            != _digests(one.folder)["fwd_0GenericAffine.mat"])
    assert one.record["threads"] == int(os.environ[THREADS_VARIABLE])


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("3", "3")])
def test_first_use_of_ants_chooses_one_itk_thread_unless_the_user_did(preset, expected):
    """In a fresh process: importing sets nothing; the first ANTs use sets one thread,
    or keeps the user's choice."""
    code = ("import os, numpy as np\n"
            "from brainlrp.data import register\n"
            f"assert os.environ.get({THREADS_VARIABLE!r}) == {preset!r}\n"
            "register.to_ants(np.zeros((2, 2, 2), np.float32), np.eye(4))\n"
            f"print(os.environ[{THREADS_VARIABLE!r}])")
    env = {k: v for k, v in os.environ.items() if k != THREADS_VARIABLE}
    if preset is not None:
        env[THREADS_VARIABLE] = preset
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == expected
