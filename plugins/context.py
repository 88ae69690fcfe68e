"""``ConnectorContext``: everything a connector may use for one call (never a database session)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, kw_only=True)
class ConnectorContext:
    """Handed to every connector call by the host.

    - ``tenant_id``: the tenant the call is for (``None`` for platform-level work);
    - ``config``: the connector's decrypted config, an instance of its ``info.config`` Struct;
    - ``http``: an ``httpx.AsyncClient`` owned by the host (timeouts set; do not close it);
    - ``log``: a structlog logger already bound to the tenant and connector (never log secrets);
    - ``clock``: returns the current time, timezone-aware UTC (tests freeze it);
    - ``embedded``: true in embedded (single-process, development) mode;
    - ``account_id``: the tenant's connector account the call is for (``""`` for the platform's account);
    - ``access_token``: the account's OAuth2 access token, for connectors with capability ``oauth``
      (kaquan refreshes it before it expires; never log it).
    """

    tenant_id: uuid.UUID | None
    config: msgspec.Struct
    http: httpx.AsyncClient
    log: Any
    clock: Callable[[], dt.datetime] = field(default=_utcnow)
    embedded: bool = False
    account_id: str = ""
    access_token: str = ""

    def now(self) -> dt.datetime:
        return self.clock()
