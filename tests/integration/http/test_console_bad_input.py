"""Bad input on the consoles and H5 pages gets a readable HTML page, never problem+json or a 500.

Errors raised before a page router runs (no route matched, a refusal of the request guard) used to
come out as the API's problem+json on page paths: a raw JSON blob in the browser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar

from tests.integration.console.conftest import Browser, make_user, text_of

__all__ = ["make_user"]  # the console's user factory, used as a fixture here


@pytest.fixture
async def browser(app: Litestar, client: httpx.AsyncClient) -> AsyncIterator[Browser]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as c:
        yield Browser(c)


def _is_page(r: httpx.Response, status: int, *needles: str) -> str:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("text/html"), r.headers["content-type"]
    assert "Traceback" not in r.text and '"type":"https://kaquan.dev/problems' not in r.text
    text = text_of(r.text)
    for needle in needles:
        assert needle in text, text[:500]
    return text


@pytest.mark.parametrize("path", ["/console/nope", "/platform/nope", "/h5/nope", "/console/products/not-a-uuid"])
async def test_unknown_page_is_a_404_page(browser: Browser, path: str) -> None:
    r = await browser.get(path)
    _is_page(r, 404)


@pytest.mark.parametrize(
    ("url", "status", "needle"),
    [
        ("/console/login?tenant=%00", 400, "NUL"),
        ("/platform/login?email=a%00b", 400, "NUL"),
        ("/h5/me?x=%00", 400, "NUL"),
        ("/console/login?tenant=%ff%fe", 400, "UTF-8"),
    ],
)
async def test_a_request_refused_before_the_page_is_an_html_page(
    browser: Browser, url: str, status: int, needle: str
) -> None:
    r = await browser.get(url)
    _is_page(r, status, needle)


async def test_a_nul_header_on_a_page_is_an_html_page_in_the_asked_language(browser: Browser) -> None:
    r = await browser.get("/console/login", headers={"Accept-Language": "en", "X-Request-ID": "a\x00b"})
    text = _is_page(r, 400, "NUL")
    assert "not allowed" in text


async def test_a_refusal_before_the_page_follows_the_language_switch(browser: Browser) -> None:
    """The console's ``lang`` cookie chooses the language of a page refused before routing too, as it
    does for every page (one locale rule: cookie, then Accept-Language)."""
    browser.http.cookies.set("lang", "en")
    r = await browser.get("/console/login", headers={"Accept-Language": "zh-CN", "X-Request-ID": "a\x00b"})
    text = _is_page(r, 400, "NUL")
    assert "not allowed" in text


async def test_the_api_still_answers_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nope")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = await client.get("/api/v1/products?q=%00")
    assert r.status_code == 400 and r.json()["code"] == "nul_character"


@pytest.mark.parametrize("value", ["not-a-uuid", "99999999999999999999999", "2025-02-30", "a\x01b"])
async def test_a_form_value_a_handler_does_not_catch_is_a_422_page_naming_the_field(
    browser: Browser, make_tenant, make_user, value: str
) -> None:
    tenant = await make_tenant()
    owner = await make_user(tenant, "owner")
    await browser.console_login(tenant.slug, owner.email, owner.password)
    r = await browser.submit("/console/stock", "/console/stock/check-alerts", {"product_id": value})
    _is_page(r, 422, "商品")


@pytest.mark.parametrize(
    ("url", "field"),
    [("/console/products?cursor=zzz", "列表位置"), ("/console/batches?product_id=not-a-uuid", "商品")],
)
async def test_a_refused_query_parameter_is_named_on_the_page(
    browser: Browser, make_tenant, make_user, url: str, field: str
) -> None:
    tenant = await make_tenant()
    owner = await make_user(tenant, "owner")
    await browser.console_login(tenant.slug, owner.email, owner.password)
    _is_page(await browser.get(url), 400, f"“{field}”")
