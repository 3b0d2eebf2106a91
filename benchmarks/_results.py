"""Where the scripts of ``benchmarks/`` put their numbers: ``benchmarks/results/NAME.json``
(with the commit that made them) and, for a README table, ``NAME.md``
(``benchmarks/readme_tables.py`` copies it into README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def commit() -> str:
    """The short commit of the code that ran, ``+changes`` when ``src/`` or ``benchmarks/``
    differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+changes" if git("status", "--porcelain", "--", "src", "benchmarks") else "")


def write_result(name: str, record: dict, markdown: str | None = None) -> Path:
    """Write ``record`` (the commit first) to ``RESULTS/name.json`` and ``markdown`` to
    ``RESULTS/name.md``, each atomically; return the JSON's path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    _atomic(path, json.dumps({"commit": commit()} | record, indent=1) + "\n")
    if markdown is not None:
        _atomic(RESULTS / f"{name}.md", markdown.rstrip("\n") + "\n")
    return path


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
