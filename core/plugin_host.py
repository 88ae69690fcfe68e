"""The plugin host, the core side of the partner SDK in :mod:`plugins` (which imports nothing of core):
loads ``kaquan`` entry points, honours the blocklist, checks hooks, lists connectors.

``KAQUAN_DISABLED_PLUGINS`` (comma separated) blocks entry-point names (never imported) and connector
ids (loaded but not offered). A plugin that fails to import, whose hook raises, or whose connectors are
invalid (bad descriptor, unknown kind, duplicate id), and unknown hooks (an ``@hookimpl`` with no
hookspec) stop the load with a :class:`PluginError` naming the plugin and the switch that disables it.
:func:`inspect_plugins` loads leniently instead and reports every plugin, enabled or not, and why.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol, cast

import msgspec
import pluggy
import structlog

from core.settings import load_settings
from plugins import hookspecs
from plugins.channels import CHANNEL_CAPABILITIES, channel_methods
from plugins.contracts import CONNECTOR_ID, CONNECTOR_KINDS, ConnectorInfo
from plugins.protocols import Connector, Notifier

PROJECT = "kaquan"
DISABLE_SWITCH = "KAQUAN_DISABLED_PLUGINS"
log = structlog.get_logger("kaquan.plugins")

#: Why a plugin or connector is not in use (``PluginStatus.reason`` / ``ConnectorStatus.reason``).
REASON_BLOCKLISTED = "blocklisted"
REASON_FAILED = "failed"


class ConnectorPolicy(Protocol):
    """What the host asks of a plan (``tenants.models.Plan``) when a tenant wants to connect a connector."""

    def allows_connector(self, connector_id: str) -> bool:
        """Whether tenants on this plan may connect ``connector_id``."""
        ...


class PluginError(RuntimeError):
    """A plugin is broken: import error, bad descriptor, unknown kind, duplicate connector id, unknown hook."""


class ConnectorNotFound(LookupError):
    """No enabled connector has this id (not installed, or disabled)."""


class PlatformAccount(msgspec.Struct, frozen=True, kw_only=True):
    """A connector's platform-wide account: the config mapping its ``platform_config`` built from the
    operator's connector settings (decoded into ``connector.config`` when the connector is called)."""

    connector: ConnectorInfo
    config: dict[str, Any]


class PluginInfo(msgspec.Struct, frozen=True):
    """An installed, loaded plugin as operators see it."""

    name: str
    distribution: str | None
    version: str | None
    connectors: list[str]


class ConnectorStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One connector of a plugin: ``enabled``, or why not (``reason`` ``blocklisted``, ``detail``)."""

    id: str
    kind: str
    display_name: str
    display_name_zh: str = ""
    contract_version: str = ""
    enabled: bool = True
    reason: str = ""
    detail: str = ""


class PluginStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One plugin (entry point or registered object), enabled or not, and why.

    ``reason`` is ``""`` (enabled), ``"blocklisted"`` (named in ``KAQUAN_DISABLED_PLUGINS``: never
    imported) or ``"failed"`` (``detail`` says what went wrong).
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    enabled: bool = True
    reason: str = ""
    detail: str = ""
    connectors: list[ConnectorStatus] = msgspec.field(default_factory=list)


def disable_hint(names: Iterable[str]) -> str:
    """The switch that starts kaquan without the named plugins."""
    return f"{DISABLE_SWITCH}={','.join(sorted(set(names)))}"


class PluginHost:
    """A pluggy ``PluginManager`` for project ``kaquan`` plus connector bookkeeping.

    ``strict`` (the default, used at start-up) raises :class:`PluginError` on the first broken plugin;
    otherwise broken plugins are unregistered and reported by :meth:`report`.
    """

    def __init__(self, disabled: Iterable[str] = (), *, strict: bool = True) -> None:
        self.disabled = frozenset(disabled)
        self.strict = strict
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for name in self.disabled:
            self.pm.set_blocked(name)
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        self._failed: dict[str, str] = {}
        self._blocked: dict[str, tuple[str | None, str | None]] = {}
        self._by_plugin: dict[str, list[Connector]] | None = None
        self._connectors: dict[str, Connector] | None = None

    # -- loading -------------------------------------------------------------------------------------

    def _fail(self, name: str, detail: str) -> None:
        message = f"plugin {name!r} {detail}; to start without it, set {disable_hint([name])}"
        if self.strict:
            raise PluginError(message)
        log.warning("plugin_failed", plugin=name, detail=detail)
        self._failed[name] = detail
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self._by_plugin = self._connectors = None

    def load_entrypoints(self) -> int:
        """Import and register every ``kaquan`` entry point not blocked; returns how many were loaded."""
        count = 0
        for dist in list(importlib.metadata.distributions()):
            for ep in dist.entry_points:
                if ep.group != PROJECT or self.pm.has_plugin(ep.name) or ep.name in self._failed:
                    continue
                dist_info = (dist.metadata["Name"], dist.version)
                if ep.name in self.disabled:
                    self._blocked.setdefault(ep.name, dist_info)
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # boundary: importing a plugin; reported with its disable switch
                    self._fail(ep.name, f"({dist_info[0]} {dist_info[1]}) failed to load: {_describe(exc)}")
                    continue
                if self._register(plugin, ep.name):
                    self._dists[ep.name] = dist_info
                    count += 1
        self._by_plugin = self._connectors = None
        return count

    def _register(self, plugin: object, name: str) -> bool:
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self._fail(name, f"is invalid: {exc}")
            return False
        return True

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object or module directly (tests, embedding)."""
        if name is not None and name in self.disabled:
            self._blocked.setdefault(name, (None, None))
            return
        self._register(plugin, name or self.pm.get_canonical_name(plugin))
        self._by_plugin = self._connectors = None

    def check(self) -> None:
        """Fail on hook implementations without a hookspec (a typo or a plugin for another version),
        and on plugins whose connectors are invalid."""
        for name, plugin in list(self.pm.list_name_plugin()):
            if plugin is None:
                continue
            for hook_name in dir(plugin):
                if self.pm.parse_hookimpl_opts(plugin, hook_name):
                    hook = getattr(self.pm.hook, hook_name, None)
                    if hook is None or not hook.has_spec():
                        self._fail(name, f"implements {hook_name!r}, which is not a kaquan hook")
                        break
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc
        self.connectors()

    # -- connectors ----------------------------------------------------------------------------------

    def _provided(self) -> dict[str, list[Connector]]:
        """Every loaded plugin's valid connectors, by plugin name (ids unique across plugins)."""
        if self._by_plugin is None:
            by_plugin: dict[str, list[Connector]] = {}
            owner: dict[str, str] = {}
            for impl in self.pm.hook.kaquan_connectors.get_hookimpls():  # in registration order
                name = impl.plugin_name
                try:
                    # pluggy types a hook's result object; the hookspec promises connectors, _validate checks
                    provided = list(cast("Iterable[Connector] | None", impl.function()) or [])
                    infos = [_validate(c) for c in provided]
                except PluginError as exc:
                    self._fail(name, f"provides an invalid connector: {exc}")
                    continue
                except Exception as exc:  # boundary: plugin hook call; reported with its disable switch
                    self._fail(name, f"failed in kaquan_connectors(): {_describe(exc)}")
                    continue
                clash = next((i.id for i in infos if i.id in owner), None)
                if clash is not None:
                    self._fail(name, f"provides the connector id {clash!r}, which {owner[clash]!r} provides too "
                               "(two plugins provide the same id)")
                    continue
                owner.update((i.id, name) for i in infos)
                by_plugin[name] = provided
            self._by_plugin = by_plugin
        return self._by_plugin

    def connectors(self) -> dict[str, Connector]:
        """Every enabled connector by id (validated once; cached until plugins change)."""
        if self._connectors is None:
            found: dict[str, Connector] = {}
            for connectors in self._provided().values():
                for connector in connectors:
                    if connector.info.id in self.disabled:
                        log.info("connector_disabled", connector=connector.info.id)
                        continue
                    found[connector.info.id] = connector
            self._connectors = dict(sorted(found.items()))
        return self._connectors

    def known_connector_ids(self) -> frozenset[str]:
        """Ids of every connector a loaded plugin provides, enabled or blocklisted by id."""
        return frozenset(c.info.id for cs in self._provided().values() for c in cs)

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

    def connector_config(self, connector_id: str, values: Mapping[str, Any]) -> msgspec.Struct:
        """The enabled connector's config Struct from an account's config mapping (its defaults fill the
        rest; a value given as text, as the environment gives it, is read as the field's type)."""
        info = self.connector(connector_id).info
        return msgspec.convert(dict(values), info.config, strict=False)

    def platform_accounts(self, settings: Mapping[str, Any]) -> dict[str, PlatformAccount]:
        """The platform-wide accounts, by connector id (sorted): each loaded connector with a
        ``platform_config`` that finds its settings in ``settings`` (the operator's connector settings).

        Connectors blocklisted by id are included, so that a route to one fails as "not enabled" rather than
        going elsewhere unnoticed. A ``platform_config`` that raises, or returns a config its Struct refuses,
        is a :class:`PluginError` naming the plugin and the switch that disables it.
        """
        accounts: dict[str, PlatformAccount] = {}
        for plugin_name, connectors in self._provided().items():
            for connector in connectors:
                info = connector.info
                build = getattr(connector, "platform_config", None)
                if not callable(build):
                    continue
                try:
                    config = build(settings)
                    if config is not None:
                        msgspec.convert(dict(config), info.config, strict=False)
                except Exception as exc:  # boundary: a plugin call; its failure names the plugin and the switch
                    raise PluginError(
                        f"plugin {plugin_name!r}: connector {info.id!r} cannot read its platform settings "
                        f"({_describe(exc)}); fix them, or set {disable_hint([plugin_name])}"
                    ) from exc
                if config is not None:
                    accounts[info.id] = PlatformAccount(connector=info, config=dict(config))
        return dict(sorted(accounts.items()))

    def allowed(self, plan: ConnectorPolicy, connector_id: str) -> bool:
        """Whether tenants on ``plan`` may connect ``connector_id`` (it must also be installed and enabled)."""
        return connector_id in self.connectors() and plan.allows_connector(connector_id)

    def allowed_for_plan(self, plan: ConnectorPolicy, kind: str | None = None) -> list[ConnectorInfo]:
        """The connectors (optionally of one kind) a tenant on ``plan`` may connect."""
        return [i for i in self.infos(kind) if plan.allows_connector(i.id)]

    # -- reporting -----------------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """The loaded plugins with their distribution and connector ids."""
        provided = self._provided()
        out = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda x: x[0]):
            if plugin is None:
                continue
            dist, version = self._dists.get(name, (None, None))
            ids = [c.info.id for c in provided.get(name, [])]
            out.append(PluginInfo(name=name, distribution=dist, version=version, connectors=ids))
        return out

    def report(self) -> list[PluginStatus]:
        """Every plugin — loaded, blocklisted or failed — with its connectors and why any is not in use."""
        provided = self._provided()
        rows = [
            PluginStatus(
                name=p.name,
                distribution=p.distribution,
                version=p.version,
                connectors=[_connector_status(c, self.disabled) for c in provided.get(p.name, [])],
            )
            for p in self.plugins()
        ]
        for name, (dist, version) in self._blocked.items():
            rows.append(PluginStatus(name=name, distribution=dist, version=version, enabled=False,
                                     reason=REASON_BLOCKLISTED, detail=disable_hint([name])))
        for name, detail in self._failed.items():
            dist, version = self._dists.get(name, (None, None))
            rows.append(PluginStatus(name=name, distribution=dist, version=version, enabled=False,
                                     reason=REASON_FAILED, detail=detail))
        return sorted(rows, key=lambda r: r.name)


