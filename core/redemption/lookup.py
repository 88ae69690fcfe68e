"""Looking a typed or scanned code up: its candidate forms, and one statement that finds the code with its
product, the grant item a redemption would use and (optionally) the tenant's rollback window.

A code is looked up by its HMAC digest (tenant key), trying its canonical form first (what
:func:`core.inventory.vault.digest_of` stores), then forms with the spaces, dashes and case a person or a
scanner may have changed.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import unicodedata
from functools import cache
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core.catalog.models import Product
from core.grants.models import GrantItem
from core.inventory import codegen
from core.inventory.models import Code
from core.inventory.vault import unseal
from core.normalize import typed
from core.redemption.models import RedemptionSettings
from core.redemption.schemas import RedeemIn

MAX_CANDIDATES = 8
_SPACES = re.compile(r"[\s\u3000]+")


def code_candidates(raw: str) -> list[str]:
    """The forms of a typed or scanned code to look up, most likely first.

    The vault digests the canonical form (:func:`core.normalize.typed`: NFKC, no spaces, dashes or invisible
    characters, case kept), so that form comes first, then upper-cased and in Crockford form (people type O
    for 0). Codes stored before that rule were digested as given (surrounding whitespace removed, inner
    spaces and dashes kept): their forms follow, as given, with spaces as dashes, and in the generated
    layout (groups of four, then the check symbol).
    """
    key = typed(raw)
    out = [key, key.upper()]
    flat = codegen.normalize(key)
    spaced = unicodedata.normalize("NFKC", raw).strip()
    dashed = _SPACES.sub("-", spaced)
    out += [flat, spaced, dashed, dashed.upper()]
    if len(flat) > 1:
        body = flat[:-1]
        out.append("-".join([body[i : i + 4] for i in range(0, len(body), 4)] + [flat[-1]]))
    return list(dict.fromkeys(c for c in out if c))[:MAX_CANDIDATES]


_LOOKUP_COLUMNS = (
    Code.id,
    Code.product_id,
    Code.digest,
    Code.secret,
    Code.last4,
    Code.has_pin,
    Code.state,
    Code.expires_at,
    Code.uses_left,
    Product.kind,
    Product.name_zh,
    Product.currency,
    Product.face_value,
    Product.max_uses,
)


def first_held(code_id: Any, by_member: bool, by_item: bool) -> Any:
    """The id of the unredeemed, unexpired grant item a redemption of ``code_id`` uses (a scalar subquery).

    The given member's (``:b_member_id``) or the given item (``:b_grant_item_id``), else the oldest: one unit
    per use of a shared reusable code. A unit past its own expiry (``:b_now``; a "days after issue" validity
    ends before the code's) is never used, even before the expiry sweep has marked it ``expired``.
    """
    q = select(GrantItem.id).where(
        GrantItem.code_id == code_id,
        GrantItem.status == "held",
        or_(GrantItem.expires_at.is_(None), GrantItem.expires_at > bindparam("b_now")),
    )
    if by_member:
        q = q.where(GrantItem.member_id == bindparam("b_member_id"))
    if by_item:
        q = q.where(GrantItem.id == bindparam("b_grant_item_id"))
    return q.order_by(GrantItem.id).limit(1).scalar_subquery()


def holder_params(data: RedeemIn, now: dt.datetime) -> dict[str, Any]:
    return {"b_member_id": data.member_id, "b_grant_item_id": data.grant_item_id, "b_now": now}


def _lapsed(code_id: Any, by_member: bool, by_item: bool) -> Any:
    """Whether a unit of ``code_id`` (the given member's / the given item) expired unredeemed (EXISTS)."""
    q = select(GrantItem.id).where(
        GrantItem.code_id == code_id,
        or_(
            GrantItem.status == "expired",
            and_(GrantItem.status == "held", GrantItem.expires_at <= bindparam("b_now")),
        ),
    )
    if by_member:
        q = q.where(GrantItem.member_id == bindparam("b_member_id"))
    if by_item:
        q = q.where(GrantItem.id == bindparam("b_grant_item_id"))
    return q.exists()


# The hot path's statements are built once per shape (building one costs more than running it); the
# tenant filter still adds the tenant to every execution.


@cache
def _lookup(with_window: bool, by_member: bool, by_item: bool) -> Select:
    holder = aliased(GrantItem, name="holder")
    q = select(
        *_LOOKUP_COLUMNS,
        holder.id.label("holder_id"),
        holder.member_id.label("holder_member_id"),
        holder.grant_id.label("holder_grant_id"),
        _lapsed(Code.id, by_member, by_item).correlate(Code).label("holder_lapsed"),
    )
    if with_window:  # the tenant filter (and RLS) keep every table here, subqueries too, to the tenant
        window = select(RedemptionSettings.rollback_window_minutes).scalar_subquery()
        q = q.add_columns(window.label("rollback_window"))
    held = first_held(Code.id, by_member, by_item).correlate(Code)
    return (
        q.select_from(Code)
        .join(Product, and_(Product.tenant_id == Code.tenant_id, Product.id == Code.product_id))
        .outerjoin(holder, and_(holder.tenant_id == Code.tenant_id, holder.id == held))
        .where(Code.digest.in_(bindparam("b_digests", expanding=True)))
    )


async def find_code(
    session: AsyncSession, kernel: Any, data: RedeemIn, now: dt.datetime, *, with_window: bool = False
) -> tuple[Row[Any] | None, Any]:
    """The code whose digest matches the most literal candidate form of ``data.code``, in one statement.

    The row carries the code's and its product's columns, the grant item a redemption would use
    (``holder_id``, ``holder_member_id``) and, ``with_window``, the tenant's rollback window
    (``rollback_window``, NULL when never set).
    """
    cipher = await kernel.keys.cipher(session)
    # each form digested exactly as it is (the first forms are canonical; the rest match older digests)
    digests = [cipher.digest(c.encode("utf-8")) for c in code_candidates(data.code)]
    stmt = _lookup(with_window, data.member_id is not None, data.grant_item_id is not None)
    rows = (await session.execute(stmt, {"b_digests": digests, **holder_params(data, now)})).all()
    by_digest = {row.digest: row for row in rows}
    for d in digests:
        if d in by_digest:
            return by_digest[d], cipher
    return None, cipher


def pin_matches(cipher: Any, code: Row[Any], given: str) -> bool:
    _, pin = unseal(cipher, code.digest, code.secret)
    return hmac.compare_digest(typed(given).encode("utf-8"), typed(pin or "").encode("utf-8"))
