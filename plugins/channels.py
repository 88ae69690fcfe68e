"""Contracts of the ``sales_channel`` connector kind (msgspec Structs): stock, orders, callbacks, delivery,
refunds, redemptions (核销) and statements, as a channel connector exchanges them with kaquan.

Money is integer fen everywhere; times are timezone-aware UTC. A connector never sees a database: it turns
the channel's wire format into these Structs and back. Every Struct and method is documented, with an
example, in ``docs/partners.md``.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec

#: What a sales channel can do (``ConnectorInfo.capabilities``). A connector lists the ones it supports;
#: kaquan calls only the methods its capabilities name.
CHANNEL_CAPABILITIES: tuple[str, ...] = (
    "stock_push",  # push_stock
    "order_pull",  # pull_orders
    "callbacks",  # parse_callback / callback_reply
    "delivery",  # deliver_codes: kaquan hands the codes of a paid order to the channel
    "refunds",  # the channel reports cancellations and refunds (events order.cancelled / order.refunded)
    "third_party_codes",  # 三方码: the channel asks kaquan to issue codes synchronously (event code.issue)
    "redemption_sync",  # report_redemption, and event code.redeemed from the channel
    "statements",  # fetch_statement
    "oauth",  # shop authorisation by OAuth2 authorisation code (see OAuthAuthorizable)
)

#: The methods each capability makes kaquan call, with whether each is ``async``; ``check`` (async) is always
#: called. The plugin host refuses a channel lacking one; the conformance kit checks their kinds too.
CAPABILITY_METHODS: dict[str, tuple[tuple[str, bool], ...]] = {
    "stock_push": (("push_stock", True),),
    "order_pull": (("pull_orders", True),),
    "callbacks": (("parse_callback", True), ("callback_reply", False)),
    "delivery": (("deliver_codes", True),),
    "refunds": (),
    "third_party_codes": (("parse_callback", True), ("callback_reply", False)),
    "redemption_sync": (("report_redemption", True),),
    "statements": (("fetch_statement", True),),
    "oauth": (("oauth_client", False),),
}


def channel_methods(capabilities: frozenset[str] | set[str]) -> dict[str, bool]:
    """The methods a channel with ``capabilities`` must have, by name, with whether each is ``async``."""
    wanted = {"check": True}
    for capability in sorted(capabilities):
        wanted.update(CAPABILITY_METHODS.get(capability, ()))
    return wanted


class CallResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a call to the channel that changes something (delivery, redemption report).

    - ``ok``: done (or already done: the call is idempotent by its ``reference``);
    - ``rejected``: will never succeed (unknown order, order closed): kaquan does not retry, a person looks;
    - ``failed``: did not happen; kaquan retries when ``retryable`` is true (timeouts, 429, 5xx).
    """

    status: Literal["ok", "rejected", "failed"]
    retryable: bool = False
    detail: str = ""
    channel_ref: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``check``: whether the account's settings reach the channel (or provider) and work."""

    ok: bool
    detail: str = ""


# -- stock and price ---------------------------------------------------------------------------------------


class StockItem(msgspec.Struct, frozen=True, kw_only=True):
    """What kaquan offers on the channel for one listing: the channel's SKU, units sellable, price.

    ``version`` grows with every change kaquan makes to the listing; a connector (or the channel) may drop
    an item whose version is not newer than the last one applied, which makes pushes idempotent and
    safe against reordering.
    """

    sku: str
    listing_id: str
    available: int
    price_fen: int
    active: bool = True
    version: int = 0


class StockPush(msgspec.Struct, frozen=True, kw_only=True):
    """A batch of listings to push (at most 500 items); ``reference`` is stable across retries of it."""

    reference: str
    items: list[StockItem]


class StockItemResult(msgspec.Struct, frozen=True, kw_only=True):
    """The channel's answer for one pushed SKU. ``channel_available`` is what the channel now shows
    (kaquan compares it with what it holds and raises a drift alert when they differ)."""

    sku: str
    status: Literal["ok", "rejected", "failed"]
    channel_available: int | None = None
    retryable: bool = False
    detail: str = ""


class StockPushResult(msgspec.Struct, frozen=True, kw_only=True):
    """Per-item results of a :class:`StockPush`, one per item pushed."""

    items: list[StockItemResult]


# -- orders and events -------------------------------------------------------------------------------------


class Buyer(msgspec.Struct, frozen=True, kw_only=True):
    """Who bought, as far as the channel tells: the channel's buyer id, phone and IP when given, and the
    share link (``referrer``) or KOL (``kol``) the sale is attributed to (social channels)."""

    id: str = ""
    phone: str = ""
    ip: str = ""
    referrer: str = ""
    kol: str = ""


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a channel order: the channel's line id, SKU, quantity and unit price paid (fen)."""

    line_id: str
    sku: str
    quantity: int
    unit_price_fen: int


class ChannelOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A paid order on the channel. ``deliver_by`` is the channel's delivery deadline, if it has one."""

    order_id: str
    placed_at: dt.datetime
    lines: list[OrderLine]
    buyer: Buyer = msgspec.field(default_factory=Buyer)
    deliver_by: dt.datetime | None = None


class RefundNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A cancellation or refund of ``quantity`` units of one order line (``refund_id`` unique per refund)."""

    order_id: str
    line_id: str
    refund_id: str
    quantity: int
    amount_fen: int
    reason: str = ""


class IssueRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A local-life channel asks for third-party codes (三方码) for a paid order, to be answered synchronously
    by :meth:`SalesChannel.callback_reply` with the codes."""

    order: ChannelOrder


class ChannelRedemption(msgspec.Struct, frozen=True, kw_only=True):
    """A code redeemed (核销): reported by the channel (event ``code.redeemed``) or by kaquan
    (:meth:`SalesChannel.report_redemption`). ``reference`` is unique per redemption."""

    order_id: str
    code: str
    redeemed_at: dt.datetime
    reference: str
    store: str = ""


class CodeQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The channel asks for the state of the codes kaquan issued for an order (answered synchronously)."""

    order_id: str


ChannelEventType = Literal[
    "order.paid", "order.cancelled", "order.refunded", "code.issue", "code.redeemed", "code.query", "ping"
]


class ChannelEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One thing that happened on the channel, from a callback or from :meth:`SalesChannel.pull_orders`.

    ``message_id`` is unique per event on the channel and the same on every redelivery of it: kaquan stores
    each ``message_id`` once per account and drops repeats. Exactly one payload field is set, by ``type``:
    ``order`` (order.paid), ``refund`` (order.cancelled / order.refunded), ``issue`` (code.issue),
    ``redemption`` (code.redeemed), ``query`` (code.query); ``ping`` carries none.
    """

    message_id: str
    type: ChannelEventType
    occurred_at: dt.datetime
    order: ChannelOrder | None = None
    refund: RefundNotice | None = None
    issue: IssueRequest | None = None
    redemption: ChannelRedemption | None = None
    query: CodeQuery | None = None


class OrderPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of events after a cursor. ``next_cursor`` is where the next call starts (pass it back as
    is); ``has_more`` says whether to call again now. Pages never skip or repeat an event."""

    events: list[ChannelEvent]
    next_cursor: str
    has_more: bool = False


class CallbackRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP request the channel sent to ``POST /channels/{account}/callback``, as received.

    ``headers`` keys are lower-case; ``body`` is the raw bytes (verify the signature over these).
    """

    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    received_at: dt.datetime


class IssuedCode(msgspec.Struct, frozen=True, kw_only=True):
    """A code handed to the channel: number, PIN if any, expiry, and its state (for ``code.query``)."""

    line_id: str
    code: str
    pin: str = ""
    expires_at: dt.datetime | None = None
    state: Literal["issued", "redeemed", "voided"] = "issued"


class CallbackOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What kaquan did with a callback, for :meth:`SalesChannel.callback_reply` to answer the channel.

    - ``accepted``: stored, work queued (or done);
    - ``duplicate``: this ``message_id`` was seen before (answer as the channel expects for success);
    - ``issued``: codes issued for a ``code.issue`` event, in ``codes``;
    - ``codes``: the state of an order's codes for a ``code.query`` event;
    - ``refused``: kaquan will not do it (no stock, paused listing, risk refusal); ``reason`` says why.
    """

    status: Literal["accepted", "duplicate", "issued", "codes", "refused"]
    codes: list[IssuedCode] = msgspec.field(default_factory=list)
    reason: str = ""


class CallbackReply(msgspec.Struct, frozen=True, kw_only=True):
    """The HTTP answer to the channel's callback."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


class BadCallback(Exception):
    """Raised by :meth:`SalesChannel.parse_callback` when a callback is not genuine or not readable
    (bad or missing signature, stale timestamp, malformed body). kaquan answers 401/400 and stores nothing."""

    def __init__(self, reason: str, *, signature: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signature = signature


class CodeDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """The codes of one paid order line, handed to the channel (automatic delivery, 自动发货).

    ``reference`` is stable across every retry of this delivery: the channel must deliver once.
    """

    order_id: str
    line_id: str
    codes: list[IssuedCode]
    reference: str


# -- statements ------------------------------------------------------------------------------------------


class StatementRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Ask for the channel's statement lines of ``[start, end)``, from ``cursor`` (``""`` for the first page)."""

    start: dt.datetime
    end: dt.datetime
    cursor: str = ""


class StatementLine(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the channel's statement (对账单). ``kind``: sale, refund, commission, adjustment."""

    line_id: str
    order_id: str
    order_line_id: str = ""
    kind: Literal["sale", "refund", "commission", "adjustment"]
    amount_fen: int
    commission_fen: int = 0
    occurred_at: dt.datetime
    description: str = ""


class StatementPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of statement lines; call again with ``next_cursor`` while ``has_more``."""

    lines: list[StatementLine]
    next_cursor: str = ""
    has_more: bool = False


# -- OAuth2 shop authorisation ---------------------------------------------------------------------------


class OAuthClientSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Where and as whom kaquan runs the OAuth2 authorisation-code flow for an account (shop authorisation).

    kaquan sends the shop owner to ``authorize_url``, exchanges the code at ``token_url`` with
    ``client_id`` / ``client_secret`` (authlib), stores the tokens encrypted and refreshes them before they
    expire. The connector then finds the access token in ``ctx.access_token``.
    """

    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str
    scope: str = ""
