"""The layering rules of docs/architecture.md, checked on the source.

The rules are read from the document itself: its table "Packages, in dependency order"
names every module and package of ``brainlrp`` and what each may import, so the table
and this test cannot drift apart. Every import counts, in every form (``import
brainlrp.x``, ``import brainlrp.x as y``, ``from brainlrp import x``, ``from brainlrp.x
import y``, relative imports), lazy ones inside functions included.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "brainlrp"
DOC = ROOT / "docs" / "architecture.md"
TABLE = "## Packages, in dependency order"
#: What the root package (``src/brainlrp/__init__.py``: ``__version__``) is called.
ROOT_UNIT = "brainlrp"
#: The one import down the table: the root package gives the Python API's names
#: (``brainlrp.Run``), importing ``api`` inside its module ``__getattr__`` at their
#: first use and nowhere else (the table's row for ``brainlrp`` says so).
LAZY_API = ("api", "__getattr__")


def _units() -> set[str]:
    """Every module and package of ``brainlrp`` (the root package is ``brainlrp``)."""
    out = {ROOT_UNIT}
    for path in SRC.iterdir():
        if path.suffix == ".py" and path.stem != "__init__":
            out.add(path.stem)
        elif path.is_dir() and (path / "__init__.py").is_file():
            out.add(path.name)
    return out


def _unit(path: pathlib.Path) -> str:
    """The module or package a source file belongs to."""
    rel = path.relative_to(SRC)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return ROOT_UNIT if rel.stem == "__init__" else rel.stem


def _module_unit(module: str) -> str:
    """``brainlrp.data.grid`` -> ``data``; ``brainlrp`` -> the root package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT_UNIT


