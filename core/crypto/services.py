"""Data-key lifecycle: create at onboarding, unwrap (cached) for use, re-wrap on master-key rotation."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.crypto.envelope import MasterKeyring, TenantCipher
from core.crypto.models import TenantKey
from core.db.context import cross_tenant, require_tenant
from core.db.session import Database


class KeyService:
    """Owns the master keyring; hands out a :class:`TenantCipher` for the tenant in context."""

    def __init__(self, keyring: MasterKeyring) -> None:
        self.keyring = keyring
        self._cache: dict[tuple[uuid.UUID, uuid.UUID], TenantCipher] = {}

    async def create_data_key(self, session: AsyncSession, tenant_id: uuid.UUID) -> TenantKey:
        wrapped, key_id = self.keyring.wrap(os.urandom(32), tenant_id)
        key = TenantKey(tenant_id=tenant_id, wrapped_key=wrapped, master_key_id=key_id, active=True)
        session.add(key)
        await session.flush()
        return key

    async def cipher(self, session: AsyncSession) -> TenantCipher:
        tenant_id = require_tenant()
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
