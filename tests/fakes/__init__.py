"""Fakes the tests start locally (channel servers on 127.0.0.1) and helpers to call connectors against them."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import msgspec
import structlog

from plugins import CallbackRequest, ConnectorContext


@asynccontextmanager
async def channel_context(
    config: msgspec.Struct,
    *,
    access_token: str = "",
    clock: Callable[[], dt.datetime] | None = None,
    account_id: str = "acct-test",
) -> AsyncIterator[ConnectorContext]:
    """A :class:`ConnectorContext` with a real HTTP client, as the host builds one for a call."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0)) as http:
        yield ConnectorContext(
            tenant_id=uuid.UUID(int=7),
            config=config,
            http=http,
            log=structlog.get_logger("kaquan.connector.test").bind(connector=type(config).__name__),
            clock=clock or (lambda: dt.datetime.now(dt.UTC)),
            account_id=account_id,
            access_token=access_token,
        )


def callback_request(headers: dict[str, str], query: dict[str, str], body: bytes) -> CallbackRequest:
    """A :class:`CallbackRequest` as kaquan's callback route builds it (header names lower-case)."""
    return CallbackRequest(
        headers={k.lower(): v for k, v in headers.items()},
        query=dict(query),
        body=body,
        received_at=dt.datetime.now(dt.UTC),
    )
