"""Every tenant table keeps tenant_id in its primary key, unique constraints and foreign keys."""

from __future__ import annotations

from sqlalchemy import ForeignKeyConstraint, PrimaryKeyConstraint, UniqueConstraint

from core.db.base import Base
from core.db.registry import load_all_models


def _tenant_tables():
    load_all_models()
    return [t for t in Base.metadata.sorted_tables if "tenant_id" in t.c]


def test_there_are_tenant_tables_to_check():
    names = {t.name for t in _tenant_tables()}
    assert {"users", "api_clients", "access_tokens", "audit_events", "outbox"} <= names


def test_tenant_tables_have_composite_keys_starting_with_tenant_id():
    problems = []
    for table in _tenant_tables():
        for constraint in table.constraints:
            cols = [c.name for c in constraint.columns]
            if isinstance(constraint, PrimaryKeyConstraint):
                if cols[:1] != ["tenant_id"] or len(cols) < 2:
                    problems.append(f"{table.name}: primary key {cols} must be (tenant_id, ...)")
            elif isinstance(constraint, UniqueConstraint) and "tenant_id" not in cols:
                problems.append(f"{table.name}: unique {cols} lacks tenant_id")
            elif isinstance(constraint, ForeignKeyConstraint):
                target = constraint.referred_table
                if "tenant_id" in target.c and "tenant_id" not in cols:
                    problems.append(f"{table.name}: foreign key {cols} -> {target.name} lacks tenant_id")
        for index in table.indexes:
            if index.unique and "tenant_id" not in [c.name for c in index.columns]:
                problems.append(f"{table.name}: unique index {index.name} lacks tenant_id")
    assert problems == []


def test_no_tenant_table_references_another_tenant_table_without_tenant_id_first():
    for table in _tenant_tables():
        for fk in table.foreign_key_constraints:
            if "tenant_id" in fk.referred_table.c and fk.referred_table.name != "tenants":
                assert fk.column_keys[0] == "tenant_id", (table.name, fk.column_keys)
