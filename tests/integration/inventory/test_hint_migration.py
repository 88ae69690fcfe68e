"""Migration 0013: stored hints of existing codes are cut to what the mask may show — nothing of a code
shorter than 8 characters, at most a third of a longer one, nothing when a PIN hides the number's length —
and redemptions' copies follow (SQLite, and PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from pathlib import Path

import pytest
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from alembic import command
from core.crypto.envelope import TenantCipher
from core.db.migrations import ROOT
from core.inventory.vault import seal
from tests.conftest import _create_pg_database, _drop_pg_database, _pg_admin_url


def _upgrade(owner_url: str, app_url: str, revision: str) -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes.update(owner_url=owner_url, app_url=app_url, configure_logging=False)
    command.upgrade(cfg, revision)


CASES = [  # (number, pin, hint after the migration)
    ("AB12", None, ""),
    ("K7Q2X9Z", None, ""),
    ("AB12CD34", None, "34"),
    ("ABCDEFGHJK", None, "HJK"),
    ("GIFT77778888ABCD", None, "ABCD"),
    ("GIFT77778888ABCD", "123456", ""),  # with a PIN the number's length cannot be told: nothing
]


async def _check(owner_url: str, app_url: str, *, postgres: bool) -> None:
    await asyncio.to_thread(_upgrade, owner_url, app_url, "0012_campaign_status")
    cipher = TenantCipher(uuid.uuid4(), os.urandom(32))
    engine = create_async_engine(owner_url)
    tid, pid, bid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = dt.datetime.now(dt.UTC)

    def key(u: uuid.UUID) -> str:
        return str(u) if postgres else u.hex

    ids: list[uuid.UUID] = []
    try:
        async with engine.begin() as conn:
            if postgres:
                await conn.execute(text("SET LOCAL session_replication_role = replica"))  # rows without parents
            for i, (number, pin, _hint) in enumerate(CASES):
                sealed = seal(cipher, number, pin)
                code_id = uuid.uuid4()
                ids.append(code_id)
                await conn.execute(
                    text(
                        "INSERT INTO codes (tenant_id, id, product_id, batch_id, digest, secret, last4, has_pin, state,"
                        " state_changed_at, created_at) VALUES (:t, :id, :p, :b, :d, :s, :l, :h, 'issued', :now, :now)"
                    ),
                    {"t": key(tid), "id": key(code_id), "p": key(pid), "b": key(bid), "d": f"{i}{sealed.digest}"[:64],
                     "s": sealed.secret, "l": number[-4:], "h": pin is not None, "now": now},
                )
                await conn.execute(
                    text(
                        "INSERT INTO redemptions (tenant_id, id, code_id, product_id, kind, code_last4, store, terminal,"
                        " currency, status, created_at) VALUES (:t, :id, :c, :p, 'code', :l, '', '', 'CNY', 'redeemed', :now)"
                    ),
                    {"t": key(tid), "id": key(uuid.uuid4()), "c": key(code_id), "p": key(pid), "l": number[-4:],
                     "now": now},
                )
        await asyncio.to_thread(_upgrade, owner_url, app_url, "0013_imports_code_rules")
        async with engine.connect() as conn:
            if postgres:
                await conn.execute(text("SELECT set_config('app.bypass_rls', 'on', true)"))
            hints = {row[0]: row[1] for row in await conn.execute(text("SELECT id, last4 FROM codes"))}
            copies = {row[0]: row[1] for row in await conn.execute(text("SELECT code_id, code_last4 FROM redemptions"))}
    finally:
        await engine.dispose()
    hints = {uuid.UUID(str(k)): v for k, v in hints.items()}  # a uuid, or hex text, as the driver gives it
    copies = {uuid.UUID(str(k)): v for k, v in copies.items()}
    for code_id, (number, pin, expected) in zip(ids, CASES, strict=True):
        assert hints[code_id] == expected, (number, pin, hints[code_id])
        assert copies[code_id] == expected


async def test_migration_cuts_stored_hints_sqlite(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'hints.db'}"
    await _check(url, url, postgres=False)


async def test_migration_cuts_stored_hints_postgres():
    admin = _pg_admin_url()
    if not admin:
        pytest.skip("PostgreSQL not configured (KAQUAN_TEST_DATABASE_URL)")
    name, owner_url, app_url = await _create_pg_database(admin)
    try:
        await _check(owner_url, app_url, postgres=True)
    finally:
        await _drop_pg_database(admin, name)
