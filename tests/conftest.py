"""Shared fixtures: tiny MNI-space scans and cohorts, an isolated preprocessing cache."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlrp.data.grid import Grid, template

#: Tiny test grid: the template grid at 6 mm is 33 x 39 x 33 voxels.
TEST_RESOLUTION = 6.0

#: A user's network module for ``import-model --module``: ``mynets:net`` once written
#: as ``mynets.py`` on the path.
TINY_NET = textwrap.dedent("""
    from torch import nn

    def net(input_shape, width=2):
        return nn.Sequential(nn.Conv3d(1, width, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(width, 2))
""")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test session uses its own preprocessing cache, never ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "brainlrp-cache"
    monkeypatch.setenv("BRAINLRP_CACHE_DIR", str(cache))


@pytest.fixture
def grid() -> Grid:
    return Grid.from_resolution(TEST_RESOLUTION)


def make_scan(grid: Grid, seed: int = 0, atrophy: float = 0.0) -> np.ndarray:
    """A brain-like volume on ``grid``: the template plus noise, optionally darkened
    in the medial temporal lobe (a crude "atrophy")."""
    rng = np.random.default_rng(seed)
    data = np.array(template(grid), dtype=np.float32)
    data = data * (1 + 0.05 * rng.standard_normal(data.shape).astype(np.float32))
    if atrophy:
        ijk = np.indices(grid.shape).reshape(3, -1).T
        xyz = nib.affines.apply_affine(grid.affine_array, ijk).reshape(*grid.shape, 3)
        mtl = np.exp(-(((np.abs(xyz[..., 0]) - 28) ** 2 + (xyz[..., 1] + 20) ** 2
                        + (xyz[..., 2] + 15) ** 2) / (2 * 12.0 ** 2)))
        data = data * (1 - atrophy * mtl)
    return np.clip(data, 0, None)


def write_scan(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return path


def make_bids_cohort(root: Path, grid: Grid, n_cn: int = 6, n_ad: int = 6,
                     extra_rows: list[dict] | None = None, seed: int = 0) -> Path:
    """A BIDS-like cohort of template-based scans on ``grid``."""
    rows = []
    k = 0
    for label, n in (("CN", n_cn), ("AD", n_ad)):
        for _ in range(n):
            k += 1
            pid = f"sub-{k:03d}"
            data = make_scan(grid, seed=seed + k, atrophy=0.5 if label == "AD" else 0.0)
            write_scan(root / pid / "anat" / f"{pid}_T1w.nii.gz", data, grid.affine_array)
            rows.append({"participant_id": pid, "diagnosis": label, "age": 70 + k % 10})
    for row in extra_rows or []:
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


@pytest.fixture
def bids_cohort(tmp_path, grid) -> Path:
    return make_bids_cohort(tmp_path / "cohort", grid)


def one_line_error(args: list[str]) -> str:
    """Run the CLI with ``args``; assert exit code 2 and one ``error: ...`` line, no
    traceback; return that line."""
    from typer.testing import CliRunner

    from brainlrp.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]

