"""Functions stay short enough to read: a stage orchestrates named steps."""

from __future__ import annotations

import ast
import pathlib

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "brainlrp"
#: Most lines of a function's code (its docstring aside: numpydoc parameters can be long).
MAX_LINES = 80


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    first = body[0]
    if (len(body) > 1 and isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        first = body[1]
    docstring = first.lineno - node.body[0].lineno
    return node.end_lineno - node.lineno + 1 - docstring


def test_no_function_is_longer_than_max_lines():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(node)
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {n} lines")
    assert not long, "\n".join(long)


def test_the_count_leaves_out_only_the_docstring():
    tree = ast.parse('def f(a):\n    """Doc.\n\n    More.\n    """\n    x = a\n    return x\n')
    assert _code_lines(tree.body[0]) == 3
    tree = ast.parse("def g():\n    return 1\n")
    assert _code_lines(tree.body[0]) == 2
