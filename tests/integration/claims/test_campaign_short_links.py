"""Campaign short links (``/c/<code>``) and posters: each campaign gets a platform-unique 4–8 character
Crockford code; the short link redirects (302) to the campaign's H5 page, an unknown code is a Chinese H5 404
page; the poster (SVG) carries the campaign, its product and the QR code of the short link."""

from __future__ import annotations

import re
from typing import Any

import segno

from core.campaigns import shortlinks
from core.campaigns.models import ShortCode
from core.campaigns.poster import poster_svg, wrap
from tests.integration.claims.helpers import Shop

_CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4,8}")


async def _campaign(shop: Shop, name: str = "新人礼") -> dict[str, Any]:
    stocked = await shop.stock(1)
    r = await shop.post("/api/v1/campaigns", {"name": name, "product_id": str(stocked.product_id)})
    assert r.status_code == 201, r.text
    return r.json()


async def test_short_link_redirects_to_the_campaign_page(shop: Shop, other_shop: Shop, phones: Any) -> None:
    mine, theirs = await _campaign(shop), await _campaign(other_shop)
    code = mine["short_code"]
    assert _CODE.fullmatch(code) and mine["short_url"].endswith(f"/c/{code}")
    assert code != theirs["short_code"]
    visitor = phones()
    r = await visitor.get(f"/c/{code}")
    assert r.status_code == 302 and r.headers["location"] == mine["path"]
    # typed in lower case, or with O for 0 and I/L for 1: still found (Crockford decoding)
    typed = code.lower().replace("0", "o").replace("1", "l")
    assert (await visitor.get(f"/c/{typed}")).headers.get("location") == mine["path"]
    page = await visitor.get(r.headers["location"])
    assert page.status_code == 200 and "新人礼" in page.text
    assert (await visitor.get(f"/c/{theirs['short_code']}")).headers["location"] == theirs["path"]


async def test_unknown_short_code_is_a_friendly_404_page(phones: Any) -> None:
    visitor = phones()
    for bad in ("ZZZZZZZZ", "ab", "not-a-code!", "UUUUUU"):
        r = await visitor.get(f"/c/{bad}")
        assert r.status_code == 404, bad
        assert r.headers["content-type"].startswith("text/html") and "活动不存在" in r.text, r.text
        assert "problem" not in r.headers["content-type"]


async def test_a_taken_code_is_never_handed_out_again(shop: Shop, monkeypatch: Any) -> None:
    first = await _campaign(shop)
    tries = iter([first["short_code"], first["short_code"], "7K2M9Q"])
    monkeypatch.setattr(shortlinks, "_random", lambda length: next(tries))
    second = await _campaign(shop, "第二个")
    assert second["short_code"] == "7K2M9Q"
    async with shop.kernel.db.transaction() as db:  # a platform table: no tenant needed
        assert await db.get(ShortCode, "7K2M9Q") is not None


async def test_poster_download_from_console_and_api(shop: Shop) -> None:
    campaign = await _campaign(
        shop, "双十一 超长的活动名称用来测试海报上的换行是否正常工作 以及省略号的出现位置"
    )
    r = await shop.get(f"/api/v1/campaigns/{campaign['id']}/poster")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert 'attachment; filename="poster-' in r.headers["content-disposition"]
    assert r.text.startswith("<?xml") and "扫码领取" in r.text and campaign["short_url"] in r.text
    assert "双十一" in r.text and r.text.count("<svg") == 2  # the poster and its QR code
    assert (
        await shop.get("/api/v1/campaigns/00000000-0000-7000-8000-000000000000/poster")
    ).status_code == 404


def test_poster_text_wraps_and_ends_in_an_ellipsis() -> None:
    lines = wrap("一" * 100, 40, width=400, max_lines=3)
    assert len(lines) == 3 and all(len(line) <= 10 for line in lines) and lines[-1].endswith("…")
    assert wrap("Coffee voucher for two", 20, width=200) == ["Coffee voucher", "for two"]
    svg = poster_svg(
        tenant_name="A&B 店", campaign_name="<新人礼>", product_name="咖啡", short_url="http://x/c/ABCD"
    )
    assert "A&amp;B 店" in svg and "&lt;新人礼&gt;" in svg
    assert segno.make("http://x/c/ABCD", error="m").version <= 3  # a short link: a coarse, easily scanned QR
