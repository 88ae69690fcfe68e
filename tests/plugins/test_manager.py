"""The plugin host: entry points, blocklist, unknown hooks, duplicate ids, per-plan allowance."""

from __future__ import annotations

import sys

import msgspec
import pytest

from core.plugin_host import ConnectorNotFound, PluginError, load_plugins
from core.settings import load_settings
from plugins import ConnectorInfo, DeliveryResult, hookimpl
from plugins.builtin.log_notifier import LogNotifierConfig
from tenants.models import Plan


def test_entry_points_load_builtin_and_partner_connectors():
    host = load_plugins()
    assert {"log_notifier", "smtp_email", "acme_sms"} <= set(host.connectors())
    names = {p.name: p for p in host.plugins()}
    assert names["log_notifier"].distribution == "kaquan"
    assert names["acme_notifier"].distribution == "kaquan-acme-notifier"
    assert names["acme_notifier"].connectors == ["acme_sms"]
    assert [n.info.id for n in host.notifiers_for("sms")] == ["acme_sms", "log_notifier", "sms_gateway"]


def test_blocklist_from_settings_keeps_blocked_plugins_unloaded():
    settings = load_settings(env={"KAQUAN_DISABLED_PLUGINS": " smtp_notifier , acme_sms "})
    assert settings.disabled_plugin_names == {"smtp_notifier", "acme_sms"}
    host = load_plugins(settings.disabled_plugin_names)
    assert "smtp_notifier" not in {p.name for p in host.plugins()}  # entry point never registered
    assert host.pm.is_blocked("smtp_notifier")
    assert "smtp_email" not in host.connectors() and "acme_sms" not in host.connectors()
    assert "log_notifier" in host.connectors()
    with pytest.raises(ConnectorNotFound):
        host.notifier("acme_sms")


class _UnknownHookPlugin:
    @hookimpl
    def kaquan_conectors(self) -> list[object]:  # misspelt hook: no such hookspec
        return []


class _BadArgumentPlugin:
    @hookimpl
    def kaquan_connectors(self, tenant_id: str) -> list[object]:  # the spec takes no arguments
        return []


def test_unknown_hook_fails_loudly():
    with pytest.raises(PluginError, match="kaquan_conectors"):
        load_plugins(extra=[("typo", _UnknownHookPlugin())])


def test_hook_with_unknown_argument_fails_loudly():
    with pytest.raises(PluginError, match="tenant_id"):
        load_plugins(extra=[("bad_args", _BadArgumentPlugin())])


class _Clone:
    info = ConnectorInfo(id="log_notifier", kind="notifier", display_name="Clone", config=LogNotifierConfig)

    async def send(self, ctx: object, message: object) -> DeliveryResult:
        return DeliveryResult(status="sent")


class _ClonePlugin:
    @hookimpl
    def kaquan_connectors(self) -> list[object]:
        return [_Clone()]


class _NoInfoPlugin:
    @hookimpl
    def kaquan_connectors(self) -> list[object]:
        return [object()]


def test_duplicate_connector_id_and_bad_descriptor_are_refused():
    with pytest.raises(PluginError, match="two plugins provide"):
        load_plugins(extra=[("clone", _ClonePlugin())])
    with pytest.raises(PluginError, match="ConnectorInfo"):
        load_plugins(extra=[("no_info", _NoInfoPlugin())])


def test_blocked_name_is_not_registered_directly_either():
    host = load_plugins({"clone"}, extra=[("clone", _ClonePlugin())])
    assert host.connector("log_notifier").info.display_name == "Log (development)"


def test_per_plan_allowance():
    host = load_plugins()
    none = Plan(code="free", name="Free", allowed_connectors=[])
    some = Plan(code="sms", name="SMS", allowed_connectors=["acme_sms", "not_installed"])
    every = Plan(code="all", name="All", allowed_connectors=["*"])
    assert host.allowed_for_plan(none) == []
    assert [i.id for i in host.allowed_for_plan(some)] == ["acme_sms"]
    assert host.allowed(some, "acme_sms") and not host.allowed(some, "smtp_email")
    assert not host.allowed(some, "not_installed")  # allowed by plan, but not installed
    assert {i.id for i in host.allowed_for_plan(every, "notifier")} >= {"acme_sms", "log_notifier"}


def test_connector_config_schema_marks_secrets():
    host = load_plugins()
    info = host.connector("acme_sms").info
    schema = msgspec.json.schema(info.config)["$defs"][info.config.__name__]["properties"]
    assert schema["api_key"]["writeOnly"] is True and schema["api_key"]["x-kaquan-secret"] is True
    assert "writeOnly" not in schema["endpoint"]


def test_blocked_plugin_module_is_not_imported_by_the_host():
    saved = sys.modules.pop("plugins.builtin.smtp_notifier", None)
    try:
        load_plugins({"smtp_notifier"})
        assert "plugins.builtin.smtp_notifier" not in sys.modules
    finally:
        if saved is not None:
            sys.modules["plugins.builtin.smtp_notifier"] = saved
