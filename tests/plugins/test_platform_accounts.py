"""Connector configuration lives with the connectors: each built-in turns the operator's connector settings
into its platform account (``platform_config``); core routes a channel to an account by connector id and
passes its config, naming no connector itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core.jobs.context import JobEnv
from core.notifications.delivery import account_config, route
from core.plugin_host import ConnectorNotFound, PluginError, load_plugins
from core.settings import CONNECTOR_SETTINGS, load_settings
from plugins import ConnectorInfo, DeliveryResult, hookimpl
from plugins.builtin.log_notifier import LogNotifierConfig
from plugins.builtin.sms_gateway_notifier import SmsGatewayConfig
from plugins.builtin.smtp_notifier import SmtpConfig

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("email", "sms", "webhook", "wechat", "log")


def _env(**env: str) -> JobEnv:
    settings = load_settings(env=env)
    return JobEnv(settings, None, load_plugins(settings.disabled_plugin_names))  # type: ignore[arg-type]


def test_without_connector_settings_every_channel_goes_to_the_log_notifier() -> None:
    env = _env()
    assert {c: route(env, c) for c in CHANNELS} == dict.fromkeys(CHANNELS, "log_notifier")
    assert env.connector_accounts == {}
    assert env.plugins.connector_config("log_notifier", account_config(env, "log_notifier")) == (
        LogNotifierConfig(include_body=True)  # written only in embedded mode: send checks ctx.embedded
    )


def test_smtp_and_the_sms_gateway_are_set_up_by_their_own_settings() -> None:
    env = _env(
        KAQUAN_SMTP_HOST="mail.example.com",
        KAQUAN_SMTP_PORT="2525",
        KAQUAN_SMTP_SENDER="gifts@example.com",
        KAQUAN_SMS_GATEWAY_URL="https://sms.example.com/send",
        KAQUAN_SMS_GATEWAY_KEY="gw-key",
    )
    assert (route(env, "email"), route(env, "sms"), route(env, "webhook")) == (
        "smtp_email",
        "sms_gateway",
        "log_notifier",
    )
    smtp = env.plugins.connector_config("smtp_email", account_config(env, "smtp_email"))
    assert smtp == SmtpConfig(host="mail.example.com", port=2525, sender="gifts@example.com")
    gateway = env.plugins.connector_config("sms_gateway", account_config(env, "sms_gateway"))
    assert gateway == SmsGatewayConfig(url="https://sms.example.com/send", api_key="gw-key")
    # a connector without a platform account is used with its defaults when a route names it
    assert account_config(env, "acme_sms") == {}


def test_the_fallback_notifier_is_a_setting() -> None:
    env = _env(KAQUAN_FALLBACK_NOTIFIER="acme_sms")
    assert route(env, "sms") == "acme_sms" and route(env, "email") == "acme_sms"


def test_a_blocklisted_connector_with_settings_fails_instead_of_falling_back() -> None:
    env = _env(KAQUAN_SMTP_HOST="mail.example.com", KAQUAN_DISABLED_PLUGINS="smtp_email")
    assert route(env, "email") == "smtp_email"
    with pytest.raises(ConnectorNotFound):
        env.plugins.notifier("smtp_email")


def test_connectors_see_only_the_connector_settings() -> None:
    seen: list[dict[str, Any]] = []

    class Spy:
        info = ConnectorInfo(id="spy_notifier", kind="notifier", display_name="Spy", config=LogNotifierConfig,
                             capabilities=frozenset({"email"}))

        def platform_config(self, settings: Any) -> None:
            seen.append(dict(settings))

        async def send(self, ctx: object, message: object) -> DeliveryResult:
            return DeliveryResult(status="sent")

    class SpyPlugin:
        @hookimpl
        def kaquan_connectors(self) -> list[object]:
            return [Spy()]

    settings = load_settings(env={"KAQUAN_MASTER_KEY": "k" * 44, "KAQUAN_SMTP_HOST": "mail.example.com"})
    host = load_plugins(extra=[("spy", SpyPlugin())])
    host.platform_accounts(settings.connector_settings)
    assert seen == [{name: getattr(settings, name) for name in CONNECTOR_SETTINGS}]
    assert "master_key" not in seen[0] and "database_url" not in seen[0]


@pytest.mark.parametrize("answer", ["raise", "bad_config"])
def test_a_connector_that_cannot_read_its_settings_names_its_plugin(answer: str) -> None:
    class Broken:
        info = ConnectorInfo(id="broken_notifier", kind="notifier", display_name="Broken",
                             config=SmtpConfig, capabilities=frozenset({"email"}))

        def platform_config(self, settings: Any) -> dict[str, Any]:
            if answer == "raise":
                raise KeyError("smtp_hostname")
            return {"port": "not a port"}

        async def send(self, ctx: object, message: object) -> DeliveryResult:
            return DeliveryResult(status="sent")

    class BrokenPlugin:
        @hookimpl
        def kaquan_connectors(self) -> list[object]:
            return [Broken()]

    host = load_plugins(extra=[("broken_plugin", BrokenPlugin())])
    with pytest.raises(PluginError, match=r"'broken_plugin'.*KAQUAN_DISABLED_PLUGINS=broken_plugin"):
        JobEnv(load_settings(env={}), None, host)  # type: ignore[arg-type]


def test_core_names_no_connector() -> None:
    """Only the settings name connectors (their KAQUAN_* variables and the fallback's default)."""
    ids = {i.id for i in load_plugins().infos()}
    pattern = re.compile("[\"']({})[\"']".format("|".join(map(re.escape, sorted(ids)))))
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for base in ("core", "tenants")
        for path in sorted((ROOT / base).rglob("*.py"))
        if path != ROOT / "core" / "settings.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_settings_values_as_text_are_read_as_the_field_type() -> None:
    host = load_plugins()
    config = host.connector_config("smtp_email", {"host": "h", "port": "587", "ssl": "true"})
    assert config == SmtpConfig(host="h", port=587, ssl=True)