def _is_module(dotted: str) -> bool:
    path = SRC.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: pathlib.Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every ``brainlrp`` import in a file, anywhere in it.

    Relative imports are resolved; ``from brainlrp import x`` and ``from brainlrp.p import
    m`` list the module ``x`` (``brainlrp.p.m``) when it is one, and otherwise the names
    taken from the module."""
    package = list(path.relative_to(SRC.parent).parent.parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names
                    if a.name.split(".")[0] == "brainlrp"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "brainlrp":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if _is_module(sub):
                    out.append((node.lineno, sub, []))
                else:
                    out.append((node.lineno, module, [alias.name]))
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _names(cell: str) -> list[str]:
    """The backticked names of a cell, leaving out parenthesised notes."""
    while re.search(r"\([^()]*\)", cell):
        cell = re.sub(r"\([^()]*\)", "", cell)
    return re.findall(r"`([^`]+)`", cell)


def _table() -> list[tuple[list[str], set[str] | None]]:
    """The doc's rows in order: ``(units, may import)``; ``None``: everything."""
    text = DOC.read_text()
    assert TABLE in text, f"{DOC} has no section {TABLE!r}"
    section = text.split(TABLE, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = _cells(line) if line.startswith("|") else []
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        units = _names(cells[0])
        may = cells[2]
        allowed = (None if may == "everything" else set() if may in ("–", "-")
                   else {name.split(".")[0] for name in _names(may)})
        rows.append((units, allowed))
    return rows


def _allowed() -> dict[str, set[str] | None]:
    return {unit: allowed for units, allowed in _table() for unit in units}


def test_the_table_names_every_module_once():
    named = [unit for units, _ in _table() for unit in units]
    assert len(named) == len(set(named)), f"named twice: {sorted(named)}"
    assert set(named) == _units(), (f"missing from {DOC.name}: {_units() - set(named)}; "
                                    f"not in src/brainlrp: {set(named) - _units()}")


def test_the_table_is_in_dependency_order():
    """A row names only modules of rows above it (so no two packages import each other)."""
    above: set[str] = set()
    problems = []
    for units, allowed in _table():
        if allowed is not None:
            unknown = allowed - _units()
            later = allowed - above - unknown
            problems += [f"{units} may import unknown {sorted(unknown)}"] if unknown else []
            problems += [f"{units} may import {sorted(later)}, not above it"] if later else []
        above |= set(units)
    assert not problems, "\n".join(problems)


def _lazy_api_lines() -> set[int]:
    """Lines of the root package's ``__getattr__``, where it may import ``api``."""
    tree = ast.parse((SRC / "__init__.py").read_text())
    return {n.lineno for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name == LAZY_API[1]
            for n in ast.walk(node) if hasattr(n, "lineno")}


@pytest.mark.parametrize("unit", sorted(u for u in _units() if _allowed().get(u, set())
                                        is not None))
def test_imports_follow_the_table(unit):
    allowed = _allowed().get(unit, set())
    lazy = _lazy_api_lines() if unit == ROOT_UNIT else set()
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if _unit(path) != unit:
            continue
        for line, module, _ in _imports(path):
            other = _module_unit(module)
            if other == LAZY_API[0] and line in lazy:
                continue
            if other != unit and other not in allowed:
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not offenders, (f"{unit} may import only {sorted(allowed)} ({DOC.name}):\n"
                           + "\n".join(offenders))


def test_no_stage_imports_another_packages_stage():
    """Stages are joined by the files of a run directory: only the modules that chain
    them (those that may import everything: demo, benchmark, cli) import a stage module
    from outside its package."""
    allowed = _allowed()
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        own = _unit(path)
        if allowed.get(own, set()) is None:
            continue
        for line, module, _ in _imports(path):
            parts = module.split(".")
            if len(parts) == 3 and parts[2] == "stage" and parts[1] != own:
                offenders.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_the_parser_sees_every_import_form(tmp_path, monkeypatch):
    """Lazy, aliased, ``from brainlrp import x`` and relative imports all count."""
    package = tmp_path / "brainlrp"
    (package / "data").mkdir(parents=True)
    for name in ("__init__.py", "data/__init__.py", "data/stage.py", "models.py",
                 "simulate.py"):
        (package / name).write_text("")
    source = package / "data" / "mod.py"
    source.write_text("import brainlrp.models as m\n"
                      "from brainlrp import simulate, __version__\n"
                      "from . import stage\n"
                      "from ..models import build_model\n"
                      "def f():\n"
                      "    from brainlrp.simulate import plant\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", package)
    assert sorted((m, n) for _, m, n in _imports(source)) == [
        ("brainlrp", ["__version__"]), ("brainlrp.data.stage", []),
        ("brainlrp.models", []), ("brainlrp.models", ["build_model"]),
        ("brainlrp.simulate", []), ("brainlrp.simulate", ["plant"])]


def test_no_private_names_across_packages():
    offenders = []
    for path in SRC.rglob("*.py"):
        own = _unit(path)
        for line, module, names in _imports(path):
            other = _module_unit(module)
            if other in (own, ROOT_UNIT) or other.startswith("_"):
                continue  # brainlrp._io etc. are shared helper modules
            private = [n for n in names if n.startswith("_")]
            private += [p for p in module.split(".")[2:] if p.startswith("_")]
            if private:
                offenders.append(f"{path.relative_to(SRC)}:{line} takes {private} from {module}")
    assert not offenders, "\n".join(offenders)


def test_no_private_names_of_other_libraries():
    """No module reaches into a library's private names (``ants.config._random_seed``
    was one): they change without notice, and a library's public way is documented."""
    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules |= {a.asname or a.name.split(".")[0] for a in node.names
                            if a.name.split(".")[0] != "brainlrp"}
            elif (isinstance(node, ast.ImportFrom) and not node.level and node.module
                  and node.module.split(".")[0] != "brainlrp"):
                names = node.module.split(".") + [a.name for a in node.names]
                offenders += [f"{path.relative_to(SRC)}:{node.lineno} imports {n} from "
                              f"{node.module}" for n in names if private(n)]
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and private(node.attr):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in modules:
                    offenders.append(f"{path.relative_to(SRC)}:{node.lineno} uses "
                                     f"{ast.unparse(node)}")
    assert not offenders, "\n".join(offenders)


def test_the_root_package_imports_the_api_only_when_asked():
    """``import brainlrp`` (every CLI start) loads neither the API nor torch; the first
    API name does, through the package's ``__getattr__``."""
    assert _lazy_api_lines(), f"src/brainlrp/__init__.py has no {LAZY_API[1]}"
    code = ("import sys, brainlrp; a = 'brainlrp.api' in sys.modules or 'torch' in sys.modules;"
            " brainlrp.Run; print(a, 'brainlrp.api' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_catalog_does_not_load_torch():
    code = "import sys, brainlrp.catalog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_data_changes_nothing_above_it():
    """``import brainlrp.data`` (registration and references included) sets no variable
    (ITK's thread count is chosen when ANTsPy is first used), loads neither ANTsPy nor
    torch, and no package the table puts above ``data``."""
    code = ("import os, sys, json; before = dict(os.environ)\n"
            "import brainlrp.data, brainlrp.data.reference, brainlrp.data.register\n"
            "print(json.dumps({'environ': sorted(set(os.environ.items()) ^ set(before.items())),"
            " 'modules': sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('ants', 'torch', 'brainlrp'))}))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "ANTS_RANDOM_SEED")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    import json

    seen = json.loads(out.stdout)
    assert seen["environ"] == []
    units = {_module_unit(m) for m in seen["modules"] if m.startswith("brainlrp")}
    assert units <= {"data", ROOT_UNIT} | _allowed()["data"], units
    assert not [m for m in seen["modules"] if not m.startswith("brainlrp")]
