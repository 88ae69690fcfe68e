"""The schema stays distributable by tenant (Citus-ready, issue 13): every tenant table's primary key,
unique constraints and foreign keys include ``tenant_id``, so distributing each by ``tenant_id`` keeps every
constraint checkable on one node; the few tables without it are the named platform tables."""

from __future__ import annotations

from sqlalchemy import ForeignKeyConstraint, UniqueConstraint

from core.db.base import Base
from core.db.registry import load_all_models

#: Platform-level tables: small, read by every node (Citus reference tables), never holding tenant data.
REFERENCE_TABLES = {"tenants", "plans", "operators", "operator_tokens", "short_codes"}


def _problems() -> tuple[set[str], list[str]]:
    load_all_models()
    reference: set[str] = set()
    problems: list[str] = []
    for table in Base.metadata.sorted_tables:
        if "tenant_id" not in table.c:
            reference.add(table.name)
            continue
        if "tenant_id" not in table.primary_key.columns:
            problems.append(f"{table.name}: primary key {[c.name for c in table.primary_key.columns]}")
        for c in table.constraints:
            cols = [x.name for x in c.columns]
            if isinstance(c, UniqueConstraint) and "tenant_id" not in cols:
                problems.append(f"{table.name}: unique {cols}")
            if isinstance(c, ForeignKeyConstraint) and "tenant_id" not in cols:
                problems.append(f"{table.name}: foreign key {cols} → {c.referred_table.name}")
        for index in table.indexes:
            cols = [x.name for x in index.columns]
            if index.unique and "tenant_id" not in cols:
                problems.append(f"{table.name}: unique index {index.name} {cols}")
    return reference, problems


def test_every_tenant_table_keys_and_references_by_tenant_id() -> None:
    reference, problems = _problems()
    assert problems == [], "not distributable by tenant_id:\n" + "\n".join(problems)
    assert reference == REFERENCE_TABLES, (
        f"tables without tenant_id changed: new {sorted(reference - REFERENCE_TABLES)}, "
        f"gone {sorted(REFERENCE_TABLES - reference)} — a tenant table needs tenant_id; a platform table is "
        "named in REFERENCE_TABLES (and in docs/architecture.md's tenancy rules)"
    )
