"""What the risk gate is asked about (an action by a subject) and how it refuses.

Shared by :mod:`core.risk.gate` (the callers' entry point, which re-exports these) and
:mod:`core.risk.engine` (the rules behind it), so neither imports the other for them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from core.errors import DomainError

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
