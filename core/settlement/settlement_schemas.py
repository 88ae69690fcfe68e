"""msgspec Structs of the settlements API (bodies in, settlements and their lines out). Money is integer fen."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec

__all__ = [
    "AccountBalance",
    "ConfirmIn",
    "PayIn",
    "SettlementLineOut",
    "SettlementLinePage",
    "SettlementOut",
    "SettlementPage",
    "Totals",
]


class Totals(msgspec.Struct, kw_only=True):
    """A period's figures (fen); ``net_due_fen = gross_fen - commission_fen - refunds_fen + adjustments_fen``.

    ``gross_fen``: sale rows; ``commission_fen``: channel, platform, referrer and KOL rows of sales,
    redemptions and their rollbacks, net of what refunds gave back; ``refunds_fen``: the gross refunded or
    cancelled (positive); ``adjustments_fen``: the tenant's reconciliation adjustment rows; ``net_due_fen``:
    the tenant's rows, i.e. what the channel owes the tenant for the period.
    """

    gross_fen: int = 0
    commission_fen: int = 0
    refunds_fen: int = 0
    adjustments_fen: int = 0
    net_due_fen: int = 0


class SettlementOut(msgspec.Struct, kw_only=True):
    """One account's settlement of one period; ``live``: totals derived from the ledger (not yet frozen)."""

    id: uuid.UUID | None
    account_id: uuid.UUID
    account_name: str
    connector_id: str
    period: str
    status: str
    live: bool
    totals: Totals
    #: each party's rows of the period, every event (``tenant`` equals ``net_due_fen`` while live).
    parties: dict[str, int] = msgspec.field(default_factory=dict)
    open_items: int | None = None
    last_run_id: uuid.UUID | None = None
    payment_ref: str = ""
    reconciled_at: dt.datetime | None = None
    confirmed_at: dt.datetime | None = None
    confirmed_by: str = ""
    paid_at: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None


class SettlementPage(msgspec.Struct):
    items: list[SettlementOut]
    #: pass back unchanged as ``cursor`` (``<period>~<account id>``); ``None`` on the last page.
    next_cursor: str | None = None


class SettlementLineOut(msgspec.Struct, kw_only=True):
    """One order line's rows in the period: each party's share (sales, redemptions, refunds), refunds,
    adjustments; ``line_id`` ``None`` gathers adjustment rows that name no order line."""

    line_id: uuid.UUID | None
    channel_order_id: str
    channel_line_id: str
    sku: str
    quantity: int
    gross_fen: int
    channel_fen: int
    platform_fen: int
    referrer_fen: int
    kol_fen: int
    tenant_fen: int
    refunds_fen: int
    adjustments_fen: int
    net_due_fen: int
    period: str


class SettlementLinePage(msgspec.Struct):
    items: list[SettlementLineOut]
    next_cursor: uuid.UUID | None = None


class ConfirmIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Confirm a settlement; ``force`` (with a ``reason``) confirms a period that is not reconciled."""

    force: bool = False
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class PayIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Record the channel's payment of a confirmed settlement."""

    payment_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    paid_at: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None


class AccountBalance(msgspec.Struct, kw_only=True):
    """What one channel account owes the tenant, by settlement status (net due, fen).

    ``open_fen``: live net due of the periods not yet confirmed (``open`` or ``reconciled``);
    ``confirmed_fen``: frozen net due of confirmed settlements not yet paid; ``paid_fen``: of paid ones.
    """

    account_id: uuid.UUID
    account_name: str
    connector_id: str
    open_fen: int = 0
    open_periods: int = 0
    confirmed_fen: int = 0
    confirmed_periods: int = 0
    paid_fen: int = 0
    paid_periods: int = 0
