"""Embedded mode seals from the server's event loop and from worker threads' own loops at the same time.

The seal lock must be usable from any loop on any thread: an ``asyncio.Lock`` shared between loops
fails with "bound to a different event loop" as soon as two loops contend for it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from core.audit import sealing
from core.audit.services import seal_settled, verify_chain
from core.db.context import tenant_context
from core.db.session import Database


async def test_seal_from_server_loop_and_worker_thread_at_once(kernel, settings, make_tenant, monkeypatch):
    tenant = await make_tenant()
    name = "_seal_sqlite" if kernel.db.dialect == "sqlite" else "_seal_postgresql"
    original = getattr(sealing, name)

    async def slow_seal(*args: Any) -> Any:
        await asyncio.sleep(0.03)  # hold the lock long enough that the other loop must wait for it
        return await original(*args)

    monkeypatch.setattr(sealing, name, slow_seal)
    rounds = 4
    thread_errors: list[BaseException] = []
    started = threading.Event()

    def worker_thread() -> None:
        async def seal_in_own_loop() -> None:
            db = Database.from_settings(settings)
            try:
                for _ in range(rounds):
                    async with db.sessionmaker() as session:
                        await seal_settled(session, tenant.id)
                    started.set()
            finally:
                await db.dispose()

        try:
            asyncio.run(seal_in_own_loop())
        except BaseException as exc:  # reported to the test below
            thread_errors.append(exc)
            started.set()

    thread = threading.Thread(target=worker_thread, name="kaquan-worker-test")
    thread.start()
    try:
        for _ in range(rounds):
            async with kernel.db.sessionmaker() as session:
                await seal_settled(session, tenant.id)
            await asyncio.sleep(0)
    finally:
        await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()
    assert thread_errors == []
    with tenant_context(tenant.id), pytest.MonkeyPatch.context() as mp:
        mp.setattr(sealing, name, original)
        async with kernel.db.transaction() as db:
            report = await verify_chain(db, tenant.id)
    assert report.ok and report.events_checked >= 3

