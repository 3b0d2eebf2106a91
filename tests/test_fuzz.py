"""Hostile input, property-based: random bytes, truncated gzip, random NIfTI headers and
random participants tables reach the loaders and the CLI. The only allowed outcomes are
success or a BrainLRPError (exit code 2 with one line) - never a traceback or a hang."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from brainlrp.cli import app
from brainlrp.data.cohort import load_cohort
from brainlrp.data.grid import Grid
from brainlrp.data.nifti import load_scan
from brainlrp.errors import BrainLRPError
from tests.conftest import make_scan


def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
GRID = Grid.from_resolution(6)
runner = CliRunner()


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="brainlrp-fuzz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def valid_bytes() -> bytes:
    img = nib.Nifti1Image(make_scan(GRID).astype(np.float32), GRID.affine_array)
    buf = io.BytesIO()
    file_map = nib.Nifti1Image.make_file_map({"image": buf, "header": buf})
    img.to_file_map(file_map)
    return gzip.compress(buf.getvalue(), compresslevel=1)


def _load_or_clean_error(path: Path) -> None:
    try:
        img = load_scan(path)
    except BrainLRPError as exc:
        assert "\n" not in exc.one_line() and exc.one_line()
        return
    assert img.ndim == 3 and np.isfinite(img.get_fdata()).all()


@fuzz(150)
@given(data=st.binary(min_size=0, max_size=2048), gz=st.booleans())
def test_random_bytes(workdir, data, gz):
    path = workdir / ("random.nii.gz" if gz else "random.nii")
    path.write_bytes(gzip.compress(data) if gz and data[:1] != b"\x1f" else data)
    _load_or_clean_error(path)


@fuzz(100)
@given(fraction=st.floats(0.0, 0.999), flip=st.integers(0, 255))
def test_truncated_or_garbled_gzip(workdir, valid_bytes, fraction, flip):
    cut = valid_bytes[: int(len(valid_bytes) * fraction)]
    if cut and flip % 2:
        i = flip * 7919 % len(cut)
        cut = cut[:i] + bytes([cut[i] ^ flip]) + cut[i + 1:]
    path = workdir / "truncated.nii.gz"
    path.write_bytes(cut)
    _load_or_clean_error(path)


DATATYPES = [2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2304, 0, 7, 999]
finite_or_not = st.one_of(st.floats(-1e3, 1e3), st.sampled_from([0.0, np.nan, np.inf,
                                                                  -np.inf, 1e30]))


@fuzz(200)
@given(ndim=st.integers(0, 7), sizes=st.lists(st.integers(-2, 12), min_size=7, max_size=7),
       datatype=st.sampled_from(DATATYPES), bitpix=st.sampled_from([0, 8, 16, 32, 64, 7]),
       affine=st.lists(finite_or_not, min_size=12, max_size=12),
       pixdim=st.lists(finite_or_not, min_size=4, max_size=4),
       slope=st.sampled_from([0.0, np.nan, np.inf, 1.0, -2.0, 1e-30]),
       inter=st.sampled_from([0.0, np.nan, 5.0]),
       codes=st.tuples(st.integers(-1, 5), st.integers(-1, 5)),
       vox_offset=st.sampled_from([0.0, 352.0, 348.0, 1e9, -5.0]),
       n_data=st.integers(0, 8000), gz=st.booleans())
def test_random_nifti_headers(workdir, ndim, sizes, datatype, bitpix, affine, pixdim, slope,
                              inter, codes, vox_offset, n_data, gz):
    hdr = bytearray(nib.Nifti1Header().binaryblock)
    struct.pack_into("<8h", hdr, 40, ndim, *sizes)
    struct.pack_into("<h", hdr, 70, datatype)
    struct.pack_into("<h", hdr, 72, bitpix)
    struct.pack_into("<4f", hdr, 76, *pixdim)
    struct.pack_into("<f", hdr, 108, vox_offset)
    struct.pack_into("<2f", hdr, 112, slope, inter)
    struct.pack_into("<2h", hdr, 252, *codes)
    struct.pack_into("<12f", hdr, 280, *affine)
    rng = np.random.default_rng(n_data)
    blob = bytes(hdr) + b"\x00" * 4 + rng.bytes(n_data)
    path = workdir / ("header.nii.gz" if gz else "header.nii")
    path.write_bytes(gzip.compress(blob, compresslevel=1) if gz else blob)
    _load_or_clean_error(path)


ids = st.one_of(st.from_regex(r"sub-[0-9]{1,3}", fullmatch=True),
                st.sampled_from(["../evil", "/etc/passwd", "a/b", "..", "", " ", "sub 1",
                                 "sub-\u00e9", "sub-1\x00", "C:\\x", "sub-1;rm -rf"]),
                st.text(max_size=8))
diagnoses = st.one_of(st.sampled_from(["CN", "AD", "MCI", "hc", "Dementia", "", "nan", "AD ",
                                       "ad\t", "FTD", "1", "0"]), st.text(max_size=6))
paths = st.one_of(st.sampled_from(["scan.nii.gz", "../scan.nii.gz", "/etc/passwd",
                                   "missing.nii", "", "scans/../../x.nii", "sub.nii.gz"]),
                  st.text(max_size=10))


def _write_table(folder: Path, rows, sep: str, header: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    name = "participants.tsv" if sep == "\t" else "cohort.csv"
    frame = pd.DataFrame(rows, columns=["participant_id", "diagnosis", "path"])
    text = frame.to_csv(sep=sep, index=False, header=header)
    (folder / name).write_text(text)
    return folder / name


@fuzz(120)
@given(rows=st.lists(st.tuples(ids, diagnoses, paths), min_size=0, max_size=6),
       sep=st.sampled_from([",", "\t"]), header=st.booleans(), as_folder=st.booleans())
def test_random_participants_tables(workdir, valid_bytes, rows, sep, header, as_folder):
    folder = Path(tempfile.mkdtemp(dir=workdir))
    (folder / "scan.nii.gz").write_bytes(valid_bytes)
    table = _write_table(folder, rows, "\t" if as_folder else sep, header)
    try:
        cohort = load_cohort(folder if as_folder else table)
    except BrainLRPError as exc:
        assert "\n" not in exc.one_line()
    else:
        assert len(cohort.scans) >= 1
        assert set(cohort.scans["label"]) <= {0, 1}
        root = folder.resolve()
        assert all(Path(p).resolve().is_relative_to(root) for p in cohort.scans["path"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def cli_cohort(workdir):
    folder = workdir / "cli"
    folder.mkdir()
    rows = []
    for k in range(6):
        name = f"s{k}.nii.gz"
        img = nib.Nifti1Image(make_scan(GRID, seed=k).astype(np.float32), GRID.affine_array)
        nib.save(img, str(folder / name))
        rows.append((f"sub-{k}", "CN" if k < 3 else "AD", name))
    rows.append(("sub-x", "AD", "fuzzed.nii.gz"))
    pd.DataFrame(rows, columns=["participant_id", "diagnosis", "path"]).to_csv(
        folder / "cohort.csv", index=False)
    return folder


@fuzz(60)
@given(data=st.one_of(st.binary(max_size=512), st.just(b"")), cut=st.floats(0.05, 1.0))
def test_cli_prepare_never_tracebacks(workdir, cli_cohort, valid_bytes, data, cut):
    fuzzed = valid_bytes[: int(len(valid_bytes) * cut)] if not data else data
    (cli_cohort / "fuzzed.nii.gz").write_bytes(fuzzed)
    result = runner.invoke(app, ["prepare", str(cli_cohort / "cohort.csv"), "--out",
                                 str(workdir / "run"), "--resolution", "6", "--arch", "tiny",
                                 "--test", "0.3", "--val", "0.3", "--overwrite"])
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ")
