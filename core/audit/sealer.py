"""The in-process sealer: seals a tenant's audit events within moments of the commit that wrote them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import structlog

from core.audit.sealing import current_horizon, seal_block
from core.audit.services import on_commit
from core.db.session import Database

log = structlog.get_logger("kaquan.audit.sealer")


class AuditSealer:
    """Collects tenants whose commits recorded events and seals them in the background, one block per
    tenant and round. A tenant whose events could not all be sealed yet waits: for the next round when
    another sealer held its lock, and on PostgreSQL, when an open transaction kept the horizon below its
    events, until the horizon has moved (one cheap query a round for all waiting tenants)."""

    def __init__(self, db: Database, delay: float = 0.2) -> None:
        self.db = db
        self.delay = delay
        self._pending: set[uuid.UUID] = set()
        self._waiting: dict[uuid.UUID, int] = {}  # tenant -> horizon of its last attempt (-1: next round)
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
        self._pending |= set(self._waiting)
        self._waiting.clear()
        await self.flush()

    async def flush(self) -> int:
        """One seal attempt for every pending tenant now; returns how many events were sealed."""
        tenants, self._pending = self._pending, set()
        sealed = 0
        for tenant_id in sorted(tenants):
            self._waiting.pop(tenant_id, None)
            try:
                outcome = await seal_block(self.db.engine, tenant_id)
            except Exception:  # boundary: the sealer loop; the scheduled job and readers seal what is left
                log.exception("audit_seal_failed", tenant_id=str(tenant_id))
                continue
            sealed += outcome.sealed
            if outcome.busy:
                self._waiting[tenant_id] = -1
            elif outcome.more:
                self._waiting[tenant_id] = -1 if outcome.horizon is None else outcome.horizon
        return sealed

    async def _promote_waiting(self) -> None:
        """Move the waiting tenants worth another attempt into the pending set."""
        if not self._waiting:
            return
        try:
            horizon = await current_horizon(self.db.engine)
        except Exception:  # boundary: the sealer loop; a database outage leaves the tenants waiting
            log.warning("audit_horizon_unavailable", exc_info=True)
            return
        for tenant_id, last in list(self._waiting.items()):
            if last < 0 or horizon is None or horizon > last:
                del self._waiting[tenant_id]
                self._pending.add(tenant_id)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._waiting:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.delay)
                else:
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.delay)  # gather a block of commits
            await self._promote_waiting()
            await self.flush()
