"""``report`` resumes: an unchanged run is left alone, byte for byte."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from brainlrp.cli import app
from brainlrp.report import report
from brainlrp.run import RunDir


def snapshot(root) -> dict:
    """Every file of a run with its bytes and modification time."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[path] = (f.read(), os.stat(path).st_mtime_ns)
    return out


def test_report_skips_when_nothing_changed(run_copy, monkeypatch):
    first = report(run_copy)
    assert not first.skipped and first.cards
    index = first.index
    # Records the report does not show (the demo's, written after its report) and a
    # skipped analyze (which writes nothing) leave the report up to date.
    RunDir(run_copy).record("demo", {"seconds": {"report": 1.0}})
    before = snapshot(run_copy)

    result = CliRunner().invoke(app, ["report", str(run_copy), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "report is up to date" in result.output
    assert snapshot(run_copy) == before
    again = report(run_copy)
    assert again.skipped and again.index == index and len(again.cards) == len(first.cards)
    assert snapshot(run_copy) == before

    # What follows tests when the report rebuilds, not what it shows: one light section
    # keeps each rebuild quick (the full page is built and checked above and elsewhere).
    from brainlrp.report import stage
    from brainlrp.report.sections import methods

    monkeypatch.setattr(stage, "SECTIONS", (methods.SPEC,))
    rebuilt = report(run_copy, overwrite=True)
    assert not rebuilt.skipped
    assert index.stat().st_mtime_ns != before[str(index)][1]

    # A changed input (a newer analysis table) rebuilds without --overwrite.
    claims = run_copy / "analysis" / "claims.tsv"
    stat = claims.stat()
    os.utime(claims, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not report(run_copy).skipped
    # ... and so does a removed card.
    next(iter((run_copy / "report" / "cards").glob("*.png"))).unlink()
    assert not report(run_copy).skipped
