"""The shape of connector objects, by kind (typing Protocols; duck typing is enough at run time)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

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
