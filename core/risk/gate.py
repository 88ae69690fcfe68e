"""The one entry point every distribution path calls: ``async with guard(...)`` around the hand-out.

    async with guard(session, settings, "grant", RiskSubject(member_id=m.id, ip=ip), quantity=2):
        ...  # allocate and record the grant; an exception here gives the counted units back

``guard`` refuses with :class:`RiskRefused` (problem+json ``risk_refused``, the rule's reason code in
``reason``) when a blocklist matches, a lockout is active or a limit would be exceeded; otherwise it counts the
units against every applicable limit (Redis in service mode, the database in embedded mode) and gives them
back if the guarded block raises. ``record_failure`` feeds the failed-attempt velocity that locks out guessers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError
from core.settings import Settings

RiskAction = Literal["grant", "claim", "transfer", "redeem"]
RISK_ACTIONS: tuple[str, ...] = ("grant", "claim", "transfer", "redeem")


@dataclass(frozen=True)
class RiskSubject:
    """Who is acting, as far as the caller knows; every field is optional."""

    member_id: uuid.UUID | None = None
    phone_digest: str | None = None
    ip: str | None = None
    device_id: str | None = None
    client_id: uuid.UUID | None = None


class RiskRefused(DomainError):
    """A risk rule refused the action; ``extra['reason']`` is the stable reason code."""

    status, code = 429, "risk_refused"


@asynccontextmanager
async def guard(
    session: AsyncSession, settings: Settings, action: RiskAction, subject: RiskSubject, quantity: int = 1
) -> AsyncIterator[None]:
    """Refuse, or count ``quantity`` units of ``action`` for ``subject`` for the guarded block."""
    from core.risk import engine

    ticket = await engine.admit(session, settings, action, subject, quantity)
    try:
        yield
    except BaseException:
        await engine.give_back(settings, ticket)
        raise


async def record_failure(
    session: AsyncSession, settings: Settings, action: RiskAction, subject: RiskSubject
) -> None:
    """Count a failed attempt (wrong code or PIN); enough of them in the window start a lockout."""
    from core.risk import engine

    await engine.record_failure(session, settings, action, subject)


async def refuse_if_locked_out(
    session: AsyncSession, settings: Settings, action: RiskAction, subject: RiskSubject
) -> None:
    """Refuse with ``locked_out`` while failed attempts keep ``subject`` out of ``action`` (no counting),
    for a step before the counted one, such as sending or checking a one-time code."""
    from core.risk import engine

    await engine.refuse_if_locked_out(session, settings, action, subject)
