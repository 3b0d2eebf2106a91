"""The method catalog: one entry per method, parsed and ordered in one place."""

from __future__ import annotations

import ast
import pathlib

import pytest

from brainlrp import catalog
from brainlrp.errors import BrainLRPError

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "brainlrp"


def test_default_relevance_per_method():
    for name in ("lrp-b0", "lrp-b0.75", "lrp-eps", "ig", "occlusion", "gxi"):
        assert catalog.describe(name).relevance == "positive"
    for name in ("gb", "gradient", "smoothgrad"):
        assert catalog.describe(name).relevance == "absolute"


def test_order_and_paper_beta():
    assert catalog.describe("lrp-b0.25").paper_beta == 0.25
    assert catalog.describe("lrp-bn-merged-b0").paper_beta is None
    assert catalog.describe("gb").paper_beta is None
    assert catalog.ordered(["gb", "lrp-b1", "lrp-b0", "gradient", "lrp-eps"]) == [
        "lrp-b0", "lrp-b1", "lrp-eps", "gb", "gradient"]
    # Unlisted betas sort among the listed ones; unknown names go last.
    assert catalog.ordered(["zz", "gxi", "lrp-b0.3", "lrp-b0"]) == ["lrp-b0", "lrp-b0.3", "gxi",
                                                                    "zz"]


def test_families_parse_any_beta():
    info = catalog.lookup("lrp-b1.50")
    assert (info.name, info.composite, dict(info.params)) == ("lrp-b1.5", "paper", {"beta": 1.5})
    assert info.label == "LRP β=1.5" and info.is_lrp
    merged = catalog.lookup("lrp-bn-merged-b0.25")
    assert merged.composite == "paper-bn-merged" and dict(merged.params) == {"beta": 0.25}


@pytest.mark.parametrize("name", ["lrp-b-1", "lrp", "LRP-B0", "guided"])
def test_unknown_name_lists_the_known_ones(name):
    with pytest.raises(BrainLRPError, match="unknown explanation method"):
        catalog.lookup(name)
    assert catalog.find(name) is None
    other = catalog.describe(name)
    assert other.family == "other" and other.relevance == "positive" and other.label == name


def test_parse_comma_lists_once_each():
    assert catalog.parse("lrp-b0, gb,,lrp-b0") == ["lrp-b0", "gb"]
    assert catalog.parse(["lrp-b0", "gb,ig"]) == ["lrp-b0", "gb", "ig"]
    assert catalog.parse(None) == []


def test_main_method_and_comparison():
    assert catalog.choose_main_and_comparison(["lrp-b1", "gradient", "gb", "lrp-b0"]) == (
        "lrp-b0", "gb")
    assert catalog.choose_main_and_comparison(["lrp-eps", "gradient"]) == ("lrp-eps", "gradient")
    assert catalog.choose_main_and_comparison(["gradient"]) == ("gradient", None)


def test_unit_labels():
    assert catalog.unit_label("lrp-b0", "positive") == "relevance (a.u.)"
    assert catalog.unit_label("gb", "absolute") == "|guided backprop| (a.u.)"
    assert catalog.unit_label("ig", "positive") == "positive IG attribution (a.u.)"


def test_adding_a_method_is_one_entry():
    info = catalog.register(catalog.MethodInfo(
        "test-only-method", "attribution", label="Test", quantity="test attribution",
        relevance="signed"), listed=False)
    try:
        assert catalog.lookup("test-only-method") is info
        assert "test-only-method" not in catalog.listed()
        assert catalog.unit_label("test-only-method") == "test attribution (a.u.)"
    finally:
        catalog._METHODS.pop("test-only-method")


def _string_constants(path: pathlib.Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_method_name_tests_outside_the_catalog():
    """No module but the catalog compares against a method name or prefix."""
    names = set(catalog.listed()) | {"lrp", "lrp-b", "lrp-bn-merged-b"}
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "catalog.py":
            continue
        for lineno, value in _string_constants(path):
            if value in names:
                line = path.read_text().splitlines()[lineno - 1]
                if "__all__" in line:
                    continue
                if any(op in line for op in ("==", "!=", " in ", "startswith", "get(", "[\"")):
                    offenders.append(f"{path.relative_to(SRC)}:{lineno}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


#: Marks a line whose string is a library's vocabulary that happens to equal a name of
#: the catalog (e.g. Captum's noise-tunnel types).
NOT_A_METHOD = "not method names"


def _typed_names(path: pathlib.Path, kinds: set[str]) -> list[int]:
    """Lines of ``path`` with a method name in any string (docstrings and ``__all__``
    aside), or a reference kind compared with or listed beside another (``mean`` alone
    is also a statistic)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) == "__all__" for t in node.targets)
            for n in ast.walk(node.value)}
    skip |= {id(node.body[0].value) for node in ast.walk(tree)
             if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef,
                                  ast.AsyncFunctionDef))
             and node.body and isinstance(node.body[0], ast.Expr)
             and isinstance(node.body[0].value, ast.Constant)}

    def strings(nodes):
        return [n for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and id(n) not in skip]

    lines = [n.lineno for n in strings(ast.walk(tree))
             if catalog.find(n.value) is not None
             or n.value.endswith(catalog.REFERENCE_SEPARATOR)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            lines += [n.lineno for n in strings([node.left, *node.comparators])
                      if n.value in kinds]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            listed = [n for n in strings(node.elts) if n.value in kinds]
            lines += [n.lineno for n in listed] if len(listed) > 1 else []
    return sorted(set(lines))


def test_no_method_name_or_reference_kind_is_typed_outside_the_catalog():
    """Every method name, named method list and reference kind is read from the catalog."""
    kinds = set(catalog.REFERENCE_LABELS)
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "catalog.py":
            continue
        lines = path.read_text().splitlines()
        offenders += [f"{path.relative_to(SRC)}:{n}: {lines[n - 1].strip()}"
                      for n in _typed_names(path, kinds) if NOT_A_METHOD not in lines[n - 1]]
    assert not offenders, "\n".join(offenders)
