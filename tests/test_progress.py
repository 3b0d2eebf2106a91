"""Progress without a terminal: plain lines with counts and an ETA."""

from __future__ import annotations

import pytest

from brainlrp import _progress
from brainlrp._progress import progress_bar


@pytest.fixture(autouse=True)
def _no_delay(monkeypatch):
    monkeypatch.setattr(_progress, "LOG_AFTER", 0.0)


def test_log_lines_without_a_terminal(capsys):
    with progress_bar(20, "explain", unit="scans") as advance:
        for _ in range(20):
            advance(1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("explain: 2/20 scans") and "left" in lines[0]
    assert lines[-1].startswith("explain: 20/20 scans") and "left" not in lines[-1]


def test_disabled_and_batched(capsys):
    with progress_bar(5, "x", enabled=False) as advance:
        advance(5)
    with progress_bar(3, "analyze", unit="scans") as advance:
        advance(2)
        advance(1)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [e for e in err if e.startswith("analyze: ")] and err[-1].startswith(
        "analyze: 3/3 scans")


def test_short_stages_stay_silent(capsys, monkeypatch):
    monkeypatch.setattr(_progress, "LOG_AFTER", 60.0)
    with progress_bar(4, "explain") as advance:
        advance(4)
    assert capsys.readouterr().err == ""
