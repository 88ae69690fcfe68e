"""Row-level security DDL used by migrations (PostgreSQL only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: loading this module imports no SQLAlchemy
    from sqlalchemy.engine import Connection

POLICY_NAME = "tenant_isolation"

_BOUND = (
    "(SELECT CASE WHEN current_setting('app.bypass_rls', true) = 'on' THEN '{edge}'::uuid "
    "ELSE NULLIF(current_setting('app.tenant_id', true), '')::uuid END)"
)
# A range whose bounds are InitPlans (computed once per statement), not a per-row OR: with a tenant set it
# is [tenant, tenant] and the planner uses the (tenant_id, ...) indexes; no tenant gives NULL bounds, hence
# no rows; the named bypass widens it to every tenant. The OR spelling cost 5.8x on a 5,000-row count
# (see docs/benchmarks.md, "RLS cost").
POLICY_EXPR = (
    "tenant_id BETWEEN " + _BOUND.format(edge="00000000-0000-0000-0000-000000000000")
    + " AND " + _BOUND.format(edge="ffffffff-ffff-ffff-ffff-ffffffffffff")
)


def enable_tenant_rls_sql(table: str) -> list[str]:
    """Statements that wall a tenant table: RLS enabled and forced, one policy for all commands."""
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY_NAME} ON "{table}"',
        f'CREATE POLICY {POLICY_NAME} ON "{table}" USING ({POLICY_EXPR}) WITH CHECK ({POLICY_EXPR})',
    ]


def _quote_ident(role: str) -> str:
    return '"' + role.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def provision_app_role_sql(
    role: str, password: str | None, *, exists: bool, reset_password: bool = False
) -> list[str]:
    """Statements that provision the non-owner app role: LOGIN, NOSUPERUSER, NOBYPASSRLS, data rights only.

    A role is server-wide: every database on the server that uses the same role name shares it and its
    password. So a missing role is created with ``password``, but an existing role's password is left
    alone unless ``reset_password`` is given (``kaquan migrate --reset-app-password``); migrating one
    database never locks the others' app connections out.
    """
    quoted = _quote_ident(role)
    pw = "NULL" if password is None else _quote_literal(password)
    attrs = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
    statements = [f"CREATE ROLE {quoted} {attrs} PASSWORD {pw}"] if not exists else [f"ALTER ROLE {quoted} {attrs}"]
    if exists and reset_password:
        statements.append(f"ALTER ROLE {quoted} PASSWORD {pw}")
    return [
        *statements,
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        "DO $$ BEGIN IF to_regprocedure('kaquan_analyze(regclass)') IS NOT NULL THEN "
        f"GRANT EXECUTE ON FUNCTION kaquan_analyze(regclass) TO {quoted}; END IF; END $$",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {quoted}",
        f"REVOKE ALL ON TABLE alembic_version FROM {quoted}",
        f"GRANT SELECT ON TABLE alembic_version TO {quoted}",
    ]


def role_exists(connection: Connection, role: str) -> bool:
    """Whether the server has a role named ``role`` (roles are shared by every database on it)."""
    from sqlalchemy import text

    found = connection.execute(
        text("select 1 from pg_roles where rolname = :role"), {"role": role}
    ).first()
    return found is not None


def tenant_tables(connection: Connection) -> list[str]:
    """Every table in ``public`` that has a ``tenant_id`` column (PostgreSQL catalog)."""
    rows = connection.exec_driver_sql(
        "select table_name from information_schema.columns "
        "where table_schema = 'public' and column_name = 'tenant_id' order by table_name"
    )
    return [r[0] for r in rows]


def secure_postgres(
    connection: Connection, app_role: tuple[str, str | None] | None, *, reset_app_password: bool = False
) -> None:
    """Wall every tenant table and provision the app role; idempotent, run after each upgrade.

    The app role's password is set when the role is created, and changed later only with
    ``reset_app_password`` (see :func:`provision_app_role_sql`).
    """
    statements: list[str] = []
    for table in tenant_tables(connection):
        statements.extend(enable_tenant_rls_sql(table))
    if app_role:
        role, password = app_role
        statements.extend(
            provision_app_role_sql(
                role, password, exists=role_exists(connection, role), reset_password=reset_app_password
            )
        )
    for stmt in statements:
        connection.exec_driver_sql(stmt)
