"""The in-process sealer: seals a tenant's audit events within moments of the commit that wrote them."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import structlog

from core.audit.sealing import seal_block
from core.audit.services import on_commit
from core.db.session import Database

log = structlog.get_logger("kaquan.audit.sealer")


class AuditSealer:
    """Collects tenants whose commits recorded events and seals them in the background, one block per
    tenant and round. A tenant whose events could not all be sealed yet (another sealer held its lock, or
    an open transaction below them keeps the horizon back) is tried again: after ``delay`` while blocks get
    sealed, backing off to ``max_backoff`` while none can be."""

    def __init__(self, db: Database, delay: float = 0.2, max_backoff: float = 5.0) -> None:
        self.db = db
        self.delay = delay
        self.max_backoff = max_backoff
        self._pending: set[uuid.UUID] = set()
        self._retry_at: dict[uuid.UUID, float] = {}
        self._backoff: dict[uuid.UUID, float] = {}
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
        self._pending |= set(self._retry_at)
        await self.flush()

    async def flush(self) -> int:
        """One seal attempt for every pending tenant now; returns how many events were sealed."""
        tenants, self._pending = self._pending, set()
        sealed = 0
        for tenant_id in sorted(tenants):
            self._retry_at.pop(tenant_id, None)
            try:
                outcome = await seal_block(self.db.engine, tenant_id)
            except Exception:  # boundary: the sealer loop; the scheduled job and readers seal what is left
                log.exception("audit_seal_failed", tenant_id=str(tenant_id))
                self._again(tenant_id, progressed=False)
                continue
            sealed += outcome.sealed
            if outcome.busy or outcome.more:
                self._again(tenant_id, progressed=outcome.sealed > 0 or outcome.busy)
            else:
                self._backoff.pop(tenant_id, None)
        return sealed

    def _again(self, tenant_id: uuid.UUID, *, progressed: bool) -> None:
        backoff = self.delay if progressed else min(self._backoff.get(tenant_id, self.delay) * 2, self.max_backoff)
        self._backoff[tenant_id] = backoff
        self._retry_at[tenant_id] = time.monotonic() + backoff

    def _due(self) -> float | None:
        """Move the retries that are due into the pending set; seconds until the next one (None: none)."""
        now = time.monotonic()
        for tenant_id, at in list(self._retry_at.items()):
            if at <= now:
                del self._retry_at[tenant_id]
                self._pending.add(tenant_id)
        return max(min(self._retry_at.values()) - now, 0.0) if self._retry_at else None

    async def _run(self) -> None:
        while True:
            wait = self._due()
            if not self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()
            await asyncio.sleep(self.delay)  # gather a block of commits
            self._due()
            await self.flush()
