"""Console campaign page: claim counts in the list and on the campaign's page, the edit form (readable errors
in zh-CN and English, times in the tenant's timezone), Stop / Resume (CSRF, roles, isolation)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select

from core.audit.models import AuditEvent
from core.campaigns import services
from core.db.context import tenant_context
from tests.integration.claims.helpers import random_phone
from tests.integration.console.conftest import (  # noqa: F401 (fixtures)
    Browser,
    browser,
    make_user,
    new_browser,
    text_of,
)
from tests.integration.inventory.stocking import stock_product


async def _owner(new_browser: Any, tenant: Any) -> Browser:  # noqa: F811
    b = new_browser()
    r = await b.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    assert r.status_code in (302, 303), r.text
    return b


async def _run(kernel: Any, tenant_id: uuid.UUID, fn: Any) -> Any:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return await fn(db)


async def _campaign(b: Browser, product_id: uuid.UUID, **fields: str) -> uuid.UUID:
    form = {
        "name": "周年庆",
        "product_id": str(product_id),
        "quantity": "1",
        "per_member_limit": "2",
        **fields,
    }
    r = await b.submit("/console/campaigns", "/console/campaigns", {**form, "active": "on"})
    assert r.status_code == 200 and "data-created-campaign" in r.text, text_of(r.text)
    match = re.search(r'data-created-campaign="([0-9a-f-]+)"', r.text)
    assert match
    return uuid.UUID(match.group(1))


async def test_counts_edit_stop_and_resume(new_browser, make_tenant, kernel):  # noqa: F811
    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 5)
    b = await _owner(new_browser, tenant)
    cid = await _campaign(b, stocked.product_id, starts_at="2026-03-01T10:00:30")
    a = random_phone()
    for phone in (a, a, random_phone()):
        await _run(kernel, tenant.id, lambda db, p=phone: services.claim(db, kernel, cid, p, None, None))

    listing = await b.get("/console/campaigns")
    row = re.search(rf'<tr data-campaign="{cid}" data-state="open">(.*?)</tr>', listing.text, re.S)
    assert row, listing.text
    assert re.search(r"data-claims>3<.*data-codes>3<.*data-members>2<", row.group(1), re.S), row.group(1)
    assert f'href="/console/campaigns/{cid}"' in row.group(1)

    page = await b.get(f"/console/campaigns/{cid}")
    assert page.status_code == 200 and "data-campaign-edit" in page.text and "data-stop" in page.text
    assert "data-claims>3<" in page.text and "data-members>2<" in page.text and "<svg" in page.text
    assert 'value="2026-03-01T10:00"' in page.text  # the tenant's time (Asia/Shanghai), as typed

    # an edit that keeps the shown start time leaves the stored one (with its seconds) alone
    edit = {
        "name": "周年庆（延长）",
        "quantity": "1",
        "per_member_limit": "3",
        "starts_at": "2026-03-01T10:00",
        "ends_at": "2099-01-01T20:00",
        "active": "on",
    }
    r = await b.submit(f"/console/campaigns/{cid}", f"/console/campaigns/{cid}", edit)
    assert r.status_code == 303 and r.headers["location"] == f"/console/campaigns/{cid}"
    page = await b.get(f"/console/campaigns/{cid}")
    assert 'class="alert alert-success" role="status"' in page.text and 'value="周年庆（延长）"' in page.text
    out = await _run(kernel, tenant.id, lambda db: services.campaign_out(db, kernel, cid))
    assert out.per_member_limit == 3 and out.starts_at is not None and out.starts_at.second == 30
    assert out.ends_at is not None and out.ends_at.isoformat().startswith("2099-01-01T12:00")

    # readable errors; the form keeps what was typed
    r = await b.submit(f"/console/campaigns/{cid}", f"/console/campaigns/{cid}", {**edit, "quantity": "0"})
    assert r.status_code == 422 and "每次领取数量须在 1 到 10 之间" in text_of(r.text)
    assert 'value="0"' in r.text
    r = await b.submit(
        f"/console/campaigns/{cid}", f"/console/campaigns/{cid}", {**edit, "ends_at": "2026-02-01T00:00"}
    )
    assert r.status_code == 422 and "活动结束时间早于开始时间" in text_of(r.text)
    r = await b.submit(f"/console/campaigns/{cid}", f"/console/campaigns/{cid}", {**edit, "name": " "})
    assert r.status_code == 422 and "请填写活动名称" in text_of(r.text)
    await b.get(f"/console/lang?to=en&next=/console/campaigns/{cid}")
    r = await b.submit(f"/console/campaigns/{cid}", f"/console/campaigns/{cid}", {**edit, "ends_at": "later"})
    assert r.status_code == 422 and "Enter a date and time such as" in text_of(r.text)
    await b.get(f"/console/lang?to=zh_CN&next=/console/campaigns/{cid}")

    # stop: the page says so, the public page says the campaign has ended; twice is harmless
    r = await b.submit(f"/console/campaigns/{cid}", f"/console/campaigns/{cid}/stop", {})
    assert r.status_code == 303
    page = await b.get(f"/console/campaigns/{cid}")
    assert 'data-campaign-state="stopped"' in page.text and "data-resume" in page.text
    assert "data-stopped" in page.text and "data-stop>" not in page.text
    assert (
        await b.submit(f"/console/campaigns/{cid}", f"/console/campaigns/{cid}/stop", {})
    ).status_code == 303
    visitor = new_browser()
    assert "活动已结束" in text_of((await visitor.get(out.path)).text)
    # saving the form does not reopen it
    r = await b.submit(f"/console/campaigns/{cid}", f"/console/campaigns/{cid}", edit)
    assert r.status_code == 303
    assert 'data-campaign-state="stopped"' in (await b.get(f"/console/campaigns/{cid}")).text

    r = await b.submit(f"/console/campaigns/{cid}", f"/console/campaigns/{cid}/resume", {})
    assert r.status_code == 303
    assert 'data-campaign-state="open"' in (await b.get(f"/console/campaigns/{cid}")).text
    assert 'name="phone"' in (await visitor.get(out.path)).text

    async def actions(db: Any) -> list[str]:
        q = select(AuditEvent.action).where(AuditEvent.object_id == str(cid)).order_by(AuditEvent.occurred_at)
        return list((await db.execute(q)).scalars())

    done = await _run(kernel, tenant.id, actions)
    assert done.count("campaign.stopped") == 1 and done.count("campaign.resumed") == 1
    assert done.count("campaign.updated") == 1  # the second save changed nothing


async def test_roles_csrf_and_isolation(new_browser, make_tenant, make_user, kernel):  # noqa: F811
    tenant, other = await make_tenant(), await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 1)
    owner = await _owner(new_browser, tenant)
    cid = await _campaign(owner, stocked.product_id)

    # an operator may manage campaigns
    operator = await make_user(tenant, "operator")
    ob = new_browser()
    await ob.console_login(tenant.slug, operator.email, operator.password)
    assert (await ob.get(f"/console/campaigns/{cid}")).status_code == 200

    # a viewer may not, even with a valid CSRF token
    viewer = await make_user(tenant, "viewer")
    vb = new_browser()
    await vb.console_login(tenant.slug, viewer.email, viewer.password)
    home = await vb.get("/console")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', home.text)
    assert token
    assert (await vb.get(f"/console/campaigns/{cid}")).status_code == 403
    for action in ("", "/stop", "/resume"):
        r = await vb.http.post(
            f"/console/campaigns/{cid}{action}", data={"name": "x", "_csrf_token": token.group(1)}
        )
        assert r.status_code == 403, action

    # without the CSRF token nothing happens
    r = await owner.http.post(f"/console/campaigns/{cid}/stop", data={})
    assert r.status_code == 403
    out = await _run(kernel, tenant.id, lambda db: services.campaign_out(db, kernel, cid))
    assert out.state == "open" and out.name == "周年庆"

    # another tenant's owner: not found
    ob2 = await _owner(new_browser, other)
    assert (await ob2.get(f"/console/campaigns/{cid}")).status_code == 404
    r = await ob2.submit("/console/campaigns", f"/console/campaigns/{cid}/stop", {})
    assert r.status_code == 404
    out = await _run(kernel, tenant.id, lambda db: services.campaign_out(db, kernel, cid))
    assert out.state == "open"
