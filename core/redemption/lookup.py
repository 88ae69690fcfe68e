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

from sqlalchemy import ARRAY, BindParameter, Row, Select, and_, any_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.catalog.models import Product
from core.db.context import require_tenant
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


_CODES, _PRODUCTS, _ITEMS = Code.__table__, Product.__table__, GrantItem.__table__
_SETTINGS = RedemptionSettings.__table__


def tenant_param() -> BindParameter[Any]:
    """``:b_tenant``, the tenant of a hot-path Core statement: run on the session's connection, these carry
    their own ``tenant_id =`` predicates (the ORM's tenant filter only applies to ORM statements)."""
    return bindparam("b_tenant", type_=_CODES.c.tenant_id.type)


def first_held(code_id: Any, by_member: bool, by_item: bool) -> Any:
    """The id of the unredeemed, unexpired grant item a redemption of ``code_id`` uses (a scalar subquery).

    The given member's (``:b_member_id``) or the given item (``:b_grant_item_id``), else the oldest: one unit
    per use of a shared reusable code. A unit past its own expiry (``:b_now``; a "days after issue" validity
    ends before the code's) is never used, even before the expiry sweep has marked it ``expired``.
    """
    g = _ITEMS.c
    q = select(g.id).where(
        g.tenant_id == tenant_param(),
        g.code_id == code_id,
        g.status == "held",
        or_(g.expires_at.is_(None), g.expires_at > bindparam("b_now", type_=g.expires_at.type)),
    )
    if by_member:
        q = q.where(g.member_id == bindparam("b_member_id", type_=g.member_id.type))
    if by_item:
        q = q.where(g.id == bindparam("b_grant_item_id", type_=g.id.type))
    return q.order_by(g.id).limit(1).scalar_subquery()


def holder_params(data: RedeemIn, now: dt.datetime) -> dict[str, Any]:
    return {
        "b_tenant": require_tenant(),
        "b_member_id": data.member_id,
        "b_grant_item_id": data.grant_item_id,
        "b_now": now,
    }


def _lapsed(code_id: Any, by_member: bool, by_item: bool) -> Any:
    """Whether a unit of ``code_id`` (the given member's / the given item) expired unredeemed (EXISTS)."""
    g = _ITEMS.c
    q = select(g.id).where(
        g.tenant_id == tenant_param(),
        g.code_id == code_id,
        or_(
            g.status == "expired",
            and_(g.status == "held", g.expires_at <= bindparam("b_now", type_=g.expires_at.type)),
        ),
    )
    if by_member:
        q = q.where(g.member_id == bindparam("b_member_id", type_=g.member_id.type))
    if by_item:
        q = q.where(g.id == bindparam("b_grant_item_id", type_=g.id.type))
    return q.exists()


# The hot path's statements are built once per shape (building one costs more than running it) and run
# on the session's connection (no ORM execution), with the tenant as a parameter of every table they read.


@cache
def _lookup(dialect: str, with_window: bool, by_member: bool, by_item: bool) -> Select[Any]:
    c, p = _CODES.c, _PRODUCTS.c
    holder = _ITEMS.alias("holder")
    tenant = tenant_param()
    q = select(
        c.id,
        c.product_id,
        c.digest,
        c.secret,
        c.last4,
        c.has_pin,
        c.state,
        c.expires_at,
        c.uses_left,
        p.kind,
        p.name_zh,
        p.currency,
        p.face_value,
        p.max_uses,
        holder.c.id.label("holder_id"),
        holder.c.member_id.label("holder_member_id"),
        holder.c.grant_id.label("holder_grant_id"),
        _lapsed(c.id, by_member, by_item).correlate(_CODES).label("holder_lapsed"),
    )
    if with_window:
        s = _SETTINGS.c
        window = select(s.rollback_window_minutes).where(s.tenant_id == tenant).scalar_subquery()
        q = q.add_columns(window.label("rollback_window"))
    held = first_held(c.id, by_member, by_item).correlate(_CODES)
    if dialect == "postgresql":  # one array parameter: one prepared statement whatever the number of forms
        digests = c.digest == any_(bindparam("b_digests", type_=ARRAY(c.digest.type)))
    else:
        digests = c.digest.in_(bindparam("b_digests", expanding=True))
    return (
        q.select_from(_CODES)
        .join(_PRODUCTS, and_(p.tenant_id == c.tenant_id, p.id == c.product_id))
        .outerjoin(holder, and_(holder.c.tenant_id == c.tenant_id, holder.c.id == held))
        .where(c.tenant_id == tenant, digests)
    )


async def hot_connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection for the hot path's Core statements, after flushing any pending ORM change
    (Core statements on the connection do not autoflush)."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    return await session.connection()


def dialect_of(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else ""


async def find_code(
    session: AsyncSession, kernel: Any, data: RedeemIn, now: dt.datetime, *, with_window: bool = False
) -> tuple[Row[Any] | None, Any]:
    """The code whose digest matches the most literal candidate form of ``data.code``, in one statement.

    The row carries the code's and its product's columns, the grant item a redemption would use
    (``holder_id``, ``holder_member_id``, ``holder_grant_id``) and, ``with_window``, the tenant's rollback
    window (``rollback_window``, NULL when never set).
    """
    cipher = await kernel.keys.cipher(session)
    # each form digested exactly as it is (the first forms are canonical; the rest match older digests)
    digests = [cipher.digest(c.encode("utf-8")) for c in code_candidates(data.code)]
    stmt = _lookup(
        dialect_of(session), with_window, data.member_id is not None, data.grant_item_id is not None
    )
    connection = await hot_connection(session)
    rows = (await connection.execute(stmt, {"b_digests": digests, **holder_params(data, now)})).all()
    if len(rows) == 1:
        return rows[0], cipher
    by_digest = {row.digest: row for row in rows}
    for d in digests:
        if d in by_digest:
            return by_digest[d], cipher
    return None, cipher


def pin_matches(cipher: Any, code: Row[Any], given: str) -> bool:
    _, pin = unseal(cipher, code.digest, code.secret)
    return hmac.compare_digest(typed(given).encode("utf-8"), typed(pin or "").encode("utf-8"))
