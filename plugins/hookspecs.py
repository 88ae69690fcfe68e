"""The hooks kaquan calls on plugins (pluggy project ``kaquan``). Each is documented in docs/partners.md.

Hooks are synchronous, as pluggy is; the connector objects they return have ``async`` methods that
the host awaits (for a notifier: ``send``). See :mod:`plugins.protocols` for those methods.
"""

from __future__ import annotations

import pluggy

from plugins.protocols import Connector

hookspec = pluggy.HookspecMarker("kaquan")


@hookspec
def kaquan_connectors() -> list[Connector]:  # type: ignore[empty-body]  # a hookspec; pluggy never runs it
    """Return the connectors this plugin provides.

    Each item is a connector object with an ``info`` attribute (:class:`plugins.ConnectorInfo`: id, kind,
    display name, config Struct with secrets marked, capabilities) and the async methods of its kind
    (a ``notifier`` has ``async send(ctx, message) -> DeliveryResult``). Ids must be unique across all
    installed plugins. Called once when the host loads plugins; return the same objects every time.
    """
