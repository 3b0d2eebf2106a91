"""The layering rules of docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "brainlrp"

#: package -> packages it must never import.
FORBIDDEN = {
    "catalog": {"explain", "analysis", "report", "training", "data", "models", "simulate",
                "atlas"},
    "explain": {"analysis", "report"},
    "analysis": {"report"},
    "report": {"explain", "training"},
}


def _imports(path: pathlib.Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every ``brainlrp`` import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brainlrp"):
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("brainlrp")]
    return out


def _package(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_do_not_import_upwards(package):
    offenders = []
    for path in SRC.rglob("*.py"):
        if _package(path) != package:
            continue
        for line, module, _ in _imports(path):
            parts = module.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[package]:
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_no_private_names_across_packages():
    offenders = []
    for path in SRC.rglob("*.py"):
        own = _package(path)
        for line, module, names in _imports(path):
            parts = module.split(".")
            other = parts[1] if len(parts) > 1 else None
            if other is None or other == own or other.startswith("_"):
                continue  # brainlrp._io etc. are shared helper modules
            private = [n for n in names if n.startswith("_")]
            private += [p for p in parts[2:] if p.startswith("_")]
            if private:
                offenders.append(f"{path.relative_to(SRC)}:{line} takes {private} from {module}")
    assert not offenders, "\n".join(offenders)


def test_catalog_does_not_load_torch():
    code = "import sys, brainlrp.catalog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
