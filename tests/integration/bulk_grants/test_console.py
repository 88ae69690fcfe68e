"""The console bulk-grant pages: upload → report → confirm → progress → result download; roles; isolation."""

from __future__ import annotations

import asyncio
import codecs
import re

from tests.integration.bulk_grants.conftest import csv_bytes, new_product, phones, worker_for
from tests.integration.console.conftest import text_of

SHOW = re.compile(r"^/console/bulk-grants/([0-9a-f-]{36})$")


async def login(browser, tenant, user) -> None:
    r = await browser.console_login(tenant.slug, user.email, user.password)
    assert r.status_code == 303, r.text


async def test_upload_check_confirm_progress_and_download(browser, kernel, settings, make_tenant, make_user):
    tenant = await make_tenant(plan="growth")
    owner = await make_user(tenant, "owner")
    sku, _ = await new_product(kernel, tenant.id, 5)
    numbers = phones(3)
    data = csv_bytes(
        ["姓名", "手机号", "商品编码", "数量"],
        [("张三", numbers[0], sku, 1), ("李四", "12345", sku, 1), ("王五", numbers[2], sku, 2)],
        encoding="gbk",
    )
    await login(browser, tenant, owner)
    page = await browser.get("/console/bulk-grants")
    assert page.status_code == 200 and 'href="/console/bulk-grants"' in page.text
    assert "批量发放" in text_of(page.text)
    r = await browser.submit(
        "/console/bulk-grants",
        "/console/bulk-grants",
        {"campaign_ref": "中秋", "channel": ""},
        files={"file": ("名单.csv", data, "text/csv")},
    )
    assert r.status_code == 303, r.text
    match = SHOW.match(r.headers["location"])
    assert match
    bulk_id = match.group(1)
    report = await browser.get(f"/console/bulk-grants/{bulk_id}")
    text = text_of(report.text)
    assert report.status_code == 200 and "data-confirm-bulk" in report.text
    assert 'data-problem="bad_phone"' in report.text and "不是有效的中国大陆手机号" in text
    assert f'data-sku="{sku}"' in report.text
    for n in numbers:
        assert n not in report.text

    async with worker_for(settings):
        r = await browser.submit(
            f"/console/bulk-grants/{bulk_id}", f"/console/bulk-grants/{bulk_id}/confirm", {}
        )
        assert r.status_code == 303, r.text
        state: dict = {}
        for _ in range(600):  # a condition wait, not a timing assertion
            state = (await browser.get(f"/console/bulk-grants/{bulk_id}/progress")).json()
            if state["finished"]:
                break
            await asyncio.sleep(0.1)
    assert (
        state["status"] == "done"
        and state["percent"] == 100.0
        and state["next"] == f"/console/bulk-grants/{bulk_id}"
    )
    done = await browser.get(f"/console/bulk-grants/{bulk_id}")
    assert 'data-count="granted">2<' in done.text and "data-download-results" in done.text
    csv_file = await browser.get(f"/console/bulk-grants/{bulk_id}/results.csv")
    assert csv_file.status_code == 200 and csv_file.content.startswith(codecs.BOM_UTF8)
    body = csv_file.content.decode("utf-8-sig")
    assert body.splitlines()[0].startswith("行号,姓名,联系方式") and "bad_phone" in body
    assert numbers[0] not in body

    await browser.get("/console/lang?to=en&next=/console/bulk-grants")
    english = await browser.get(f"/console/bulk-grants/{bulk_id}")
    assert "Bulk grant" in english.text and "Download the result per row" in english.text
    csv_en = await browser.get(f"/console/bulk-grants/{bulk_id}/results.csv")
    assert csv_en.content.decode("utf-8-sig").startswith("row,name,contact")


async def test_bad_uploads_show_a_message_not_an_error_page(browser, kernel, make_tenant, make_user):
    tenant = await make_tenant()
    owner = await make_user(tenant, "owner")
    await login(browser, tenant, owner)
    r = await browser.submit("/console/bulk-grants", "/console/bulk-grants", {"campaign_ref": ""})
    assert r.status_code == 422 and "请选择领取人文件" in text_of(r.text)
    r = await browser.submit(
        "/console/bulk-grants",
        "/console/bulk-grants",
        {},
        files={"file": ("a.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "text/csv")},
    )
    assert r.status_code == 422 and "alert" in r.text and "<form" in r.text


async def test_roles_and_isolation(new_browser, kernel, make_tenant, make_user):
    a, b = await make_tenant(), await make_tenant()
    owner_a, viewer_a, owner_b = (
        await make_user(a, "owner"),
        await make_user(a, "viewer"),
        await make_user(b, "owner"),
    )
    sku, _ = await new_product(kernel, a.id, 1)
    browser_a, viewer, browser_b = new_browser(), new_browser(), new_browser()
    await login(browser_a, a, owner_a)
    r = await browser_a.submit(
        "/console/bulk-grants",
        "/console/bulk-grants",
        {},
        files={"file": ("a.csv", csv_bytes(["手机号", "SKU"], [(phones(1)[0], sku)]), "text/csv")},
    )
    bulk_id = SHOW.match(r.headers["location"]).group(1)
    await login(viewer, a, viewer_a)
    assert (await viewer.get("/console/bulk-grants")).status_code == 403
    assert (await viewer.get(f"/console/bulk-grants/{bulk_id}")).status_code == 403
    await login(browser_b, b, owner_b)
    for path in ("", "/progress", "/results.csv"):
        assert (await browser_b.get(f"/console/bulk-grants/{bulk_id}{path}")).status_code == 404, path
    r = await browser_b.submit("/console/bulk-grants", f"/console/bulk-grants/{bulk_id}/confirm", {})
    assert r.status_code == 404
    listing = await browser_b.get("/console/bulk-grants")
    assert bulk_id not in listing.text
