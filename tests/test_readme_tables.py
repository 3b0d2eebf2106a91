"""README's benchmark tables are the files benchmarks/ wrote, character for character."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("readme_tables",
                                                  ROOT / "benchmarks" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_results_block_matches_its_file():
    tables = _module()
    found = tables.blocks((ROOT / "README.md").read_text())
    assert found, "README.md has no results block"
    for name, body in found:
        assert body == tables.expected(name), (
            f"README block results:{name} differs from benchmarks/results/{name}.md; run "
            "python benchmarks/readme_tables.py")


def test_render_rewrites_a_stale_block(tmp_path, monkeypatch):
    tables = _module()
    (tmp_path / "t.md").write_text("| a |\n| --- |\n| 1 |\n")
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    stale = "x\n<!-- results:t -->\n| a |\n| --- |\n| 2 |\n<!-- /results:t -->\ny\n"
    assert tables.render(stale) == ("x\n<!-- results:t -->\n| a |\n| --- |\n| 1 |\n"
                                    "<!-- /results:t -->\ny\n")
    with pytest.raises(FileNotFoundError, match="nope"):
        tables.render("<!-- results:nope -->\n<!-- /results:nope -->")
