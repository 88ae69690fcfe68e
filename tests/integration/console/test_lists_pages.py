"""Console lists (issue 14): the batches list pages by number with a total and a jump box."""

from __future__ import annotations

import re
from typing import Any

from admin_ui import inventory_pages
from tests.integration.console.conftest import text_of
from tests.integration.inventory.stocking import stock_product


async def test_batches_list_shows_a_total_page_numbers_and_a_jump_box(
    browser: Any, make_tenant: Any, kernel: Any, monkeypatch: Any
) -> None:
    tenant = await make_tenant()
    first = await stock_product(kernel, tenant.id, 1)
    for _ in range(6):
        await stock_product(kernel, tenant.id, 1, product_id=first.product_id)
    monkeypatch.setattr(inventory_pages, "BATCH_PAGE", 2)
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)

    page = await browser.get("/console/batches")
    assert page.status_code == 200
    assert 'data-total="7" data-page="1" data-pages="4"' in page.text
    assert "共 7 条 · 第 1/4 页" in text_of(page.text) and "data-page-jump" in page.text
    assert 'data-page-link="4"' in page.text and "下一页" in text_of(page.text)
    assert len(re.findall(r"<tr data-batch=", page.text)) == 2

    last = await browser.get(f"/console/batches?product_id={first.product_id}&page=4")
    assert 'data-page="4" data-pages="4"' in last.text and len(re.findall(r"<tr data-batch=", last.text)) == 1
    assert f"/console/batches/{first.batch_id}" in last.text  # the oldest batch is on the last page
    assert f'name="product_id" value="{first.product_id}"' in last.text  # the jump box keeps the filter
    for wild in ("99", "0", "abc"):
        r = await browser.get(f"/console/batches?page={wild}")
        assert r.status_code == 200 and "data-pager" in r.text, wild
    assert 'data-page="4"' in (await browser.get("/console/batches?page=99")).text


async def _grant(kernel: Any, tenant_id: Any, product_id: Any, phone: str) -> Any:
    from core.db.context import tenant_context
    from core.grants.schemas import GrantRequest
    from core.grants.services import create_grant

    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            req = GrantRequest(product_id=product_id, quantity=1, phone=phone, channel="none")
            return await create_grant(db, kernel, req, source="console")


def _sheet(body: bytes) -> list[tuple[Any, ...]]:
    import io

    from openpyxl import load_workbook  # type: ignore[import-untyped]

    return [
        tuple(r)
        for r in load_workbook(io.BytesIO(body), read_only=True).worksheets[0].iter_rows(values_only=True)
    ]


async def test_grant_list_searches_by_phone_and_code_and_exports(
    browser: Any, new_browser: Any, make_tenant: Any, make_user: Any, kernel: Any
) -> None:
    from sqlalchemy import select

    from core.audit.models import AuditEvent
    from core.db.context import tenant_context

    tenant = await make_tenant()
    one, two = await stock_product(kernel, tenant.id, 1), await stock_product(kernel, tenant.id, 1)
    await _grant(kernel, tenant.id, one.product_id, "13800138001")
    await _grant(kernel, tenant.id, two.product_id, "13800138002")
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)

    found = await browser.get("/console/grants?phone=%2B86+138-0013-8001")
    assert found.status_code == 200 and len(re.findall(r"<tr data-grant=", found.text)) == 1
    by_code = await browser.get(f"/console/grants?code={two.numbers[0]}")
    assert len(re.findall(r"<tr data-grant=", by_code.text)) == 1
    bad = await browser.get("/console/grants?phone=123")
    assert bad.status_code == 200 and "手机号" in text_of(bad.text) and "<tr data-grant=" not in bad.text
    assert 'data-export="grants"' in found.text and 'name="full_phones"' in found.text  # the owner

    masked = await browser.get("/console/exports/grants.xlsx?phone=13800138001")
    assert masked.status_code == 200 and masked.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert masked.headers["content-disposition"].startswith('attachment; filename="grants-')
    rows = _sheet(masked.content)
    assert len(rows) == 2 and "138****8001" in rows[1] and "13800138001" not in str(rows), repr(rows[1])
    full = _sheet((await browser.get("/console/exports/grants.xlsx?full_phones=1")).content)
    assert len(full) == 3 and {"+8613800138001", "+8613800138002"} <= {c for r in full for c in r}

    members = _sheet((await browser.get("/console/exports/members.xlsx")).content)
    assert len(members) == 3 and "138****8002" in str(members) and "+86" not in str(members)

    admin = await make_user(tenant, "admin")
    b = new_browser()
    await b.console_login(tenant.slug, admin.email, admin.password)
    rows = _sheet((await b.get("/console/exports/members.xlsx?full_phones=1")).content)
    assert "+86" not in str(
        rows
    )  # an admin may export, but phones stay masked: whole numbers are the owner's
    assert 'name="full_phones"' not in (await b.get("/console/members")).text
    viewer = await make_user(tenant, "viewer")
    v = new_browser()
    await v.console_login(tenant.slug, viewer.email, viewer.password)
    assert (await v.get("/console/exports/members.xlsx")).status_code == 403
    assert 'data-export="members"' not in (await v.get("/console/members")).text

    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            events = (
                (
                    await db.execute(
                        select(AuditEvent).where(
                            AuditEvent.action.in_(["grants.exported", "members.exported"])
                        )
                    )
                )
                .scalars()
                .all()
            )
    assert sorted((e.action, e.data["full_phones"]) for e in events) == [
        ("grants.exported", False),
        ("grants.exported", True),
        ("members.exported", False),
        ("members.exported", False),
    ]


async def test_an_export_past_the_cap_is_refused_readably(
    browser: Any, make_tenant: Any, kernel: Any, monkeypatch: Any
) -> None:
    from core.members import export

    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 2)
    await _grant(kernel, tenant.id, stocked.product_id, "13800138011")
    await _grant(kernel, tenant.id, stocked.product_id, "13800138012")
    monkeypatch.setattr(export, "EXPORT_CAP", 1)
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    r = await browser.get("/console/exports/members.xlsx?q=138")
    assert r.status_code == 200  # the search narrows the list under the cap (no member matches "138")
    r = await browser.get("/console/exports/members.xlsx")
    assert r.status_code == 303 and r.headers["location"] == "/console/members"
    r = await browser.get("/console/exports/grants.xlsx")
    assert r.status_code == 303
    page = await browser.get("/console/grants")
    assert "单次导出最多 1 行" in text_of(page.text)
