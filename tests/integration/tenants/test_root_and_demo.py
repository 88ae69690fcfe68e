"""``/`` sends people to the console; ``KAQUAN_PORT=8123 kaquan demo`` prints :8123 URLs."""

from __future__ import annotations

import asyncio
from typing import Any

from click.testing import CliRunner


async def test_root_redirects_to_the_console_login(client: Any) -> None:
    r = await client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    page = await client.get("/", follow_redirects=True)
    assert page.status_code == 200 and 'name="password"' in page.text


async def test_root_redirects_a_logged_in_user_to_the_dashboard(app: Any, make_tenant: Any) -> None:
    import httpx

    from tests.integration.console.conftest import Browser

    tenant = await make_tenant()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as c:
        browser = Browser(c)
        r = await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
        assert r.status_code == 303, r.text
        r = await c.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/console"
        dashboard = await c.get("/", follow_redirects=True)
        assert dashboard.status_code == 200 and "/console/login" not in str(dashboard.url)


async def test_demo_prints_urls_on_the_configured_port(settings: Any) -> None:
    from core.cli import main

    env = {
        "KAQUAN_DATABASE_URL": settings.database_url,
        "KAQUAN_DATA_DIR": settings.data_dir,
        "KAQUAN_MASTER_KEY": settings.master_key,
        "KAQUAN_REDIS_URL": "",
        "KAQUAN_LOG_LEVEL": "WARNING",
        "KAQUAN_BASE_URL": None,
        "KAQUAN_HOST": None,
        "KAQUAN_PORT": "8123",
    }
    result = await asyncio.to_thread(CliRunner().invoke, main, ["demo"], env=env)
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/console/login" in result.output
    assert "http://127.0.0.1:8123/platform/login" in result.output
    assert ":8000" not in result.output
