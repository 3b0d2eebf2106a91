"""The whole pipeline through ``demo`` on a tiny grid: every stage's contract files exist,
and running it again resumes instead of redoing work."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from brainlrp import catalog
from brainlrp.cli import app
from brainlrp.demo import DemoSettings, demo

#: Methods in an order of their own (neither the catalog's nor sorted), the catalog's
#: defaults among them.
TINY = DemoSettings(n_subjects=16, resolution=6, arch="tiny", test=3, val=2, epochs=2,
                    early_stopping_start=0, patience=2, ig_steps=2,
                    methods=("lrp-ref@twin", "lrp-b1", "gb", "lrp-b0", "ig",
                             "lrp-ref@knn-restore", "lrp-ref@rescan-restore"))


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = demo(out, settings=TINY, jobs=1, progress=False, say=lines.append)
    return out, result, lines


def test_every_stage_writes_its_contract(demo_out):
    out, result, lines = demo_out
    run = out / "run"
    assert [ln.split(":")[0] for ln in lines if ln.startswith("[")] == [
        "[1/5] simulate", "[2/5] train", "[3/5] explain", "[4/5] analyze", "[5/5] report"]
    assert (out / "cohort" / "participants.tsv").is_file()
    assert (out / "cohort" / "derivatives" / "ground_truth").is_dir()
    for name in ("run.json", "splits.tsv", "predictions.tsv", "metrics.json",
                 "model/best.ckpt", "model/card.json", "report/index.html",
                 "analysis/summary.json", "analysis/ground_truth_summary.tsv"):
        assert (run / name).is_file(), name
    test_ids = pd.read_csv(run / "predictions.tsv", sep="\t").query("split == 'test'")
    for method in TINY.methods:
        assert len(list((run / "heatmaps" / method).glob("*.nii.gz"))) == len(test_ids)
        assert (run / "regions" / method / "groups.tsv").is_file()
    stages = json.loads((run / "run.json").read_text())["stages"]
    assert set(result.timings) == {"simulate", "train", "explain", "analyze", "report"}
    assert stages["demo"]["seconds"].keys() == result.timings.keys()
    assert result.report == run / "report" / "index.html"


def test_running_again_changes_no_file(demo_out):
    """A finished demo run again resumes every stage and writes nothing."""
    out, _, _ = demo_out
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    lines: list[str] = []
    demo(out, settings=TINY, jobs=1, progress=False, say=lines.append)
    assert any("already trained" in ln for ln in lines)
    assert any("no file changed" in ln for ln in lines), lines
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    changed = sorted(str(p.relative_to(out)) for p in set(before) | set(after)
                     if before.get(p) != after.get(p))
    assert not changed, changed


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file()}


def test_stage_commands_after_the_demo_are_up_to_date(demo_out):
    """explain, analyze and report on a finished demo run, with the command line's own
    method order (the defaults) and with the demo's, find their work done and change no
    file: the resume keys do not depend on the order of methods, and a call that
    explains nothing leaves run.json's record of the call that did."""
    out, _, _ = demo_out
    run = out / "run"
    assert set(catalog.default_methods()) <= set(TINY.methods)
    demo_order = ",".join(TINY.methods)
    reversed_order = ",".join(reversed(TINY.methods))
    assert catalog.ordered(TINY.methods) != list(TINY.methods)
    before = _stamps(run)
    runner = CliRunner()
    calls = [["explain", str(run), "--quiet"],
             ["explain", str(run), "-m", demo_order, "--quiet"],
             ["explain", str(run), "-m", reversed_order, "--quiet"],
             ["analyze", str(run)],
             ["analyze", str(run), "-m", demo_order],
             ["analyze", str(run), "-m", reversed_order],
             ["report", str(run), "--quiet"],
             ["report", str(run), "-m", demo_order, "--quiet"]]
    for args in calls:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "up to date" in result.output, (args, result.output)
    after = _stamps(run)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    assert not changed, changed
    record = json.loads((run / "run.json").read_text())["stages"]["explain"]
    assert record["methods"] == catalog.ordered(TINY.methods)
    assert record["complete"] == record["n_scans"] > 0
    assert record["method_options"]["ig"] == {"steps": TINY.ig_steps}
