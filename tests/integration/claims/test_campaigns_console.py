"""Console campaign page: create a campaign by form (the API's service), see it listed with its public claim
link (which opens the H5 page), readable errors in zh-CN and English, viewers refused, tenants isolated."""

from __future__ import annotations

import re

from tests.integration.console.conftest import (  # noqa: F401 (fixtures)
    Browser,
    browser,
    make_user,
    new_browser,
    text_of,
)
from tests.integration.inventory.stocking import stock_product

_LINK = re.compile(r'data-secret="campaign-url">(https?://[^<]+/h5/campaign/[^<]+)<')


async def _owner(new_browser, tenant) -> Browser:  # noqa: F811
    b = new_browser()
    r = await b.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code in (302, 303), r.text
    return b


async def test_create_by_form_lists_the_link_and_it_opens(new_browser, make_tenant, kernel):  # noqa: F811
    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 4)
    b = await _owner(new_browser, tenant)

    page = await b.get("/console/campaigns")
    assert page.status_code == 200 and "data-campaign-form" in page.text
    assert 'href="/console/campaigns"' in page.text and "暂无活动" in text_of(page.text)
    assert f'value="{stocked.product_id}"' in page.text

    r = await b.submit(
        "/console/campaigns",
        "/console/campaigns",
        {
            "name": "双十一领券",
            "product_id": str(stocked.product_id),
            "quantity": "2",
            "per_member_limit": "3",
            "starts_at": "2026-01-01T09:00",
            "ends_at": "2099-12-31T18:00",
            "active": "on",
        },
    )
    assert r.status_code == 200, r.text
    url = _LINK.search(r.text)
    assert url, r.text
    assert "<svg" in r.text and "data-campaign-qr" in r.text
    path = "/h5/campaign/" + url.group(1).rsplit("/h5/campaign/", 1)[1]

    listing = await b.get("/console/campaigns")
    row = re.search(r'<tr data-campaign="[^"]+" data-state="open">(.*?)</tr>', listing.text, re.S)
    assert row, listing.text
    cells = text_of(row.group(1))
    assert "双十一领券" in cells and f'href="{path}"' in row.group(1)
    assert 'data-quantity="2" data-limit="3"' in row.group(1)
    assert "2026-01-01 09:00" in cells and "2099-12-31 18:00" in cells and "进行中" in cells

    visitor = new_browser()
    opened = await visitor.get(path)
    assert opened.status_code == 200 and "双十一领券" in opened.text

    # the API sees the same campaign with the same times (the tenant's timezone, Asia/Shanghai by default)
    async def api_list():
        from core.campaigns.services import list_campaigns
        from core.db.context import tenant_context

        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                return (await list_campaigns(db, kernel, None, 10)).items

    [campaign] = await api_list()
    assert campaign.quantity == 2 and campaign.per_member_limit == 3 and campaign.active
    assert campaign.path == path and campaign.starts_at is not None
    assert campaign.starts_at.isoformat().startswith("2026-01-01T01:00")  # 09:00 +08:00


async def test_bad_input_shows_the_form_again_in_both_languages(new_browser, make_tenant, kernel):  # noqa: F811
    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 1)
    b = await _owner(new_browser, tenant)
    good = {
        "name": "春节活动",
        "product_id": str(stocked.product_id),
        "quantity": "1",
        "per_member_limit": "1",
    }

    r = await b.submit("/console/campaigns", "/console/campaigns", {**good, "product_id": ""})
    assert r.status_code == 422 and "data-problem" in r.text and "请选择权益商品" in text_of(r.text)
    assert 'value="春节活动"' in r.text  # the form keeps what was typed

    r = await b.submit("/console/campaigns", "/console/campaigns", {**good, "quantity": "0"})
    assert r.status_code == 422 and "每次领取数量须在 1 到 10 之间" in text_of(r.text)
    assert re.search(r'class="field field-error">\s*<label for="f-quantity">', r.text)

    r = await b.submit("/console/campaigns", "/console/campaigns", {**good, "quantity": "two"})
    assert r.status_code == 422 and "data-problem" in r.text

    r = await b.submit(
        "/console/campaigns",
        "/console/campaigns",
        {**good, "starts_at": "2030-01-02T00:00", "ends_at": "2030-01-01T00:00"},
    )
    assert r.status_code == 422 and "活动结束时间早于开始时间" in text_of(r.text)

    await b.get("/console/lang?to=en&next=/console/campaigns")
    r = await b.submit("/console/campaigns", "/console/campaigns", {**good, "per_member_limit": "0"})
    assert r.status_code == 422 and "Claims per member must be between 1 and 100." in text_of(r.text)
    r = await b.submit("/console/campaigns", "/console/campaigns", {**good, "product_id": ""})
    assert r.status_code == 422 and "Choose a product." in text_of(r.text)
    r = await b.submit("/console/campaigns", "/console/campaigns", {**good, "starts_at": "soon"})
    assert r.status_code == 422 and "Enter a date and time such as" in text_of(r.text)

    assert "No campaigns yet." in text_of((await b.get("/console/campaigns")).text)


async def test_viewer_is_refused_and_has_no_link(new_browser, make_tenant, make_user, kernel):  # noqa: F811
    tenant = await make_tenant()
    viewer = await make_user(tenant, "viewer")
    b = new_browser()
    await b.console_login(tenant.slug, viewer.email, viewer.password)
    home = await b.get("/console")
    assert home.status_code == 200 and 'href="/console/campaigns"' not in home.text
    assert (await b.get("/console/campaigns")).status_code == 403
    stocked = await stock_product(kernel, tenant.id, 1)
    forged = await b.http.post(
        "/console/campaigns",
        data={"name": "x", "product_id": str(stocked.product_id), "_csrf_token": _csrf(home.text)},
    )
    assert forged.status_code == 403


async def test_tenants_see_only_their_campaigns(new_browser, make_tenant, kernel):  # noqa: F811
    a, other = await make_tenant(), await make_tenant()
    stocked = await stock_product(kernel, a.id, 1)
    owner_a = await _owner(new_browser, a)
    r = await owner_a.submit(
        "/console/campaigns",
        "/console/campaigns",
        {"name": "A 的活动", "product_id": str(stocked.product_id), "quantity": "1", "per_member_limit": "1"},
    )
    assert r.status_code == 200 and _LINK.search(r.text)

    owner_b = await _owner(new_browser, other)
    page = await owner_b.get("/console/campaigns")
    assert page.status_code == 200 and "A 的活动" not in page.text and "暂无活动" in text_of(page.text)
    assert str(stocked.product_id) not in page.text
    # B cannot use A's product either: the service answers "product not found" in B's tenant
    r = await owner_b.submit(
        "/console/campaigns",
        "/console/campaigns",
        {"name": "偷用", "product_id": str(stocked.product_id), "quantity": "1", "per_member_limit": "1"},
    )
    assert r.status_code == 404 and "商品不存在" in text_of(r.text)
    assert "偷用" not in text_of((await owner_a.get("/console/campaigns")).text)


def _csrf(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    return match.group(1) if match else ""
