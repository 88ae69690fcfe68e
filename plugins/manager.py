"""The plugin host: loads ``kaquan`` entry points, honours the blocklist, checks hooks, lists connectors.

``KAQUAN_DISABLED_PLUGINS`` (comma separated) blocks entry-point names (never imported) and connector
ids (loaded but not offered). Unknown hooks (an ``@hookimpl`` with no hookspec) fail loudly at load.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import pluggy
import structlog

from plugins import hookspecs
from plugins.contracts import CONNECTOR_ID, ConnectorInfo
from plugins.protocols import Connector, Notifier
from tenants.models import Plan
from tenants.onboarding import connector_allowed

PROJECT = "kaquan"
log = structlog.get_logger("kaquan.plugins")


class PluginError(RuntimeError):
    """A plugin is broken: bad descriptor, duplicate connector id, unknown hook."""


class ConnectorNotFound(LookupError):
    """No enabled connector has this id (not installed, or disabled)."""


class PluginInfo(msgspec.Struct, frozen=True):
    """An installed plugin as operators see it."""

    name: str
    distribution: str | None
    version: str | None
    connectors: list[str]


class PluginHost:
    """A pluggy ``PluginManager`` for project ``kaquan`` plus connector bookkeeping."""

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self.disabled = frozenset(disabled)
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for name in self.disabled:
            self.pm.set_blocked(name)
        self._connectors: dict[str, Connector] | None = None

    def load_entrypoints(self) -> int:
        """Import and register every ``kaquan`` entry point not blocked; returns how many were loaded."""
        try:
            count = self.pm.load_setuptools_entrypoints(PROJECT)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r} is invalid: {exc}") from exc
        self._connectors = None
        return count

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module directly (tests, embedding)."""
        if name is not None and name in self.disabled:
            return
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name or plugin!r} is invalid: {exc}") from exc
        self._connectors = None

    def check(self) -> None:
        """Fail on hook implementations without a hookspec (a typo or a plugin for another version)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc
        self.connectors()

    def plugins(self) -> list[PluginInfo]:
        dists = {id(p): d for p, d in self.pm.list_plugin_distinfo()}
        out = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda x: x[0]):
            if plugin is None:
                continue
            dist = dists.get(id(plugin))
            provided = getattr(plugin, "kaquan_connectors", None)
            ids = [c.info.id for c in provided()] if callable(provided) else []
            out.append(
                PluginInfo(
                    name=name,
                    distribution=dist.project_name if dist else None,
                    version=dist.version if dist else None,
                    connectors=ids,
                )
            )
        return out

    def connectors(self) -> dict[str, Connector]:
        """Every enabled connector by id (validated once; cached until plugins change)."""
        if self._connectors is None:
            found: dict[str, Connector] = {}
            for group in self.pm.hook.kaquan_connectors():
                for connector in group or []:
                    info = _validate(connector)
                    if info.id in found:
                        raise PluginError(f"two plugins provide the connector id {info.id!r}")
                    if info.id in self.disabled:
                        log.info("connector_disabled", connector=info.id)
                        continue
                    found[info.id] = connector
            self._connectors = dict(sorted(found.items()))
        return self._connectors

    def connector(self, connector_id: str) -> Connector:
        try:
            return self.connectors()[connector_id]
        except KeyError:
            raise ConnectorNotFound(f"no enabled connector {connector_id!r}") from None

    def infos(self, kind: str | None = None) -> list[ConnectorInfo]:
        return [c.info for c in self.connectors().values() if kind is None or c.info.kind == kind]

    def notifier(self, connector_id: str) -> Notifier:
        connector = self.connector(connector_id)
        if connector.info.kind != "notifier" or not isinstance(connector, Notifier):
            raise ConnectorNotFound(f"connector {connector_id!r} is not a notifier")
        return connector

    def notifiers_for(self, channel: str) -> list[Notifier]:
        """Enabled notifiers that deliver ``channel``."""
        return [
            c
            for c in self.connectors().values()
            if c.info.kind == "notifier" and channel in c.info.capabilities and isinstance(c, Notifier)
        ]

    def allowed(self, plan: Plan, connector_id: str) -> bool:
        """Whether tenants on ``plan`` may connect ``connector_id`` (it must also be installed and enabled)."""
        return connector_id in self.connectors() and connector_allowed(plan, connector_id)

    def allowed_for_plan(self, plan: Plan, kind: str | None = None) -> list[ConnectorInfo]:
        """The connectors (optionally of one kind) a tenant on ``plan`` may connect."""
        return [i for i in self.infos(kind) if connector_allowed(plan, i.id)]


def _validate(connector: Any) -> ConnectorInfo:
    info = getattr(connector, "info", None)
    if not isinstance(info, ConnectorInfo):
        raise PluginError(f"{connector!r} has no plugins.ConnectorInfo `info`")
    if not CONNECTOR_ID.match(info.id):
        raise PluginError(f"connector id {info.id!r} must match {CONNECTOR_ID.pattern}")
    if not (isinstance(info.config, type) and issubclass(info.config, msgspec.Struct)):
        raise PluginError(f"connector {info.id!r}: config must be a msgspec Struct type")
    if info.kind == "notifier" and not callable(getattr(connector, "send", None)):
        raise PluginError(f"notifier {info.id!r} has no send(ctx, message)")
    return info


def load_plugins(disabled: Iterable[str] = (), *, extra: Iterable[tuple[str, object]] = ()) -> PluginHost:
    """The host with every installed, non-blocked plugin loaded and checked.

    ``disabled`` is ``settings.disabled_plugin_names``; ``extra`` are ``(name, plugin)`` pairs registered
    besides the entry points (tests). Raises :class:`PluginError` on unknown hooks or bad connectors.
    """
    host = PluginHost(disabled)
    host.load_entrypoints()
    for name, plugin in extra:
        host.register(plugin, name=name)
    host.check()
    log.debug("plugins_loaded", plugins=[p.name for p in host.plugins()], connectors=list(host.connectors()))
    return host
