"""Interrupted commands resume losing nothing; concurrent and DDP ``explain`` share work.

Each command runs as a real ``brainlrp`` process, is killed with SIGKILL mid-way and
run again; its outputs must equal those of an uninterrupted run, byte for byte. The
chain (simulate -> train -> explain -> analyze) runs on one pytest-xdist worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow

SIMULATE = ["--n-subjects", "16", "--resolution", "6", "--arch", "tiny", "--seed", "5",
            "--jobs", "1"]
TRAIN = ["--resolution", "6", "--arch", "tiny", "--epochs", "6", "--test", "2", "--val", "2",
         "--early-stopping-start", "100", "--quiet"]
METHODS = "lrp-b0,gb,occlusion"
EXPLAIN = ["--methods", METHODS, "--split", "all", "--quiet"]
#: Timing the methods (analyze's costs) is not what resuming is about.
ANALYZE: list[str] = ["--no-costs"]


def brainlrp(*args) -> list[str]:
    return [sys.executable, "-m", "brainlrp", *map(str, args)]


def run_ok(cmd: list[str], timeout: float = 300) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    return proc.stdout


def kill_when(cmd: list[str], ready, timeout: float = 300) -> None:
    """Start ``cmd``, SIGKILL its whole process group as soon as ``ready()`` holds."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"))
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"{cmd[3]} finished (exit {proc.returncode}) before it could be "
                            f"killed: {proc.stderr.read()[-1000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{cmd[3]} never reached the kill point")
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def files(root: Path, *, skip=lambda rel: False) -> dict[str, bytes]:
    """Every regular file under ``root`` (relative path -> bytes)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not skip(rel):
            out[rel] = path.read_bytes()
    return out


def assert_same_files(a: dict[str, bytes], b: dict[str, bytes]) -> None:
    assert sorted(a) == sorted(b)
    different = [name for name in a if a[name] != b[name]]
    assert not different, f"{len(different)} files differ, e.g. {different[:3]}"


def no_temporaries(root: Path) -> None:
    assert not [p for p in root.rglob(".tmp-*")], "temporary files left behind"


def heatmap_count(run: Path) -> int:
    return sum(1 for p in (run / "heatmaps").glob("*/*.nii.gz") if not p.name.startswith("."))


# --------------------------------------------------------------------------- simulate


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("resume")


@pytest.fixture(scope="module")
def cohort(work) -> Path:
    out = work / "cohort"
    run_ok(brainlrp("simulate", out, *SIMULATE))
    return out


def test_simulate_resumes_after_sigkill(work, cohort):
    out = work / "cohort-killed"
    sidecars = lambda: len(list(out.glob("sub-*/anat/*_T1w.json"))) >= 4  # noqa: E731
    kill_when(brainlrp("simulate", out, *SIMULATE), sidecars)
    assert not (out / "participants.tsv").exists()  # the cohort is not marked complete
    run_ok(brainlrp("simulate", out, *SIMULATE))
    no_temporaries(out)
    assert_same_files(files(cohort), files(out))


# --------------------------------------------------------------------------- train


def _train_outputs(run: Path) -> dict[str, bytes]:
    keep = ("splits.tsv", "predictions.tsv", "training_log.csv")
    return {name: (run / name).read_bytes() for name in keep}


def _without_times(obj):
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items()
                if k not in ("seconds", "prep_seconds", "created", "updated")}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def trained(work, cohort) -> Path:
    out = work / "run"
    run_ok(brainlrp("train", cohort, "--out", out, *TRAIN))
    return out


def test_train_resumes_after_sigkill(work, cohort, trained):
    out = work / "run-killed"
    log = out / "training_log.csv"

    def two_epochs() -> bool:
        try:
            return len(log.read_text().splitlines()) >= 3  # header + 2 epochs
        except FileNotFoundError:
            return False

    kill_when(brainlrp("train", cohort, "--out", out, *TRAIN), two_epochs)
    assert not (out / "model" / "best.ckpt").exists()
    # Without --quiet every trained epoch prints a line: the resumed run starts after
    # the last checkpointed epoch instead of from scratch.
    stdout = run_ok(brainlrp("train", cohort, "--out", out, *TRAIN[:-1]))
    epochs = [int(e) for e in re.findall(r"trial 0 epoch +(\d+)", stdout)]
    assert epochs and epochs[0] >= 2 and epochs[-1] == 6, stdout[-1000:]
    assert _train_outputs(out) == _train_outputs(trained)
    assert len(pd.read_csv(out / "training_log.csv")) == 6
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (trained, out))
    assert _without_times(a) == _without_times(b)
    a, b = (torch.load(r / "model" / "best.ckpt", weights_only=True) for r in (trained, out))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key


# --------------------------------------------------------------------------- explain


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("heatmaps", "regions", "means",
                                                            "analysis"))
    return dst


def _heatmaps(run: Path) -> dict[str, bytes]:
    return files(run / "heatmaps", skip=lambda rel: rel.startswith(".claims"))


@pytest.fixture(scope="module")
def explained(work, trained) -> Path:
    out = _copy_run(trained, work / "explained")
    run_ok(brainlrp("explain", out, *EXPLAIN))
    return out


def _n_expected(run: Path) -> int:
    n_scans = len(pd.read_csv(run / "predictions.tsv", sep="\t"))
    return n_scans * len(METHODS.split(","))


def test_explain_resumes_after_sigkill(work, explained):
    out = _copy_run(explained, work / "explain-killed")
    kill_when(brainlrp("explain", out, *EXPLAIN), lambda: heatmap_count(out) >= 4)
    assert 4 <= heatmap_count(out) < _n_expected(out)
    run_ok(brainlrp("explain", out, *EXPLAIN))
    no_temporaries(out)
    assert heatmap_count(explained) == _n_expected(explained)
    assert_same_files(_heatmaps(explained), _heatmaps(out))


def _written(stdout: str) -> int:
    return int(re.search(r"(\d+) heatmaps written", stdout).group(1))


def test_two_explain_processes_share_the_work(work, explained):
    out = _copy_run(explained, work / "explain-twice")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen(brainlrp("explain", out, *EXPLAIN), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, stderr) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, stderr[-1500:]
    # Every heatmap written exactly once between the two processes, none corrupted.
    assert sum(_written(stdout) for stdout, _ in outputs) == _n_expected(out)
    no_temporaries(out)
    assert_same_files(_heatmaps(explained), _heatmaps(out))
    record = json.loads((out / "run.json").read_text())["stages"]["explain"]
    assert record["complete"] == record["n_scans"]


def test_explain_with_ddp_over_two_cpu_processes(work, explained):
    out = _copy_run(explained, work / "explain-ddp")
    stdout = run_ok(brainlrp("explain", out, *EXPLAIN, "--accelerator", "cpu",
                             "--devices", "2", "--strategy", "ddp"))
    # One line, from rank 0, counting the maps of both ranks.
    assert stdout.count("heatmaps written") == 1
    assert _written(stdout) == _n_expected(out)
    no_temporaries(out)
    assert heatmap_count(out) == _n_expected(out)
    ref, got = _heatmaps(explained), _heatmaps(out)
    assert sorted(ref) == sorted(got)
    import nibabel as nib
    import numpy as np

    for name in ref:
        a = nib.load(explained / "heatmaps" / name)
        b = nib.load(out / "heatmaps" / name)
        np.testing.assert_allclose(b.get_fdata(), a.get_fdata(), rtol=1e-4, atol=1e-7,
                                   err_msg=name)
        np.testing.assert_array_equal(b.affine, a.affine)
    record = json.loads((out / "run.json").read_text())["stages"]["explain"]
    assert record["complete"] == record["n_scans"]


# --------------------------------------------------------------------------- analyze


def _analysis(run: Path) -> dict[str, bytes]:
    out = {f"{folder}/{k}": v for folder in ("regions", "means", "analysis")
           for k, v in files(run / folder).items()}
    # The benchmark's costs are timings (as run.json's are): every other column must match.
    name = "analysis/method_benchmark.tsv"
    if name in out:
        out[name] = pd.read_csv(run / name, sep="\t").drop(
            columns=["seconds_per_scan", "cost_ratio"]).to_csv(sep="\t").encode()
    return out


def test_analyze_resumes_after_sigkill(work, explained):
    done = _copy_run(explained, work / "analyze-done")
    shutil.copytree(explained / "heatmaps", done / "heatmaps")
    killed = _copy_run(explained, work / "analyze-killed")
    shutil.copytree(explained / "heatmaps", killed / "heatmaps")
    run_ok(brainlrp("analyze", done, *ANALYZE))
    # The same run spelled another way (relative to the working directory) is up to date.
    assert "up to date" in run_ok(brainlrp("analyze", os.path.relpath(done), *ANALYZE))
    first = killed / "regions" / "lrp-b0" / "groups.tsv"
    kill_when(brainlrp("analyze", killed, *ANALYZE), first.is_file)
    assert not (killed / "analysis" / "summary.json").exists()
    run_ok(brainlrp("analyze", killed, *ANALYZE))
    no_temporaries(killed)
    assert (done / "analysis" / "ground_truth.tsv").is_file()
    assert_same_files(_analysis(done), _analysis(killed))