def _connector_status(connector: Connector, disabled: Collection[str]) -> ConnectorStatus:
    info = connector.info
    blocked = info.id in disabled
    return ConnectorStatus(
        id=info.id,
        kind=info.kind,
        display_name=info.display_name,
        display_name_zh=info.display_name_zh,
        contract_version=info.version,
        enabled=not blocked,
        reason=REASON_BLOCKLISTED if blocked else "",
        detail=disable_hint([info.id]) if blocked else "",
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _validate(connector: Any) -> ConnectorInfo:
    info = getattr(connector, "info", None)
    if not isinstance(info, ConnectorInfo):
        raise PluginError(f"{connector!r} has no plugins.ConnectorInfo `info`")
    if not CONNECTOR_ID.match(info.id):
        raise PluginError(f"connector id {info.id!r} must match {CONNECTOR_ID.pattern}")
    if info.kind not in CONNECTOR_KINDS:
        raise PluginError(
            f"connector {info.id!r} has the unknown kind {info.kind!r} (known: {', '.join(CONNECTOR_KINDS)})"
        )
    if not (isinstance(info.config, type) and issubclass(info.config, msgspec.Struct)):
        raise PluginError(f"connector {info.id!r}: config must be a msgspec Struct type")
    if info.kind == "notifier" and not callable(getattr(connector, "send", None)):
        raise PluginError(f"notifier {info.id!r} has no send(ctx, message)")
    if info.kind == "sales_channel":
        unknown = sorted(set(info.capabilities) - set(CHANNEL_CAPABILITIES))
        if unknown:
            raise PluginError(f"sales channel {info.id!r} declares unknown capabilities {', '.join(unknown)}")
        missing = sorted(m for m in channel_methods(info.capabilities) if not callable(getattr(connector, m, None)))
        if missing:
            raise PluginError(f"sales channel {info.id!r} lacks {', '.join(missing)}, which its capabilities need")
    return info


def load_plugins(
    disabled: Iterable[str] = (), *, extra: Iterable[tuple[str, object]] = (), strict: bool = True
) -> PluginHost:
    """The host with every installed, non-blocked plugin loaded and checked.

    ``disabled`` is ``settings.disabled_plugin_names``; ``extra`` are ``(name, plugin)`` pairs registered
    besides the entry points (tests). With ``strict`` (start-up), raises :class:`PluginError` naming the
    broken plugin and the ``KAQUAN_DISABLED_PLUGINS`` value that disables it.
    """
    host = PluginHost(disabled, strict=strict)
    host.load_entrypoints()
    for name, plugin in extra:
        host.register(plugin, name=name)
    host.check()
    log.debug("plugins_loaded", plugins=[p.name for p in host.plugins()], connectors=list(host.connectors()))
    return host


def inspect_plugins(disabled: Iterable[str] = (), *, extra: Iterable[tuple[str, object]] = ()) -> list[PluginStatus]:
    """Every installed plugin and its connectors, enabled or not and why; never raises for a broken plugin."""
    return load_plugins(disabled, extra=extra, strict=False).report()


@functools.cache
def _installed_connector_ids(disabled: frozenset[str]) -> frozenset[str]:
    return load_plugins(disabled, strict=False).known_connector_ids()


def installed_connector_ids(disabled: Iterable[str] | None = None) -> frozenset[str]:
    """Ids of the connectors the installed plugins provide (``disabled``: default, the settings' list)."""
    if disabled is None:
        disabled = load_settings().disabled_plugin_names
    return _installed_connector_ids(frozenset(disabled))
