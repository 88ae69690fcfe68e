"""Console lists in headless Chromium at 1280 and 390 px (issue 14): the campaign list keeps product names
readable and the claim link short (with 复制 and 海报), the short link opens the campaign's H5 page, the batch
list pages by number, and the batch page's cost card holds long money amounts — no page scrolls sideways."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import unique
from tests.e2e.conftest import SCREENSHOTS, LiveServer, OperatorAccount, onboard_via_api, tenant_id_of

pytestmark = pytest.mark.browser

LONG_PRODUCT = "星巴克中杯拿铁电子券 Starbucks Tall Latte e-voucher（全国门店通用）"
LONG_CAMPAIGN = "双十一会员回馈：关注公众号即可领取咖啡券一张，数量有限先到先得"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _seed(live_server: LiveServer, slug: str) -> dict[str, Any]:
    """A product with a long name, a batch whose stock is worth millions at cost, and a campaign."""
    from core.campaigns import services as campaigns
    from core.campaigns.schemas import CampaignCreate
    from core.db.context import tenant_context
    from tests.integration.inventory.stocking import stock_product

    tenant_id = tenant_id_of(live_server, slug)
    kernel = live_server.app.state.kernel

    async def seed() -> dict[str, Any]:
        stocked = await stock_product(kernel, tenant_id, 3, unit_cost=987_654_321)  # ¥9,876,543.21 each
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                from core.catalog.models import Product

                product = await db.get(Product, (tenant_id, stocked.product_id))
                assert product is not None
                product.name_zh = LONG_PRODUCT
                await db.flush()
                out = await campaigns.create_campaign(
                    db, kernel, CampaignCreate(name=LONG_CAMPAIGN, product_id=stocked.product_id)
                )
        return {"batch_id": stocked.batch_id, "campaign": out}

    return live_server.run(seed())


def _login(
    chromium: Any, live_server: LiveServer, invite: str, slug: str, width: int, height: int
) -> tuple[Any, Any]:
    context = chromium.new_context(
        base_url=live_server.url,
        viewport={"width": width, "height": height},
        locale="zh-CN",
        is_mobile=width < 500,
        has_touch=width < 500,
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(invite)
    if page.locator("#f-password_confirm").count():
        page.fill("#f-password", "owner-password-lists")
        page.fill("#f-password_confirm", "owner-password-lists")
        page.click("form.form button[type=submit]")
    else:
        page.fill("#f-tenant", slug)
        page.fill("#f-email", f"owner@{slug}.example.com")
    page.fill("#f-password", "owner-password-lists")
    page.click("form.form button[type=submit]")
    _expect()(page).to_have_url(f"{live_server.url}/console")
    return context, page


def _fits(page: Any, width: int, what: str) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{what} scrolls sideways at {width}px ({scroll}px)"


def test_lists_fit_and_read_well_at_1280_and_390(
    chromium: Any, live_server: LiveServer, operator_account: OperatorAccount
) -> None:
    expect = _expect()
    slug = unique("lists-")
    invite = onboard_via_api(live_server, operator_account, slug)
    seeded = _seed(live_server, slug)
    campaign = seeded["campaign"]
    for width, height in ((1280, 800), (390, 844)):
        context, page = _login(
            chromium, live_server, invite if width == 1280 else "/console/login", slug, width, height
        )
        try:
            page.goto("/console/campaigns")
            row = page.locator(f'tr[data-campaign="{campaign.id}"]')
            expect(row).to_be_visible()
            product = row.locator(".col-product .clamp-2")
            box = product.bounding_box()
            assert box is not None and box["width"] >= 120, f"product name squeezed to {box} at {width}px"
            lines = page.evaluate(
                "el => Math.round(el.getBoundingClientRect().height / parseFloat(getComputedStyle(el).lineHeight))",
                product.element_handle(),
            )
            assert lines <= 2, f"the product name takes {lines} lines at {width}px"
            link = row.locator("[data-short-url]")
            expect(link).to_have_text(campaign.short_url)
            assert len(campaign.short_url) < 40
            expect(row.get_by_role("button", name="复制")).to_be_visible()
            expect(row.get_by_role("link", name="海报")).to_have_attribute(
                "href", f"/console/campaigns/{campaign.id}/poster.svg"
            )
            _fits(page, width, "/console/campaigns")
            page.screenshot(path=str(SCREENSHOTS / f"kaquan-e2e-campaigns-{width}.png"), full_page=True)

            page.goto(f"/console/batches/{seeded['batch_id']}")
            value = page.locator('[data-level="value"]')
            expect(value).to_have_text("¥29,629,629.63")
            inside = page.evaluate(
                "el => el.scrollWidth <= el.clientWidth && el.getBoundingClientRect().right"
                " <= el.closest('.card').getBoundingClientRect().right + 0.5",
                value.element_handle(),
            )
            assert inside, f"the cost card's amount overflows its card at {width}px"
            _fits(page, width, "/console/batches/<id>")
            page.screenshot(path=str(SCREENSHOTS / f"kaquan-e2e-batch-{width}.png"), full_page=True)

            page.goto("/console/batches")
            expect(page.locator("[data-pager]")).to_contain_text("共 1 条")
            _fits(page, width, "/console/batches")
            page.goto("/console/grants")
            expect(page.locator("[data-grant-search]")).to_be_visible()
            _fits(page, width, "/console/grants")
            page.goto("/console/members")
            expect(page.locator('[data-export="members"]')).to_be_visible()
            _fits(page, width, "/console/members")
        finally:
            context.close()

    phone = chromium.new_context(
        base_url=live_server.url, viewport={"width": 390, "height": 844}, locale="zh-CN"
    )
    try:
        page = phone.new_page()
        page.goto(f"/c/{campaign.short_code}")
        expect(page).to_have_url(re.compile(r"/h5/campaign/"))
        expect(page.locator("body")).to_contain_text(LONG_CAMPAIGN)
        page.goto("/c/ZZZZ9999")
        expect(page.locator("h1")).to_have_text("活动不存在")
        _fits(page, 390, "/c/<unknown>")
    finally:
        phone.close()
