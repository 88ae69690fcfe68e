"""The one entry point every distribution path calls: ``async with guard(...)`` around the hand-out.

    async with guard(session, settings, "grant", RiskSubject(member_id=m.id, ip=ip), quantity=2):
        ...  # allocate and record the grant; an exception here gives the counted units back

``guard`` refuses with :class:`RiskRefused` (problem+json ``risk_refused``, the rule's reason code in
``reason``) when a blocklist matches, a lockout is active or a limit would be exceeded; otherwise it counts the
units against every applicable limit (Redis in service mode, the database in embedded mode) and gives them
back if the guarded block raises. ``record_failure`` feeds the failed-attempt velocity that locks out guessers.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncSession

from core.risk import engine
from core.risk.subjects import RiskAction, RiskRefused, RiskSubject
from core.settings import Settings

# Callers import the subject and the refusal from here, with the guard; they are defined in
# core.risk.subjects so that the engine behind the guard can use them without importing the guard.
__all__ = [
    "RiskAction",
    "RiskRefused",
    "RiskSubject",
    "guard",
    "record_failure",
    "refuse_if_blocked",
    "refuse_if_locked_out",
]


def guard(
    session: AsyncSession, settings: Settings, action: RiskAction, subject: RiskSubject, quantity: int = 1
) -> AbstractAsyncContextManager[None]:
    """Refuse, or count ``quantity`` units of ``action`` for ``subject`` for the guarded block."""
    return _Guarded(session, settings, action, subject, quantity)


class _Guarded:
    """``guard``'s context manager: a plain class, cheaper on every grant than a generator-based one."""

    __slots__ = ("_action", "_quantity", "_session", "_settings", "_subject", "_ticket")

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        action: RiskAction,
        subject: RiskSubject,
        quantity: int,
    ) -> None:
        self._session, self._settings, self._action = session, settings, action
        self._subject, self._quantity = subject, quantity
        self._ticket: engine.Ticket | None = None

    async def __aenter__(self) -> None:
        self._ticket = await engine.admit(
            self._session, self._settings, self._action, self._subject, self._quantity
        )

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None and self._ticket is not None:  # any exit by an exception, cancellation too
            await engine.give_back(self._settings, self._ticket)  # the counted units go back


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


async def refuse_if_blocked(
    session: AsyncSession, settings: Settings, action: RiskAction, subject: RiskSubject
) -> None:
    """Refuse with ``blocked_*`` when the subject's phone, device or IP is on the blocklist (the refusal is
    recorded; nothing is counted), for a step before the counted one, such as sending a one-time code."""
    await engine.refuse_if_blocked(session, settings, action, subject)
