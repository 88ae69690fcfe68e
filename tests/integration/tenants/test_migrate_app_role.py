"""``kaquan migrate`` provisions the app role without disturbing other databases on the server.

A PostgreSQL role is server-wide: two kaquan databases on one server with the same app role name share
it. Migrating the second must not change the password the first one's app connections use; only
``--reset-app-password`` changes it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from core.db.migrations import upgrade_head
from core.db.rls import provision_app_role_sql


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a PostgreSQL ``SCRAM-SHA-256`` verifier (``pg_authid.rolpassword``) is for ``password``."""
    method, rest = verifier.split("$", 1)
    assert method == "SCRAM-SHA-256", verifier
    params, keys = rest.split("$", 1)
    iterations, salt = params.split(":", 1)
    stored_key, _server_key = keys.split(":", 1)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(hashlib.sha256(client_key).digest()).decode(), stored_key)


@dataclass
class TwoDatabases:
    admin_url: str
    role: str
    owners: list[str]
    apps: list[str]


@pytest.fixture
async def two_databases(test_env: Any) -> AsyncIterator[TwoDatabases]:
    admin = os.environ.get("KAQUAN_TEST_DATABASE_URL")
    if test_env.backend != "postgresql" or not admin:
        pytest.skip("PostgreSQL-only: roles are server-wide (set KAQUAN_TEST_DATABASE_URL)")
    tag = secrets.token_hex(3)
    role, names = f"kq_app_{tag}", [f"kaquan_role_a_{tag}", f"kaquan_role_b_{tag}"]
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        for name in names:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    base = make_url(admin)
    owners = [base.set(database=n).render_as_string(hide_password=False) for n in names]
    apps = [
        base.set(database=n, username=role, password=pw).render_as_string(hide_password=False)
        for n, pw in zip(names, ("first-app-password", "second-app-password"), strict=True)
    ]
    try:
        yield TwoDatabases(admin, role, owners, apps)
    finally:
        async with engine.connect() as conn:
            for name in names:
                await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        await engine.dispose()


async def _verifier(admin_url: str, role: str) -> str:
    engine = create_async_engine(admin_url)
    try:
        async with engine.connect() as conn:
            return (
                await conn.execute(text("select rolpassword from pg_authid where rolname = :r"), {"r": role})
            ).scalar_one()
    finally:
        await engine.dispose()


async def _app_can_read(app_url: str) -> bool:
    engine = create_async_engine(app_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("select count(*) from tenants"))
        return True
    finally:
        await engine.dispose()


def _migrate(owner_url: str, app_url: str, *flags: str) -> Any:
    from core.cli import main

    env = {"KAQUAN_DATABASE_URL": app_url, "KAQUAN_DATABASE_OWNER_URL": owner_url, "KAQUAN_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(main, ["migrate", *flags], env=env)


async def test_migrating_a_second_database_keeps_the_shared_app_role_password(two_databases: TwoDatabases) -> None:
    db = two_databases
    await asyncio.to_thread(upgrade_head, db.owners[0], db.apps[0])
    first = await _verifier(db.admin_url, db.role)
    assert scram_matches(first, "first-app-password")

    result = await asyncio.to_thread(_migrate, db.owners[1], db.apps[1])
    assert result.exit_code == 0, result.output
    assert await _verifier(db.admin_url, db.role) == first  # the first database's app login still works
    assert await _app_can_read(db.apps[0])
    assert await _app_can_read(db.apps[1].replace("second-app-password", "first-app-password"))

    # migrating again changes nothing either
    result = await asyncio.to_thread(_migrate, db.owners[0], db.apps[0])
    assert result.exit_code == 0, result.output
    assert await _verifier(db.admin_url, db.role) == first


async def test_reset_app_password_flag_changes_the_password(two_databases: TwoDatabases) -> None:
    db = two_databases
    await asyncio.to_thread(upgrade_head, db.owners[0], db.apps[0])
    await asyncio.to_thread(upgrade_head, db.owners[1], db.apps[1])
    assert scram_matches(await _verifier(db.admin_url, db.role), "first-app-password")

    result = await asyncio.to_thread(_migrate, db.owners[1], db.apps[1], "--reset-app-password")
    assert result.exit_code == 0, result.output
    after = await _verifier(db.admin_url, db.role)
    assert scram_matches(after, "second-app-password") and not scram_matches(after, "first-app-password")


def test_role_sql_creates_with_password_but_never_alters_an_existing_password_unless_asked() -> None:
    create = provision_app_role_sql("app", "p'w", exists=False)
    assert create[0] == "CREATE ROLE \"app\" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD 'p''w'"
    keep = provision_app_role_sql("app", "new", exists=True)
    assert not any("PASSWORD" in s for s in keep)
    assert keep[0] == 'ALTER ROLE "app" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE'
    reset = provision_app_role_sql("app", "new", exists=True, reset_password=True)
    assert "ALTER ROLE \"app\" PASSWORD 'new'" in reset
