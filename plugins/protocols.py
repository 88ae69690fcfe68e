"""The shape of connector objects, by kind (typing Protocols; duck typing is enough at run time)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

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
