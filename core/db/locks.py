"""A lock for embedded mode's single SQLite writer, shared by every event loop in the process."""

from __future__ import annotations

import asyncio
import threading


class CrossLoopLock:
    """A mutex that any event loop, on any thread, can wait for without blocking its loop.

    Embedded mode seals from the server's loop and from each worker thread's own loop; an
    ``asyncio.Lock`` binds to the first loop that waits on it and then fails in every other
    ("bound to a different event loop"). This polls a ``threading.Lock`` with short async sleeps:
    contention is rare (one seal takes milliseconds) and a waiter is never bound to a loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    async def __aenter__(self) -> None:
        delay = 0.001
        while not self._lock.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()
