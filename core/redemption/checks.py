"""What must hold before a code is redeemed, and validation (the same checks, changing nothing).

Every attempt passes the risk gate (blocklists, lockouts, limits); wrong codes and wrong PINs feed its
failed-attempt velocity (:func:`core.risk.gate.record_failure`), which the engine writes in a transaction
of its own, so the request's rollback cannot undo the count.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

import msgspec
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.base import utcnow
from core.errors import DomainError, FieldError, ValidationFailed
from core.inventory.vault import masked, scan_parts
from core.redemption import refusals
from core.redemption.accounts import code_account, handed_out
from core.redemption.lookup import find_code, pin_matches
from core.redemption.places import resolve_place
from core.redemption.schemas import RedeemIn, ValidationOut
from core.risk.gate import RiskSubject, guard, record_failure

REDEEMABLE_KINDS = ("code", "reusable_code", "stored_value")


@dataclass(frozen=True)
class Caller:
    """Who redeems: a console user or an API client, and where from (for the risk rules).

    ``clerk``: the user is a clerk (核销员), who may redeem only at the stores bound to them.
    """

    user_id: uuid.UUID | None = None
    client_id: uuid.UUID | None = None
    ip: str | None = None
    clerk: bool = False


def risk_subject(caller: Caller, terminal: str) -> RiskSubject:
    """What the risk rules see of a redemption attempt (the terminal stands in for the device)."""
    return RiskSubject(client_id=caller.client_id, ip=caller.ip, device_id=terminal or None)


async def _failed(session: AsyncSession, settings: Any, subject: RiskSubject, exc: DomainError) -> NoReturn:
    """Count a failed attempt (wrong code or PIN) towards the lockout, then refuse.

    The risk engine writes failures in a transaction of its own (on SQLite behind the caller's write lock:
    right after it), so the count survives the rollback that the refusal causes.
    """
    await record_failure(session, settings, "redeem", subject)
    raise exc


@dataclass
class Checked:
    """A code that passed the checks (the lookup row), with what validate reports."""

    code: Row[Any]
    uses: int | None = None
    uses_remaining: int | None = None
    balance: int | None = None


async def _find(
    session: AsyncSession, kernel: Any, data: RedeemIn, now: dt.datetime, redeeming: bool
) -> tuple[Row[Any] | None, Any, RedeemIn]:
    """The code as given; else, for a scanned member QR code (``number#PIN``, no PIN given), the code of
    its number with its PIN (the returned ``data`` then carries them)."""
    code, cipher = await find_code(session, kernel, data, now, with_window=redeeming)
    if code is None and data.pin is None:
        for number, pin in scan_parts(data.code):
            split = msgspec.structs.replace(data, code=number, pin=pin)
            code, cipher = await find_code(session, kernel, split, now, with_window=redeeming)
            if code is not None:
                return code, cipher, split
    return code, cipher, data


async def check(
    session: AsyncSession,
    kernel: Any,
    data: RedeemIn,
    subject: RiskSubject,
    now: dt.datetime,
    *,
    redeeming: bool = False,
) -> Checked:
    """Find the code, check its PIN and whether it may be redeemed now (reads only).

    ``redeeming`` leaves the use count and the balance to the conditional write that follows (it refuses
    on its own), so the redemption does not read them first.
    """
    code, cipher, data = await _find(session, kernel, data, now, redeeming)
    if code is None:
        await _failed(session, kernel.settings, subject, refusals.not_found())
    if code.has_pin:
        if not data.pin or not data.pin.strip():
            raise refusals.pin_required()
        if not pin_matches(cipher, code, data.pin):
            await _failed(session, kernel.settings, subject, refusals.pin_mismatch())
    if code.kind not in REDEEMABLE_KINDS:
        raise refusals.not_found()
    if code.kind == "stored_value":
        if data.amount is None:
            raise ValidationFailed(
                "A stored-value card needs the amount to spend (fen)",
                "储值卡核销需要填写扣减金额（分）",
                code="amount_required",
                errors=[FieldError(field="amount", message="required", code="required")],
            )
    elif data.amount is not None:
        raise ValidationFailed(
            "Only stored-value cards take an amount",
            "只有储值卡需要填写金额",
            code="amount_not_applicable",
            errors=[FieldError(field="amount", message="not applicable", code="not_applicable")],
        )
    if code.state == "voided":
        raise refusals.voided()
    if code.state == "expired" or (code.expires_at is not None and code.expires_at <= now):
        raise refusals.expired(code.expires_at)
    checked = Checked(code)
    pinned = data.member_id is not None or data.grant_item_id is not None
    if code.kind == "code":
        if code.state == "redeemed":
            raise await refusals.already_redeemed(session, code.id)
        if code.state != "issued":
            raise refusals.not_issued()
    elif code.kind == "reusable_code":
        handed = handed_out(code)
        if handed <= 0:
            raise refusals.not_issued()
        if not redeeming or code.state == "redeemed" or (pinned and code.holder_id is None):
            account = await code_account(session, code.id)
            uses = account.uses if account else 0
            if uses >= handed or code.state == "redeemed":
                raise refusals.uses_exhausted(uses, handed)
            checked.uses, checked.uses_remaining = uses, handed - uses
    else:
        if code.state == "redeemed":
            raise refusals.insufficient(0, data.amount, code.currency)
        if code.state != "issued":
            raise refusals.not_issued()
        if not redeeming:
            account = await code_account(session, code.id)
            balance = account.balance if account and account.balance is not None else code.face_value
            if data.amount is not None and balance < data.amount:
                raise refusals.insufficient(balance, data.amount, code.currency)
            checked.balance = balance
    if code.holder_id is None and code.holder_lapsed:
        raise refusals.expired(None)  # the member's unit expired (its validity can end before the code's)
    if pinned and code.holder_id is None:
        raise refusals.holder_missing(data)
    return checked


class _ValidateOnly(Exception):
    """Raised out of the risk guard after a successful validation so the counted unit is given back."""

    def __init__(self, result: ValidationOut) -> None:
        super().__init__("validated")
        self.result = result


async def validate(session: AsyncSession, kernel: Any, data: RedeemIn, caller: Caller) -> ValidationOut:
    """Whether the code may be redeemed now, with its balance or remaining uses; changes nothing.

    It passes the risk gate like a redemption (blocklists and lockouts refuse it; wrong codes and PINs
    count as failures) but gives the counted unit back, so validating does not use up redemption limits.
    A clerk checks only at one of the clerk's stores, as for a redemption (:mod:`core.redemption.places`).
    """
    if caller.clerk:
        await resolve_place(session, data, caller.user_id)
    subject = risk_subject(caller, data.terminal)
    try:
        async with guard(session, kernel.settings, "redeem", subject):
            c = await check(session, kernel, data, subject, utcnow())
            code = c.code
            raise _ValidateOnly(
                ValidationOut(
                    True,
                    code.id,
                    masked(code.last4),
                    code.product_id,
                    code.name_zh,
                    code.kind,
                    code.expires_at,
                    code.currency,
                    c.uses,
                    c.uses_remaining,
                    c.balance,
                    code.holder_member_id,
                    code.holder_id,
                )
            )
    except _ValidateOnly as ok:
        return ok.result
