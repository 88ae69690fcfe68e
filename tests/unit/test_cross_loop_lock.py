"""Embedded mode's SQLite write locks are taken from the API loop and from each worker thread's own loop.

An ``asyncio.Lock`` shared by two loops fails ("bound to a different event loop") once they contend;
:class:`core.db.locks.CrossLoopLock` must not, and must not block the loop of a waiter.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

from core.db.locks import CrossLoopLock
from core.inventory.allocation import _maybe_lock


def _hold_in_other_loop(enter: Any, held: threading.Event, release: threading.Event) -> threading.Thread:
    def run() -> None:
        async def hold() -> None:
            async with enter():
                held.set()
                await asyncio.to_thread(release.wait, 5)

        asyncio.run(hold())

    thread = threading.Thread(target=run)
    thread.start()
    return thread


async def test_cross_loop_lock_waits_without_blocking_the_loop() -> None:
    lock = CrossLoopLock()
    held, release = threading.Event(), threading.Event()
    thread = _hold_in_other_loop(lambda: lock, held, release)
    await asyncio.to_thread(held.wait, 5)
    assert lock.locked()

    async def take() -> str:
        async with lock:
            return "taken"

    waiter = asyncio.create_task(take())
    ticks = 0
    for _ in range(5):  # this loop keeps running while the waiter polls
        ticks += 1
        await asyncio.sleep(0.005)
    assert ticks == 5 and not waiter.done()
    release.set()
    assert await asyncio.wait_for(waiter, 5) == "taken"
    await asyncio.to_thread(thread.join, 5)
    assert not lock.locked()


async def test_allocation_lock_is_contended_from_two_loops_both_ways() -> None:
    sqlite_session: Any = SimpleNamespace(bind=SimpleNamespace(dialect=SimpleNamespace(name="sqlite")))
    # the worker thread's loop holds the lock while this loop waits for it …
    held, release = threading.Event(), threading.Event()
    thread = _hold_in_other_loop(lambda: _maybe_lock(sqlite_session), held, release)
    await asyncio.to_thread(held.wait, 5)
    waiter = asyncio.create_task(_enter(_maybe_lock(sqlite_session)))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    release.set()
    await asyncio.wait_for(waiter, 5)
    await asyncio.to_thread(thread.join, 5)
    # … then this loop holds it while another thread's loop waits (an asyncio.Lock fails here)
    errors: list[BaseException] = []
    done = threading.Event()

    def other_loop_waits() -> None:
        try:
            asyncio.run(asyncio.wait_for(_enter(_maybe_lock(sqlite_session)), 5))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    async with _maybe_lock(sqlite_session):
        other = threading.Thread(target=other_loop_waits)
        other.start()
        await asyncio.sleep(0.05)
        assert not done.is_set()  # it waits for us
    await asyncio.to_thread(other.join, 5)
    assert done.is_set() and errors == []


async def _enter(lock: Any) -> None:
    async with lock:
        await asyncio.sleep(0)
