"""Helpers for the risk tests: rule sets, one guarded action in its own transaction, a fixed clock."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from typing import Any

import msgspec

from core.db.context import tenant_context
from core.risk import engine
from core.risk.gate import RiskRefused, RiskSubject, guard, record_failure
from core.risk.schemas import LimitRule, RuleSet, Velocity
from core.risk.services import put_rules
from core.settings import Settings


def db_counters(settings: Settings) -> Settings:
    """The same settings without Redis: counters, failures and device sets in the database."""
    return msgspec.structs.replace(settings, redis_url="")


async def set_rules(
    kernel: Any, tenant_id: uuid.UUID, *limits: tuple[str, str, str, int], **policy: Any
) -> None:
    velocity = Velocity(
        **{k: policy.pop(k) for k in ("failure_limit", "window_minutes", "lockout_minutes") if k in policy}
    )
    data = RuleSet([LimitRule(a, d, w, n) for a, d, w, n in limits], velocity, **policy)
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            await put_rules(db, data)


async def attempt(
    kernel: Any,
    settings: Settings,
    tenant_id: uuid.UUID,
    action: str,
    subject: RiskSubject,
    quantity: int = 1,
    fail: bool = False,
) -> str | None:
    """One guarded action in its own transaction: None when admitted, else the refusal reason."""
    with tenant_context(tenant_id):
        try:
            async with (
                kernel.db.transaction() as db,
                guard(db, settings, action, subject, quantity),  # type: ignore[arg-type]
            ):
                if fail:
                    raise RuntimeError("the guarded block failed")
        except RiskRefused as exc:
            return str(exc.extra["reason"])
        except RuntimeError:
            return "failed"
        finally:
            await engine.settle()
    return None


async def fail_once(kernel: Any, settings: Settings, tenant_id: uuid.UUID, subject: RiskSubject) -> None:
    """A failed redemption attempt whose own transaction then rolls back (as the request's would)."""
    with tenant_context(tenant_id):
        # The caller's transaction rolls back (a wrong code); the failure must be counted all the same.
        with contextlib.suppress(LookupError):
            async with kernel.db.transaction() as db:
                await record_failure(db, settings, "redeem", subject)
                raise LookupError("wrong code")
        await engine.settle()


class Clock:
    """A settable clock for ``core.risk.engine._now``."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now
