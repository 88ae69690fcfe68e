"""The kaquan partner SDK: import only from here to write a connector.

Example::

    from plugins import ConnectorInfo, DeliveryResult, Notification, Secret, hookimpl

    @hookimpl
    def kaquan_connectors():
        return [MyNotifier()]
"""

from __future__ import annotations

import pluggy

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
from plugins.protocols import Connector, Notifier, PlatformConfigurable

PROJECT = "kaquan"
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "CONNECTOR_KINDS",
    "NOTIFICATION_CHANNELS",
    "PROJECT",
    "Connector",
    "ConnectorContext",
    "ConnectorInfo",
    "ConnectorKind",
    "DeliveryResult",
    "DeliveryStatus",
    "Notification",
    "Notifier",
    "PlatformConfigurable",
    "Secret",
    "config_schema",
    "hookimpl",
    "hookspec",
    "mask_recipient",
    "redact_config",
    "secret_fields",
]
