"""kaquan keeps no state in a database session beyond its transaction, so PgBouncer's transaction pooling
can hand each transaction another server connection (issue 13, ``docs/scaling.md``).

Session state outlives the transaction and would reach whichever client gets the server connection next
(or be missing from the one this client gets): a plain ``SET`` or ``set_config(…, false)``, a session-level
advisory lock, ``LISTEN``, a temporary table, an SQL-level ``PREPARE``, a ``WITH HOLD`` cursor. kaquan uses
the transaction-scoped forms (``set_config(…, true)``, ``SET LOCAL``, ``pg_advisory_xact_lock``,
``pg_try_advisory_xact_lock``). This scans the SQL kaquan writes (string literals and ``func.<name>`` calls
in ``core``, ``tenants``, ``plugins``, ``admin_ui`` and ``h5``; docstrings are prose and skipped).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "tenants", "plugins", "admin_ui", "h5")

#: What outlives a transaction, and its transaction-scoped replacement.
SESSION_STATE: dict[str, re.Pattern[str]] = {
    "session-level advisory lock (use pg_advisory_xact_lock / pg_try_advisory_xact_lock)": re.compile(
        r"\bpg_(try_)?advisory_lock(_shared)?\b", re.IGNORECASE
    ),
    "session-level SET (use SET LOCAL or set_config(..., true))": re.compile(
        r"^\s*SET\s+(SESSION\s+)?(?!LOCAL\b)(\w+(\.\w+)?\s*(=|\bTO\b)|ROLE\b|TIME\s+ZONE\b|SESSION\s+AUTH)",
        re.IGNORECASE,
    ),
    "session-level set_config (third argument must be true)": re.compile(
        r"\bset_config\s*\([^()]*,\s*false\s*\)", re.IGNORECASE
    ),
    "LISTEN / UNLISTEN": re.compile(r"^\s*(UN)?LISTEN\s", re.IGNORECASE),
    "temporary table": re.compile(r"\bCREATE\s+(GLOBAL\s+|LOCAL\s+)?TEMP(ORARY)?\s+TABLE\b", re.IGNORECASE),
    "SQL-level PREPARE (prepared statements belong to the session)": re.compile(
        r"^\s*PREPARE\s+\w+\s*(\(|AS\b)", re.IGNORECASE
    ),
    "WITH HOLD cursor": re.compile(r"\bWITH\s+HOLD\b", re.IGNORECASE),
}


def _docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _sql_texts(source: str) -> Iterator[tuple[int, str]]:
    """String literals (not docstrings) and ``func.<name>`` / ``<x>.<name>`` attribute names, with lines."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr


def _findings(source: str) -> list[str]:
    return [
        f"line {line}: {what}: {text.strip()[:80]!r}"
        for line, text in _sql_texts(source)
        for what, pattern in SESSION_STATE.items()
        if pattern.search(text)
    ]


def test_nothing_kaquan_sends_outlives_its_transaction() -> None:
    problems = [
        f"{path.relative_to(ROOT)} {finding}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for finding in _findings(path.read_text(encoding="utf-8"))
    ]
    assert problems == [], "session state breaks PgBouncer's transaction pooling:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "snippet",
    [
        "text('SELECT pg_advisory_lock(42)')",
        "select(func.pg_try_advisory_lock(1))",
        "text('SET work_mem = 1')",
        "text('set session statement_timeout to 5')",
        "text('SET app.tenant_id = 1')",
        "text('SET ROLE kaquan_owner')",
        "text(\"select set_config('app.tenant_id', :t, false)\")",
        "text('LISTEN kaquan')",
        "text('CREATE TEMP TABLE x (id int)')",
        "text('PREPARE grant_pick AS SELECT 1')",
        "text('DECLARE c CURSOR WITH HOLD FOR SELECT 1')",
    ],
)
def test_each_kind_of_session_state_is_caught(snippet: str) -> None:
    assert _findings(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        "text('SELECT pg_advisory_xact_lock(42)')",
        "select(func.pg_try_advisory_xact_lock(1))",
        "text('SET LOCAL work_mem = 1')",
        "text(\"select set_config('app.tenant_id', :t, true)\")",
        "text('UPDATE grant_items SET reminded_at = now()')",
        "'Set a low-stock threshold or days of cover, not both'",
        "def f():\n    '''SET work_mem in a docstring is prose.'''\n",
    ],
)
def test_transaction_scoped_forms_pass(snippet: str) -> None:
    assert _findings(snippet) == []
