"""The split ledger rows of channel orders: the glue between the order models and :mod:`core.splits`.

Called in the transaction of the event: :func:`split_sale` when a line's codes are allocated (the rule in
force when the order was placed is resolved and snapshotted on the line), :func:`split_refund` when units of
a line are refunded or cancelled, :func:`split_redemption` / :func:`split_rollback` when one of its codes is
redeemed or the redemption rolled back.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.channel_orders.models import ChannelOrder, ChannelOrderCode, ChannelOrderLine
from core.channels.models import Listing
from core.connectors.models import ConnectorAccount
from core.splits.engine import LineFacts
from core.splits.posting import LinePosting, post_redemption, post_refund, post_rollback, post_sale
from core.splits.rules import rule_in_force, terms_from_snapshot, terms_snapshot
from core.splits.terms import SplitTerms

__all__ = ["referral_count", "split_redemption", "split_refund", "split_rollback", "split_sale"]


async def referral_count(session: AsyncSession, order: ChannelOrder, column: str) -> int:
    """Distinct buyers the order's referrer (``column`` ``referrer``) or KOL (``kol``) has brought to the
    account up to and including this order (refused orders do not count)."""
    sharer = getattr(order, column)
    if not sharer:
        return 0
    attr = getattr(ChannelOrder, column)
    found = await session.scalar(
        select(func.count(func.distinct(ChannelOrder.buyer_id))).where(
            ChannelOrder.account_id == order.account_id, attr == sharer, ChannelOrder.buyer_id != "",
            ChannelOrder.placed_at <= order.placed_at, ChannelOrder.status != "refused",
        )
    )
    return int(found or 0) + (0 if order.buyer_id else 1)


def _facts(line: ChannelOrderLine, order: ChannelOrder, first: bool, referrers: int = 0, kols: int = 0) -> LineFacts:
    return LineFacts(gross_fen=line.gross_fen, quantity=line.quantity, first_line=first, referrer=order.referrer,
                     kol=order.kol, referrer_count=referrers, kol_count=kols)


async def split_sale(session: AsyncSession, order: ChannelOrder, lines: list[ChannelOrderLine]) -> None:
    """Resolve each line's rule at the order's time, snapshot it on the line and post its sale rows."""
    if not lines:
        return
    connector = await session.scalar(
        select(ConnectorAccount.connector_id).where(ConnectorAccount.id == order.account_id)) or ""
    resolved: dict[uuid.UUID | None, tuple[uuid.UUID | None, SplitTerms]] = {}
    for listing_id in sorted({ln.listing_id for ln in lines}, key=str):
        resolved[listing_id] = await rule_in_force(session, connector, order.account_id, listing_id, order.placed_at)
    # the referral counts matter only to a minimum of referrals (one query each, skipped otherwise)
    counted = any(c.min_referrals for _, terms in resolved.values() for c in terms.components)
    referrers = await referral_count(session, order, "referrer") if counted else 0
    kols = await referral_count(session, order, "kol") if counted else 0
    first = min(ln.channel_line_id for ln in lines)
    for line in sorted(lines, key=lambda ln: ln.channel_line_id):
        rule_id, terms = resolved[line.listing_id]
        snapshot = terms_snapshot(terms)
        if rule_id is None and terms.components and line.listing_id is not None:
            # a legacy listing rule: recorded as the listing gave it (terms_from_snapshot reads both forms)
            snapshot = dict(await session.scalar(select(Listing.split_rule).where(Listing.id == line.listing_id)) or {})
        line.split_rule, line.split_rule_id = snapshot, rule_id
        posting = LinePosting(order.account_id, order.id, line.id, rule_id, terms,
                              _facts(line, order, line.channel_line_id == first, referrers, kols))
        await post_sale(session, posting, order.placed_at)
    await session.flush()


async def split_refund(
    session: AsyncSession, line: ChannelOrderLine, *, before: int, units: int, kind: str, refund_id: str,
    at: dt.datetime,
) -> None:
    """Reverse the sale rows of ``units`` more refunded units of the line (``before`` refunded already)."""
    await post_refund(session, line.id, quantity=line.quantity, before=before, units=units, event=kind,
                      event_ref=refund_id, at=at)


async def _code_line(
    session: AsyncSession, order_code_id: uuid.UUID
) -> tuple[ChannelOrderCode, ChannelOrderLine, ChannelOrder] | None:
    row = (await session.execute(
        select(ChannelOrderCode, ChannelOrderLine, ChannelOrder)
        .join(ChannelOrderLine, ChannelOrderLine.id == ChannelOrderCode.line_id)
        .join(ChannelOrder, ChannelOrder.id == ChannelOrderLine.order_id)
        .where(ChannelOrderCode.id == order_code_id)
    )).first()
    return None if row is None else (row[0], row[1], row[2])


def redemption_ref(order_code_id: uuid.UUID, redemption_id: object) -> str:
    """The ledger ``event_ref`` of one redemption of an order's code (its rollback reuses it)."""
    return f"{order_code_id}:{redemption_id}"


async def split_redemption(
    session: AsyncSession, order_code_id: uuid.UUID, redemption_id: object, at: dt.datetime
) -> None:
    """Post the ``redeemed`` charges of one code of a line (its unit value: the gross split over the line's
    codes by code id, the first ``gross % codes`` one fen more)."""
    found = await _code_line(session, order_code_id)
    if found is None:
        return
    held, line, order = found
    ids = list((await session.execute(
        select(ChannelOrderCode.id).where(ChannelOrderCode.line_id == line.id).order_by(ChannelOrderCode.id)
    )).scalars())
    terms = terms_from_snapshot(line.split_rule)
    if not any(c.basis == "redeemed" for c in terms.components):
        return
    posting = LinePosting(order.account_id, order.id, line.id, line.split_rule_id, terms, _facts(line, order, False))
    await post_redemption(session, posting, event_ref=redemption_ref(held.id, redemption_id),
                          index=ids.index(held.id), units=len(ids), at=at)


async def split_rollback(
    session: AsyncSession, order_code_id: uuid.UUID, line_id: uuid.UUID, redemption_id: object, at: dt.datetime
) -> None:
    """Reverse exactly the rows the rolled-back redemption wrote."""
    await post_rollback(session, line_id, redemption_ref(order_code_id, redemption_id), at)
