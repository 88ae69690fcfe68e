"""The in-process sealer: seals a tenant's audit events within moments of the commit that wrote them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog

from core.audit.services import on_commit, seal_chain
from core.db.session import Database

log = structlog.get_logger("kaquan.audit.sealer")


class AuditSealer:
    """Collects tenants whose commits recorded events and seals them in the background, in blocks."""

    def __init__(self, db: Database, delay: float = 0.2) -> None:
        self.db = db
        self.delay = delay
        self._pending: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe = lambda: None

    def _on_commit(self, tenant_ids: set[uuid.UUID]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._add(tenant_ids)
        else:  # a commit on another thread (e.g. the in-process worker)
            loop.call_soon_threadsafe(self._add, tenant_ids)

    def _add(self, tenant_ids: set[uuid.UUID]) -> None:
        self._pending |= tenant_ids
        self._wake.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = on_commit(self._on_commit)
        self._task = asyncio.create_task(self._run(), name="kaquan-audit-sealer")

    async def stop(self) -> None:
        self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> int:
        """Seal every pending tenant now; returns how many events were sealed."""
        tenants, self._pending = self._pending, set()
        sealed = 0
        for tenant_id in sorted(tenants):
            try:
                async with self.db.sessionmaker() as session:
                    sealed += await seal_chain(session, tenant_id)
            except Exception:  # boundary: the sealer loop; the scheduled job and readers seal what is left
                log.exception("audit_seal_failed", tenant_id=str(tenant_id))
        return sealed

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.delay)  # gather a block of commits
            await self.flush()
