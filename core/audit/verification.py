"""Verify a tenant's audit chain: recompute every block from its events and follow the chain of seal hashes.

A changed event changes its block's digest; a deleted or inserted one its count; a changed seal row its
hash (the hash covers the block's header: number, range and count) or the next block's ``prev_hash``; a
deleted seal leaves a gap in the block numbers. Events after the last block are pending, never broken.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec
from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.models import AuditEvent, AuditSeal
from core.audit.sealing import (
    FIRST_POSITION,
    GENESIS,
    BlockDigest,
    block_hash,
    events_in,
    seal_settled,
    stream_rows,
)

_SEAL_PAGE = 500


class ChainReport(msgspec.Struct):
    """Result of verifying one tenant's chain: blocks and events checked, events not sealed yet, and the
    first broken block with the reason."""

    tenant_id: uuid.UUID
    ok: bool
    blocks_checked: int
    events_checked: int
    events_pending: int = 0
    first_broken_block: int | None = None
    reason: str | None = None


class _Events:
    """The events of a range in block order, one at a time, fetched in partitions."""

    def __init__(self, parts: AsyncIterator[list[Row[Any]]]) -> None:
        self._parts, self._rows, self._at = parts, list[Row[Any]](), 0

    async def peek(self) -> Row[Any] | None:
        while self._at >= len(self._rows):
            try:
                self._rows, self._at = await anext(self._parts), 0
            except StopAsyncIteration:
                return None
        return self._rows[self._at]

    def take(self) -> None:
        self._at += 1


async def verify_chain(session: AsyncSession, tenant_id: uuid.UUID, settle: float = 2.0) -> ChainReport:
    """Seal what was committed before the call (waiting up to ``settle`` seconds for open transactions),
    then check the tenant's chain."""
    await seal_settled(session, tenant_id, settle)
    return await check_chain(session, tenant_id)


async def check_chain(session: AsyncSession, tenant_id: uuid.UUID) -> ChainReport:
    """Recompute every sealed block of the tenant; report the first broken one."""
    state = _Walk(tenant_id)
    while True:
        seals = (await session.execute(
            select(AuditSeal).where(AuditSeal.tenant_id == tenant_id, AuditSeal.block >= state.block)
            .order_by(AuditSeal.block).limit(_SEAL_PAGE)
        )).scalars().all()
        if not seals:
            break
        # the first page also reads events below block 1, which no block may leave out
        lower = None if state.block == 1 else state.from_pos
        upper = max(s.to_pos for s in seals)
        async with aclosing(stream_rows(session, events_in(tenant_id, lower, upper))) as parts:
            events = _Events(parts)
            for seal in seals:
                if (problem := await state.check(seal, events)) is not None:
                    return state.report(False, state.block, problem)
    if state.blocks == 0 and await _count(session, tenant_id, AuditEvent.txid < FIRST_POSITION):
        return state.report(False, 1, "an event lies before the first block's range (inserted)")
    state.pending = await _count(session, tenant_id, AuditEvent.txid >= state.from_pos)
    return state.report(True)


async def _count(session: AsyncSession, tenant_id: uuid.UUID, condition: Any) -> int:
    q = select(func.count()).select_from(AuditEvent).where(AuditEvent.tenant_id == tenant_id, condition)
    return int(await session.scalar(q) or 0)


class _Walk:
    """Where the walk along the chain stands: the next block expected, where it starts, the hash before it."""

    def __init__(self, tenant_id: uuid.UUID) -> None:
        self.tenant_id = tenant_id
        self.block, self.from_pos, self.prev = 1, FIRST_POSITION, GENESIS
        self.blocks = self.events = self.pending = 0

    def report(self, ok: bool, broken: int | None = None, reason: str | None = None) -> ChainReport:
        return ChainReport(self.tenant_id, ok, self.blocks, self.events, self.pending, broken, reason)

    async def check(self, seal: AuditSeal, events: _Events) -> str | None:
        """Check one block against the chain so far and its events; None when it holds."""
        n = self.block
        if seal.block != n:
            return f"block {n} is missing (its seal row was deleted)"
        if seal.prev_hash != self.prev:
            return f"block {n}: prev_hash does not match the hash of the block before it"
        if seal.from_pos != self.from_pos or seal.to_pos <= seal.from_pos:
            return f"block {n} does not start where the block before it ends (its seal row was changed)"
        digest = BlockDigest()
        while (row := await events.peek()) is not None and row.txid < seal.to_pos:
            if row.txid < seal.from_pos:
                return f"event {row.id} lies outside every block, at position {row.txid} (inserted)"
            digest.add([row])
            events.take()
        events_digest = digest.hexdigest()
        computed = block_hash(self.prev, self.tenant_id, n, seal.from_pos, seal.to_pos, digest.count, events_digest)
        if computed != seal.hash:
            if digest.count != seal.event_count:
                return (f"block {n} holds {digest.count} events, its seal says {seal.event_count} "
                        "(an event was deleted or inserted)")
            if events_digest != seal.events_digest:
                return f"block {n}: its events do not match the seal (an event was changed)"
            return f"block {n}: the seal's hash does not match its content (the seal row was changed)"
        if digest.count != seal.event_count or events_digest != seal.events_digest:
            return f"block {n}: the seal's count or digest was changed"
        self.block, self.from_pos, self.prev = n + 1, seal.to_pos, seal.hash
        self.blocks, self.events = self.blocks + 1, self.events + digest.count
        return None
