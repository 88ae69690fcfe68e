"""The shape of connector objects, by kind (typing Protocols; duck typing is enough at run time)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from plugins.channels import (
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    CallResult,
    ChannelEvent,
    ChannelRedemption,
    CheckResult,
    CodeDelivery,
    OAuthClientSpec,
    OrderPage,
    StatementPage,
    StatementRequest,
    StockPush,
    StockPushResult,
)
from plugins.context import ConnectorContext
from plugins.contracts import ConnectorInfo, DeliveryResult, Notification


@runtime_checkable
class Connector(Protocol):
    """Any connector: it describes itself with :class:`ConnectorInfo`."""

    info: ConnectorInfo


@runtime_checkable
class Notifier(Connector, Protocol):
    """A ``notifier`` connector: delivers a rendered :class:`Notification` to one recipient.

    ``send`` must not raise for a bad recipient or a provider refusal: it returns a
    :class:`DeliveryResult` with status ``rejected`` (permanent) or ``failed`` (``retryable`` if worth
    retrying). It may raise only for bugs; the host then retries the job.
    """

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult: ...


@runtime_checkable
class PlatformConfigurable(Protocol):
    """A connector the operator can set up platform-wide (optional, any kind).

    ``platform_config`` receives the operator's connector settings (``KAQUAN_*`` values by setting name,
    e.g. ``smtp_host``; only these, never kaquan's own secrets) and returns the config of the platform's
    account of this connector — a mapping the host decodes into ``info.config`` — or ``None`` when the
    operator has not set it up. Without the method a connector has no platform account and is used with
    its config defaults wherever it is routed explicitly.
    """

    def platform_config(self, settings: Mapping[str, Any]) -> Mapping[str, Any] | None: ...


@runtime_checkable
class Checkable(Protocol):
    """A connector that can test its account's settings (optional for notifiers, required of channels).

    ``check`` must not send anything to a customer; it returns :class:`CheckResult` and never raises for
    a bad setting or an unreachable provider (``ok=False`` with a ``detail`` safe to show).
    """

    async def check(self, ctx: ConnectorContext) -> CheckResult: ...


@runtime_checkable
class SalesChannel(Connector, Protocol):
    """A ``sales_channel`` connector: a marketplace, local-life or social shop kaquan sells codes on.

    kaquan calls only the methods its ``info.capabilities`` name (see :data:`plugins.CHANNEL_CAPABILITIES`);
    ``check`` always. A method must not raise for what the channel answered: a refusal or an outage is a
    result with ``status`` ``rejected`` or ``failed`` (``retryable`` for timeouts, 429 and 5xx). kaquan runs
    every call with a timeout; a call that raises or hangs fails that call for that account only.
    """

    async def check(self, ctx: ConnectorContext) -> CheckResult: ...

    async def push_stock(self, ctx: ConnectorContext, push: StockPush) -> StockPushResult:
        """Set available units and price of each SKU; one result per item (idempotent by item version)."""
        ...

    async def pull_orders(self, ctx: ConnectorContext, cursor: str) -> OrderPage:
        """Events after ``cursor`` (``""`` = from the start the channel keeps), oldest first."""
        ...

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        """Verify the callback's signature and parse it; raise :class:`plugins.BadCallback` if not genuine."""
        ...

    def callback_reply(
        self, ctx: ConnectorContext, event: ChannelEvent | None, outcome: CallbackOutcome
    ) -> CallbackReply:
        """The HTTP answer the channel expects for ``outcome`` (``event`` is ``None`` for a refused callback)."""
        ...

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        """Hand the codes of a paid order line to the channel; once per ``delivery.reference``."""
        ...

    async def report_redemption(self, ctx: ConnectorContext, redemption: ChannelRedemption) -> CallResult:
        """Tell the channel a code it sold was redeemed in a store through kaquan (once per ``reference``)."""
        ...

    async def fetch_statement(self, ctx: ConnectorContext, request: StatementRequest) -> StatementPage:
        """One page of the channel's statement lines for a period."""
        ...


@runtime_checkable
class OAuthAuthorizable(Protocol):
    """A connector whose accounts are authorised by the shop owner with OAuth2 (capability ``oauth``)."""

    def oauth_client(self, config: Any) -> OAuthClientSpec:
        """The endpoints and client credentials for an account with ``config`` (its decoded config Struct)."""
        ...
