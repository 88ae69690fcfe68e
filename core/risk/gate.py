"""The one entry point every distribution path calls: ``async with guard(...)`` around the hand-out.

    async with guard(session, settings, "grant", RiskSubject(member_id=m.id, ip=ip), quantity=2):
        ...  # allocate and record the grant; an exception here gives the counted units back

``guard`` refuses with :class:`RiskRefused` (problem+json ``risk_refused``, the rule's reason code in
``reason``) when a blocklist matches, a lockout is active or a limit would be exceeded; otherwise it counts the
units against every applicable limit (Redis in service mode, the database in embedded mode) and gives them
back if the guarded block raises. ``record_failure`` feeds the failed-attempt velocity that locks out guessers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from core.risk import engine
from core.risk.subjects import RiskAction, RiskRefused, RiskSubject
from core.settings import Settings

# Callers import the subject and the refusal from here, with the guard; they are defined in
# core.risk.subjects so that the engine behind the guard can use them without importing the guard.
__all__ = ["RiskAction", "RiskRefused", "RiskSubject", "guard", "record_failure", "refuse_if_locked_out"]


@asynccontextmanager
async def guard(
    session: AsyncSession, settings: Settings, action: RiskAction, subject: RiskSubject, quantity: int = 1
) -> AsyncIterator[None]:
    """Refuse, or count ``quantity`` units of ``action`` for ``subject`` for the guarded block."""
    ticket = await engine.admit(session, settings, action, subject, quantity)
    try:
        yield
    except BaseException:  # boundary: cleanup only, re-raised: the counted units go back on any exit
        await engine.give_back(settings, ticket)
        raise


async def record_failure(
    session: AsyncSession, settings: Settings, action: RiskAction, subject: RiskSubject
) -> None:
    """Count a failed attempt (wrong code or PIN); enough of them in the window start a lockout."""
    await engine.record_failure(session, settings, action, subject)


async def refuse_if_locked_out(
    session: AsyncSession, settings: Settings, action: RiskAction, subject: RiskSubject
) -> None:
    """Refuse with ``locked_out`` while failed attempts keep ``subject`` out of ``action`` (no counting),
    for a step before the counted one, such as sending or checking a one-time code."""
    await engine.refuse_if_locked_out(session, settings, action, subject)
