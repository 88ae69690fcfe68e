"""The code stays in pieces a reader can hold: no file over 1,000 lines, no unexplained function over 80.

Scope: every ``.py`` file under ``core/``, ``tenants/``, ``plugins/``, ``admin_ui/`` and ``h5/``.

- A file may have at most :data:`MAX_FILE_LINES` lines: a bigger one is split by responsibility (as
  ``core/claims``, ``core/campaigns`` and ``core/redemption`` are), not trimmed.
- A function (or method, nested ones included) may span at most :data:`MAX_FUNCTION_LINES` lines, counted
  from its ``def`` line to the last line of its body (decorators not counted). A longer one is split into
  well-named helpers, unless it is one sequence that reads best whole: then it says why, in a comment
  ``# long: <reason>`` on its ``def`` line or on a line directly above it (above its decorators, or
  between them). The reason must not be empty.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "tenants", "plugins", "admin_ui", "h5")
MAX_FILE_LINES = 1_000
MAX_FUNCTION_LINES = 80
REASON = re.compile(r"#\s*long:\s*\S")


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _explained(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A ``# long: <reason>`` comment on the def line, or on the line above it or above its decorators."""
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return any(REASON.search(lines[n - 1]) for n in range(max(first - 1, 1), node.lineno + 1))


def test_the_packages_have_sources() -> None:
    found = {p.relative_to(ROOT).parts[0] for p in _sources()}
    assert found == set(PACKAGES)


def test_no_file_is_over_the_limit() -> None:
    long_files = {
        str(p.relative_to(ROOT)): n
        for p in _sources()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES
    }
    assert not long_files, f"split by responsibility (at most {MAX_FILE_LINES} lines): {long_files}"


def test_no_function_is_over_the_limit_without_a_reason() -> None:
    unexplained: list[str] = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in _functions(ast.parse(text, filename=str(path))):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            if size > MAX_FUNCTION_LINES and not _explained(lines, node):
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
    assert not unexplained, (
        f"functions over {MAX_FUNCTION_LINES} lines: split them into helpers, or say why they read best "
        "whole with a `# long: <reason>` comment on or above the def:\n" + "\n".join(unexplained)
    )


@pytest.mark.parametrize(
    ("source", "explained"),
    [
        ("def f():  # long: one sequence\n    pass\n", True),
        ("# long: one sequence\ndef f():\n    pass\n", True),
        ("# long: one sequence\n@decorated\ndef f():\n    pass\n", True),
        ("@decorated\n# long: one sequence\ndef f():\n    pass\n", True),
        ("# long:\ndef f():\n    pass\n", False),
        ("# long: too far above\n\ndef f():\n    pass\n", False),
        ("def f():\n    # long: inside the body\n    pass\n", False),
    ],
)
def test_the_reason_convention(source: str, explained: bool) -> None:
    node = next(_functions(ast.parse(source)))
    assert _explained(source.splitlines(), node) is explained
