"""The kaquan partner SDK: import only from here to write a connector.

Example::

    from plugins import ConnectorInfo, DeliveryResult, Notification, Secret, hookimpl

    @hookimpl
    def kaquan_connectors():
        return [MyNotifier()]
"""

from __future__ import annotations

import pluggy

from plugins.channels import (
    CHANNEL_CAPABILITIES,
    BadCallback,
    Buyer,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    CallResult,
    ChannelEvent,
    ChannelOrder,
    ChannelRedemption,
    CheckResult,
    CodeDelivery,
    CodeQuery,
    IssuedCode,
    IssueRequest,
    OAuthClientSpec,
    OrderLine,
    OrderPage,
    RefundNotice,
    StatementLine,
    StatementPage,
    StatementRequest,
    StockItem,
    StockItemResult,
    StockPush,
    StockPushResult,
)
from plugins.context import ConnectorContext
from plugins.contracts import (
    CONNECTOR_KINDS,
    NOTIFICATION_CHANNELS,
    ConnectorInfo,
    ConnectorKind,
    DeliveryResult,
    DeliveryStatus,
    Notification,
    Secret,
    config_schema,
    mask_recipient,
    redact_config,
    secret_fields,
)
from plugins.hookspecs import hookspec
from plugins.protocols import (
    Checkable,
    Connector,
    Notifier,
    OAuthAuthorizable,
    PlatformConfigurable,
    SalesChannel,
)

PROJECT = "kaquan"
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "CHANNEL_CAPABILITIES",
    "CONNECTOR_KINDS",
    "NOTIFICATION_CHANNELS",
    "PROJECT",
    "BadCallback",
    "Buyer",
    "CallResult",
    "CallbackOutcome",
    "CallbackReply",
    "CallbackRequest",
    "ChannelEvent",
    "ChannelOrder",
    "ChannelRedemption",
    "CheckResult",
    "Checkable",
    "CodeDelivery",
    "CodeQuery",
    "Connector",
    "ConnectorContext",
    "ConnectorInfo",
    "ConnectorKind",
    "DeliveryResult",
    "DeliveryStatus",
    "IssueRequest",
    "IssuedCode",
    "Notification",
    "Notifier",
    "OAuthAuthorizable",
    "OAuthClientSpec",
    "OrderLine",
    "OrderPage",
    "PlatformConfigurable",
    "RefundNotice",
    "SalesChannel",
    "Secret",
    "StatementLine",
    "StatementPage",
    "StatementRequest",
    "StockItem",
    "StockItemResult",
    "StockPush",
    "StockPushResult",
    "config_schema",
    "hookimpl",
    "hookspec",
    "mask_recipient",
    "redact_config",
    "secret_fields",
]
