"""The redemption hot path's pre-built Core statements run on the session's connection, where the ORM's
tenant filter does not apply: each must name its tenant itself. In every SELECT and UPDATE of a statement
(its CTEs and subqueries too) each tenant table has a ``tenant_id = :b_tenant`` predicate, or is joined on
``tenant_id`` to one that has; every row it inserts takes ``tenant_id`` from ``:b_tenant``."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Alias, BindParameter, Insert, Join, Select, Table, Update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import CompileError
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.selectable import CTE, Exists, ScalarSelect, Subquery

import core.domains  # noqa: F401 - the models of every domain, so the mappers configure
from core.channel_orders.redemptions import _mark_redeemed
from core.db.base import Base
from core.redemption import accounts, lookup, redeem

TENANT_TABLES = {t.name for t in Base.metadata.sorted_tables if "tenant_id" in t.c}
_INSERTS = re.compile(
    r"INSERT INTO (\w+) \(([^)]*)\) (?:VALUES \(([^()]*)\)|SELECT (.*?)(?=\s+FROM\s|\s+RETURNING\s|\)\s|$))",
    re.S,
)


def _statements() -> list[tuple[str, Any, str]]:
    """(name, statement, dialect it runs on) of every pre-built statement of the hot path."""
    both = ("postgresql", "sqlite")
    holders = list(itertools.product((False, True), repeat=2))
    out = [
        (f"lookup {d} {s}", lookup._lookup(d, *s), d)
        for d in both
        for s in itertools.product((False, True), repeat=3)
    ]
    out += [(f"record won={w}", redeem._record_stmt(w), "postgresql") for w in (False, True)]
    out += [(f"code state fresh={f} {d}", redeem._state_stmt(f), d) for f in (False, True) for d in both]
    out += [(f"take item {s} {d}", redeem._take_stmt(*s), d) for s in holders for d in both]
    out += [(f"move item {d}", redeem._item_stmt(), d) for d in both]
    for name, build in (
        ("open", accounts._open_stmt),
        ("use", accounts._use_stmt),
        ("spend", accounts._spend_stmt),
    ):
        out += [(f"{name} {d}", build(d), d) for d in both]
    out += [(f"channel order code {d}", _mark_redeemed(), d) for d in both]
    return out


STATEMENTS = _statements()
_NESTED = (Select, ScalarSelect, Exists, CTE, Subquery, Insert, Update)


def _equalities(clause: Any) -> Iterator[BinaryExpression[Any]]:
    """The ``=`` comparisons of a WHERE or ON clause, not those of the subqueries in it (checked apart)."""
    stack = [clause] if clause is not None else []
    while stack:
        element = stack.pop()
        if isinstance(element, BinaryExpression) and element.operator is operators.eq:
            yield element
        stack.extend(c for c in element.get_children() if not isinstance(c, _NESTED))


def _tables(source: Any, on: list[Any]) -> Iterator[Any]:
    """The tenant tables (or their aliases) a FROM item reads, collecting the joins' ON clauses in ``on``."""
    if isinstance(source, Join):
        on.append(source.onclause)
        yield from _tables(source.left, on)
        yield from _tables(source.right, on)
    elif isinstance(source, Table | Alias) and not isinstance(source, CTE):
        table = source if isinstance(source, Table) else source.element
        if isinstance(table, Table) and table.name in TENANT_TABLES:
            yield source


def _froms(select: Select[Any]) -> list[Any]:
    """The SELECT's FROM items (``get_final_froms`` compiles with the default dialect, which the audit
    position function refuses: then the explicit FROMs and those of its columns)."""
    try:
        return list(select.get_final_froms())
    except CompileError:
        return [*select._from_obj, *select.columns_clause_froms]


def _scopes(stmt: Any) -> Iterator[tuple[list[Any], list[Any]]]:
    """Each SELECT and UPDATE in the statement (CTEs and subqueries too): (tenant tables, its clauses)."""
    seen: set[int] = set()
    for element in visitors.iterate(stmt):
        if id(element) in seen:
            continue
        seen.add(id(element))
        on: list[Any] = []
        if isinstance(element, Select):
            # a correlated subquery's outer table is the enclosing statement's, checked in that scope
            outer = set(element._correlate)  # SQLAlchemy has no public accessor for it
            tables = [t for f in _froms(element) for t in _tables(f, on) if t not in outer]
            yield tables, [element.whereclause, *on]
        elif isinstance(element, Update):
            yield list(_tables(element.table, on)), [element.whereclause]


def _bound(table: Any, clauses: list[Any], seen: frozenset[Any] = frozenset()) -> bool:
    """Whether ``table.tenant_id`` equals the tenant parameter, directly or through another table's."""
    for eq in (e for c in clauses for e in _equalities(c)):
        sides = (eq.left, eq.right)
        if not any(side is table.c.tenant_id for side in sides):
            continue
        other = eq.right if eq.left is table.c.tenant_id else eq.left
        if isinstance(other, BindParameter) and other.key in ("b_tenant", "tenant"):
            return True
        owner = getattr(other, "table", None)
        joined = other.key == "tenant_id" and owner is not None and owner not in seen
        if joined and _bound(owner, clauses, seen | {table}):
            return True
    return False


@pytest.mark.parametrize(("name", "stmt", "dialect"), STATEMENTS, ids=[n for n, _, _ in STATEMENTS])
def test_every_table_a_hot_path_statement_reads_names_the_tenant(name: str, stmt: Any, dialect: str) -> None:
    scopes = list(_scopes(stmt))
    assert scopes or isinstance(stmt, Insert), name
    for tables, clauses in scopes:
        for table in tables:
            assert _bound(table, clauses), (name, table.name, _sql(stmt, dialect))


def _sql(stmt: Any, dialect: str) -> str:
    """The statement as its backend gets it, with named parameters (``:b_tenant``)."""
    if dialect == "postgresql":
        return str(stmt.compile(dialect=postgresql.dialect(paramstyle="named")))
    return str(stmt.compile(dialect=sqlite.dialect(paramstyle="named")))


@pytest.mark.parametrize(("name", "stmt", "dialect"), STATEMENTS, ids=[n for n, _, _ in STATEMENTS])
def test_every_row_a_hot_path_statement_inserts_takes_the_tenant(name: str, stmt: Any, dialect: str) -> None:
    sql = _sql(stmt, dialect)
    tenant = ":tenant" if re.search(r":tenant\b", sql) else ":b_tenant"  # the channel orders' name for it
    inserts = _INSERTS.findall(sql)
    assert len(inserts) == sql.count("INSERT INTO"), sql
    for table, columns, values, selected in inserts:
        assert table in TENANT_TABLES
        names = [c.strip() for c in columns.split(",")]
        given = [v.strip() for v in (values or selected).split(",")]
        assert len(names) == len(given), (name, table, sql)
        assert re.match(rf"{tenant}\b", given[names.index("tenant_id")]), (name, table, sql)
