"""Data-key lifecycle: create at onboarding, unwrap (cached) for use, re-wrap on master-key rotation."""

from __future__ import annotations

import os
import time
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto.envelope import MasterKeyring, TenantCipher
from core.crypto.models import TenantKey
from core.db.context import cross_tenant, require_tenant
from core.db.session import Database

ACTIVE_KEY_TTL = 60.0
"""Seconds a tenant's active data key is used without looking it up again."""


class KeyService:
    """Owns the master keyring; hands out a :class:`TenantCipher` for the tenant in context."""

    def __init__(self, keyring: MasterKeyring) -> None:
        self.keyring = keyring
        self._cache: dict[tuple[uuid.UUID, uuid.UUID], TenantCipher] = {}
        self._active: dict[uuid.UUID, tuple[float, TenantCipher]] = {}

    async def create_data_key(self, session: AsyncSession, tenant_id: uuid.UUID) -> TenantKey:
        wrapped, key_id = self.keyring.wrap(os.urandom(32), tenant_id)
        key = TenantKey(tenant_id=tenant_id, wrapped_key=wrapped, master_key_id=key_id, active=True)
        session.add(key)
        await session.flush()
        return key

    async def cipher(self, session: AsyncSession) -> TenantCipher:
        """The tenant's active data key as a cipher (unwrapped once; the active key id is re-read each minute).

        A tenant's active data key only changes when one is created; master-key rotation re-wraps the same
        key, so a cached cipher stays right across it.
        """
        tenant_id = require_tenant()
        hit = self._active.get(tenant_id)
        if hit is not None and time.monotonic() - hit[0] < ACTIVE_KEY_TTL:
            return hit[1]
        row = (
            (
                await session.execute(
                    select(TenantKey).where(TenantKey.active.is_(True)).order_by(TenantKey.id)
                )
            )
            .scalars()
            .first()
        )
        if row is None:
            raise LookupError("this tenant has no data key; was it onboarded?")
        cached = self._cache.get((tenant_id, row.id))
        if cached is None:
            data_key = self.keyring.unwrap(row.wrapped_key, row.master_key_id, tenant_id)
            cached = self._cache[(tenant_id, row.id)] = TenantCipher(tenant_id, data_key)
        self._active[tenant_id] = (time.monotonic(), cached)
        return cached

    async def rotate(self, db: Database, batch_size: int = 500) -> int:
        """Re-wrap every data key not under the current master key; returns how many were re-wrapped."""
        count = 0
        with cross_tenant("master key rotation"):
            while True:
                async with db.transaction() as session:
                    rows = (
                        (
                            await session.execute(
                                select(TenantKey)
                                .where(TenantKey.master_key_id != self.keyring.current_id)
                                .limit(batch_size)
                                .with_for_update(skip_locked=True)
                            )
                        )
                        .scalars()
                        .all()
                    )
                    if not rows:
                        return count
                    for row in rows:
                        plain = self.keyring.unwrap(row.wrapped_key, row.master_key_id, row.tenant_id)
                        row.wrapped_key, row.master_key_id = self.keyring.wrap(plain, row.tenant_id)
                    count += len(rows)
