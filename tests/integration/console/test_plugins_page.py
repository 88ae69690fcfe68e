"""The operator console lists the plugins the server runs, with their connectors and state, in zh-CN and en."""

from __future__ import annotations

import re

from core.plugin_host import load_plugins


def _rows(html: str) -> dict[tuple[str, str], str]:
    """``(plugin, connector)`` -> state, from the plugins table."""
    found = re.findall(r'<tr data-plugin="([^"]+)"(?: data-connector="([^"]+)")? data-state="([^"]+)"', html)
    return {(p, c): s for p, c, s in found}


async def test_plugins_page_lists_plugins_connectors_and_state(browser, operator, app, monkeypatch):
    r = await browser.get("/platform/plugins")
    assert r.status_code == 303 and r.headers["location"].startswith("/platform/login")
    await browser.operator_login(operator.email, operator.password)
    page = await browser.get("/platform/plugins")
    assert page.status_code == 200
    assert 'href="/platform/plugins" aria-current="page"' in page.text  # linked from the operator nav
    rows = _rows(page.text)
    assert rows[("log_notifier", "log_notifier")] == "enabled"
    assert rows[("acme_notifier", "acme_sms")] == "enabled"
    assert "插件" in page.text and "已启用" in page.text and "通知" in page.text and "日志（开发用）" in page.text

    host = load_plugins({"smtp_notifier", "acme_sms"})
    monkeypatch.setattr(app.state.jobs, "plugins", host)
    await browser.get("/console/lang", params={"to": "en", "next": "/platform/plugins"})
    page = await browser.get("/platform/plugins")
    assert page.status_code == 200
    rows = _rows(page.text)
    assert rows[("smtp_notifier", "")] == "blocklisted"
    assert rows[("acme_notifier", "acme_sms")] == "blocklisted"
    assert rows[("sms_gateway_notifier", "sms_gateway")] == "enabled"
    assert "KAQUAN_DISABLED_PLUGINS=smtp_notifier" in page.text and "KAQUAN_DISABLED_PLUGINS=acme_sms" in page.text
    assert "Plugins" in page.text and "Notifier" in page.text and "Log (development)" in page.text
