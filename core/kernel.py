"""The process-wide kernel handed to services: settings, database and key service."""

from __future__ import annotations

from dataclasses import dataclass

from core.crypto.envelope import load_keyring
from core.crypto.services import KeyService
from core.db.session import Database
from core.settings import Settings


@dataclass
class Kernel:
    settings: Settings
    db: Database
    keys: KeyService

    @classmethod
    def create(cls, settings: Settings) -> Kernel:
        keyring = load_keyring(
            settings.master_key,
            settings.previous_master_keys,
            settings.data_path,
            embedded=not settings.is_postgres,
        )
        if not settings.is_postgres:
            settings.data_path.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, db=Database.from_settings(settings), keys=KeyService(keyring))

    async def close(self) -> None:
        await self.db.dispose()
