"""Console inventory pages: the stock page with its alerts, batch pages with masked codes, voiding codes,
and the reveal and export of plaintext codes (owner/admin only, with a reason, audited, never cached)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid

from sqlalchemy import select

from core.audit.models import AuditEvent
from core.db.base import utcnow
from core.db.context import tenant_context
from core.inventory.models import Code
from tests.integration.console.conftest import text_of
from tests.integration.inventory.stocking import stock_product
from tests.integration.inventory.test_import_api import csv_bytes, new_product, pins, plain_codes, worker_for


async def _audit(kernel, tenant_id, action: str) -> list[AuditEvent]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return list((await db.execute(select(AuditEvent).where(AuditEvent.action == action))).scalars())


async def _states(kernel, tenant_id, ids) -> dict[uuid.UUID, str]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            rows = await db.execute(select(Code.id, Code.state).where(Code.id.in_(ids)))
            return {i: s for i, s in rows.all()}


async def test_stock_page_shows_levels_value_and_alerts(browser, make_tenant, kernel):
    tenant = await make_tenant()
    soon = utcnow() + dt.timedelta(days=3)
    low = await stock_product(kernel, tenant.id, 4, unit_cost=850, low_stock_threshold=5)
    fresh = await stock_product(
        kernel, tenant.id, 3, unit_cost=100, expiries=[soon, None, None], near_expiry_days=7
    )
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)

    page = await browser.get("/console/stock")
    assert page.status_code == 200 and "data-check-alerts" in page.text
    row = re.search(r'<tr data-stock="([^"]+)">(.*?)</tr>', page.text, re.S)
    assert row
    assert "暂无" not in page.text and "data-alert-count>0<" in page.text
    r = await browser.submit("/console/stock", "/console/stock/check-alerts", {})
    assert r.status_code == 303 and r.headers["location"] == "/console/stock"
    page = await browser.get("/console/stock")
    text = text_of(page.text)
    assert "已检查预警：新增 2 条，解除 0 条" in text
    rows = dict(re.findall(r'<tr data-stock="([^"]+)">(.*?)</tr>', page.text, re.S))
    low_sku = next(s for s in rows if 'data-alert="low_stock"' in rows[s])
    near_sku = next(s for s in rows if 'data-alert="near_expiry"' in rows[s])
    assert low_sku != near_sku
    assert '<td class="num" data-state="available">4</td>' in rows[low_sku]
    assert "¥34.00" in rows[low_sku]  # 4 × ¥8.50 at cost
    assert "¥3.00" in rows[near_sku]
    assert "可用 4，阈值 5" in text and "1 个卡密将在 7 天内过期" in text
    assert "data-alert-count>2<" in page.text

    detail = text_of((await browser.get(f"/console/products/{low.product_id}")).text)
    assert "库存不足" in detail and "可用 4，阈值 5" in detail and "¥34.00" in detail
    r = await browser.submit(
        f"/console/products/{fresh.product_id}",
        "/console/stock/check-alerts",
        {"product_id": str(fresh.product_id)},
    )
    assert r.status_code == 303 and r.headers["location"] == f"/console/products/{fresh.product_id}"

    batches = await browser.get(f"/console/batches?product_id={low.product_id}")
    assert batches.status_code == 200 and f"/console/batches/{low.batch_id}" in batches.text
    everything = await browser.get("/console/batches")
    assert f"/console/batches/{fresh.batch_id}" in everything.text


async def test_void_selected_codes_with_a_reason(browser, make_tenant, make_user, new_browser, kernel):
    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 5, unit_cost=300)
    operator = await make_user(tenant, "operator")
    await browser.console_login(tenant.slug, operator.email, operator.password)
    url = f"/console/batches/{stocked.batch_id}"
    page = await browser.get(url)
    assert page.status_code == 200 and 'id="void-form"' in page.text
    for number in stocked.numbers:
        assert number not in page.text and f"•••• {number[-4:]}" in page.text

    picked = [("code_ids", str(i)) for i in stocked.code_ids[:2]]
    r = await browser.submit(url, f"{url}/void", [*picked, ("reason", "no")])
    assert r.status_code == 422 and "请填写原因" in r.text
    assert f'value="{stocked.code_ids[0]}" form="void-form" aria-label' in r.text and "checked" in r.text
    r = await browser.submit(url, f"{url}/void", {"reason": "supplier recall"})
    assert r.status_code == 422 and "请勾选要作废的卡密" in r.text
    other = await stock_product(kernel, tenant.id, 1)
    r = await browser.submit(
        url, f"{url}/void", [("code_ids", str(other.code_ids[0])), ("reason", "supplier recall")]
    )
    assert r.status_code == 422 and "不属于此批次" in r.text

    r = await browser.submit(url, f"{url}/void", [*picked, ("reason", "supplier recall 0412")])
    assert r.status_code == 303 and r.headers["location"] == url
    page = await browser.get(url)
    assert "已作废 2 个卡密" in page.text
    assert re.search(r'data-level="voided">2<', page.text) and re.search(
        r'data-level="available">3<', page.text
    )
    states = await _states(kernel, tenant.id, stocked.code_ids)
    assert [states[i] for i in stocked.code_ids] == [
        "voided",
        "voided",
        "available",
        "available",
        "available",
    ]
    voided = await _audit(kernel, tenant.id, "codes.voided")
    assert (
        voided
        and voided[-1].data["reason"] == "supplier recall 0412"
        and voided[-1].actor_id == str(operator.id)
    )

    r = await browser.submit(url, f"{url}/void", [*picked, ("reason", "again please")])
    assert r.status_code == 409 and "不能作废" in r.text
    only_voided = await browser.get(url, params={"state": "voided"})
    assert only_voided.text.count('<tr data-code="') == 2

    viewer = await make_user(tenant, "viewer")
    other_browser = new_browser()
    await other_browser.console_login(tenant.slug, viewer.email, viewer.password)
    page = await other_browser.get(url)
    assert page.status_code == 200 and 'id="void-form"' not in page.text
    r = await other_browser.submit(
        url, f"{url}/void", [("code_ids", str(stocked.code_ids[3])), ("reason", "viewer try")]
    )
    assert r.status_code == 403


async def test_reveal_is_for_owners_with_a_reason_and_audited(
    browser, make_tenant, make_user, new_browser, kernel
):
    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 2)
    code_id, number = stocked.code_ids[0], stocked.numbers[0]
    batch_url = f"/console/batches/{stocked.batch_id}"
    reveal_url = f"/console/codes/{code_id}/reveal"

    for role in ("viewer", "operator", "finance"):
        user = await make_user(tenant, role)
        other = new_browser()
        await other.console_login(tenant.slug, user.email, user.password)
        page = await other.get(batch_url)
        assert page.status_code == 200 and "data-reveal" not in page.text and "/export" not in page.text, role
        assert (await other.get(reveal_url)).status_code == 403, role
        r = await other.submit(batch_url, reveal_url, {"reason": "curious about it"})
        assert r.status_code == 403 and number not in r.text, role
        r = await other.submit(batch_url, f"{batch_url}/export", {"reason": "curious about it"})
        assert r.status_code == 403 and number not in r.text, role
    assert await _audit(kernel, tenant.id, "code.revealed") == []

    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    page = await browser.get(batch_url)
    assert f'href="{reveal_url}"' in page.text and f"{batch_url}/export" in page.text
    form = await browser.get(reveal_url)
    assert form.status_code == 200 and number not in form.text and f"•••• {number[-4:]}" in form.text
    r = await browser.submit(reveal_url, reveal_url, {"reason": "x"})
    assert r.status_code == 422 and "请填写原因" in r.text and number not in r.text

    r = await browser.submit(reveal_url, reveal_url, {"reason": "ticket 1234: code not received"})
    assert r.status_code == 200 and number in r.text and "仅显示一次" in r.text
    assert "no-store" in r.headers["cache-control"] and r.headers["referrer-policy"] == "no-referrer"
    events = await _audit(kernel, tenant.id, "code.revealed")
    assert len(events) == 1 and events[0].data["reason"] == "ticket 1234: code not received"
    assert events[0].object_id == str(code_id) and events[0].actor_id == str(await _owner_id(kernel, tenant))
    assert number not in str(events[0].data)
    again = await browser.get(reveal_url)
    assert number not in again.text  # a GET only asks for the reason again
    assert number not in (await browser.get(batch_url)).text


async def _owner_id(kernel, tenant) -> uuid.UUID:
    from tenants.models import User

    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            return (await db.execute(select(User.id).where(User.email == tenant.owner_email))).scalar_one()


async def test_export_batch_csv_with_a_reason(browser, make_tenant, kernel):
    tenant = await make_tenant()
    stocked = await stock_product(kernel, tenant.id, 3)
    batch_url = f"/console/batches/{stocked.batch_id}"
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    r = await browser.submit(batch_url, f"{batch_url}/export", {"reason": "", "states": "available"})
    assert r.status_code == 422 and "请填写原因" in r.text
    r = await browser.submit(
        batch_url, f"{batch_url}/export", {"reason": "hand-over to store 7", "states": "bogus"}
    )
    assert r.status_code == 422
    r = await browser.submit(
        batch_url, f"{batch_url}/export", [("reason", "hand-over to store 7"), ("states", "available")]
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"] and "no-store" in r.headers["cache-control"]
    body = r.content.decode("utf-8-sig")
    assert body.splitlines()[0] == "card_number,pin,state,expires_at"
    assert all(n in body for n in stocked.numbers)
    events = await _audit(kernel, tenant.id, "codes.exported")
    assert (
        len(events) == 1
        and events[0].data["count"] == 3
        and events[0].data["reason"] == "hand-over to store 7"
    )


async def test_batches_of_another_tenant_are_not_found(browser, new_browser, make_tenant, kernel):
    first, second = await make_tenant(), await make_tenant()
    stocked = await stock_product(kernel, first.id, 1)
    await browser.console_login(second.slug, second.owner_email, second.owner_password)
    batch_url = f"/console/batches/{stocked.batch_id}"
    assert (await browser.get(batch_url)).status_code == 404
    assert (await browser.get(f"/console/codes/{stocked.code_ids[0]}/reveal")).status_code == 404
    r = await browser.submit(
        "/console/stock", f"/console/codes/{stocked.code_ids[0]}/reveal", {"reason": "stealing it"}
    )
    assert r.status_code == 404 and stocked.numbers[0] not in r.text
    r = await browser.submit(
        "/console/stock",
        f"{batch_url}/void",
        [("code_ids", str(stocked.code_ids[0])), ("reason", "sabotage")],
    )
    assert r.status_code == 404
    r = await browser.submit("/console/stock", f"{batch_url}/export", {"reason": "stealing them"})
    assert r.status_code == 404
    assert (await _states(kernel, first.id, stocked.code_ids))[stocked.code_ids[0]] == "available"


# ------------------------------------------------------------------------------------------ import wizard

WIZARD = re.compile(r"^/console/imports/([0-9a-f-]{36})$")


async def _wait_import(browser, import_id: str) -> dict:
    body: dict = {}
    for _ in range(1200):  # a condition wait (up to two minutes), not a timing assertion
        r = await browser.get(f"/console/imports/{import_id}/progress")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        body = r.json()
        if body["finished"]:
            break
        await asyncio.sleep(0.1)
    return body


async def test_import_wizard_through_to_the_batch(browser, make_tenant, kernel, settings):
    tenant = await make_tenant(plan="growth")
    product_id = await new_product(kernel, tenant.id)
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    held = await stock_product(kernel, tenant.id, 1, product_id=product_id)
    numbers, secret_pins = plain_codes(6), pins(6)
    rows = [(n, p, "2031-12-31") for n, p in zip(numbers, secret_pins, strict=True)]
    rows += [(numbers[0], "pinAgain", ""), ("", "pinLonely", ""), (held.numbers[0], "pinHeld", "")]
    data = csv_bytes(["卡号", "卡密", "有效期"], rows, encoding="gbk")
    plaintext = [*numbers, *secret_pins, held.numbers[0]]

    form = await browser.get(f"/console/imports/new?product_id={product_id}")
    assert (
        form.status_code == 200
        and f'value="{product_id}" selected' in form.text
        and 'enctype="multipart/form-data"' in form.text
    )

    preview = await browser.submit(
        "/console/imports/new",
        "/console/imports/preview",
        {"encoding": ""},
        files={"file": ("供应商.csv", data, "text/csv")},
    )
    assert preview.status_code == 200, preview.text
    detected = preview.json()
    assert detected["columns"] == ["第 1 列 · 卡号", "第 2 列 · 卡密", "第 3 列 · 有效期"]
    assert (detected["number"], detected["pin"], detected["expires_at"]) == (0, 1, 2)
    assert detected["encoding"] == "gb18030" and detected["has_header"] is True
    assert not any(p in preview.text for p in plaintext)

    fields = {
        "product_id": str(product_id),
        "supplier": "华东供应商",
        "unit_cost": "8.50",
        "purchase_ref": "PO-2031",
        "expires_at": "2032-06-30",
        "notes": "十月采购",
        "encoding": "",
        "map_header": "auto",
        "map_number": "",
        "map_pin": "",
        "map_expires_at": "",
    }
    r = await browser.submit(
        "/console/imports/new", "/console/imports", fields, files={"file": ("供应商.csv", data, "text/csv")}
    )
    assert r.status_code == 303, text_of(r.text)[:1500]
    import_id = WIZARD.match(r.headers["location"]).group(1)

    report = await browser.get(f"/console/imports/{import_id}")
    text = text_of(report.text)
    assert report.status_code == 200 and "data-confirm-form" in report.text
    assert 'data-report="total">9<' in report.text and 'data-report="valid">6<' in report.text
    assert 'data-report="invalid">3<' in report.text
    assert "文件内重复: 1" in text and "已在库存中: 1" in text and "卡号为空: 1" in text
    assert "¥51.00" in text and "单价 ¥8.50" in text  # 6 valid × ¥8.50
    assert f"•••• {numbers[0][-4:]}" in report.text and "华东供应商" in text
    assert not any(p in report.text for p in plaintext)

    r = await browser.submit(
        f"/console/imports/{import_id}", f"/console/imports/{import_id}/confirm", {"mode": "all_or_nothing"}
    )
    assert r.status_code == 422 and "9 行中有 3 行存在问题，未导入任何卡密" in text_of(r.text)

    async with worker_for(settings):
        r = await browser.submit(
            f"/console/imports/{import_id}", f"/console/imports/{import_id}/confirm", {"mode": "valid_only"}
        )
        assert r.status_code == 303 and r.headers["location"] == f"/console/imports/{import_id}"
        page = await browser.get(f"/console/imports/{import_id}")
        if page.status_code == 200:  # the job may already be done, then the page goes on to the batch
            assert "data-progress" in page.text and 'role="progressbar"' in page.text
        done = await _wait_import(browser, import_id)
    assert done["status"] == "imported" and done["next"] == f"/console/imports/{import_id}", done
    assert done["done"] == done["total"] == 6 and done["percent"] == 100.0

    r = await browser.get(f"/console/imports/{import_id}")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/batches/")
    batch = await browser.get(r.headers["location"])
    text = text_of(batch.text)
    assert "已导入 6 个卡密" in text and 'data-level="available">6<' in batch.text
    assert "华东供应商" in text and "¥8.50" in text and "PO-2031" in text and "2032-06-30" in text
    assert "¥51.00" in text  # value at cost
    assert not any(p in batch.text for p in plaintext)
    assert len(await _audit(kernel, tenant.id, "batch.imported")) == 1


async def test_pasted_codes_and_generation_show_the_same_progress(browser, make_tenant, kernel, settings):
    tenant = await make_tenant(plan="growth")
    product_id = await new_product(kernel, tenant.id, code_format="number")
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    pasted = "\n".join(plain_codes(3))
    r = await browser.submit(
        "/console/imports/new",
        "/console/imports",
        {"product_id": str(product_id), "text": pasted, "unit_cost": "1"},
    )
    assert r.status_code == 303
    import_id = WIZARD.match(r.headers["location"]).group(1)
    assert "所有行均有效" in (await browser.get(r.headers["location"])).text

    r = await browser.submit(
        "/console/imports/generate",
        "/console/imports/generate",
        {"product_id": str(product_id), "count": "1000001"},
    )
    assert r.status_code == 422 and 'class="field field-error">\n  <label for="f-count"' in r.text
    r = await browser.submit(
        "/console/imports/generate",
        "/console/imports/generate",
        {"product_id": str(product_id), "count": "20", "pattern": "###"},
    )
    assert r.status_code == 422 and "16" in r.text
    async with worker_for(settings):
        r = await browser.submit(f"/console/imports/{import_id}", f"/console/imports/{import_id}/confirm", {})
        assert r.status_code == 303
        r = await browser.submit(
            "/console/imports/generate",
            "/console/imports/generate",
            {
                "product_id": str(product_id),
                "count": "40",
                "prefix": "VIP-",
                "unit_cost": "0.5",
                "supplier": "自制",
            },
        )
        assert r.status_code == 303, text_of(r.text)[:1500]
        generation_id = WIZARD.match(r.headers["location"]).group(1)
        page = await browser.get(r.headers["location"])
        if page.status_code == 200:
            assert "正在生成 40 个券码" in page.text and "data-progress" in page.text
        assert (await _wait_import(browser, import_id))["status"] == "imported"
        done = await _wait_import(browser, generation_id)
    assert done["status"] == "imported" and done["done"] == 40
    r = await browser.get(f"/console/imports/{generation_id}")
    batch = await browser.get(r.headers["location"])
    assert 'data-level="available">40<' in batch.text and "自动生成" in batch.text and "¥0.50" in batch.text
    stock = await browser.get(f"/console/products/{product_id}")
    assert 'data-level="available">43<' in stock.text


async def test_import_form_errors_and_roles(browser, new_browser, make_tenant, make_user, kernel):
    tenant = await make_tenant()
    product_id = await new_product(kernel, tenant.id)
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    base = {"product_id": str(product_id), "unit_cost": "", "map_header": "auto"}
    r = await browser.submit("/console/imports/new", "/console/imports", base)
    assert r.status_code == 422 and "请选择文件或粘贴卡密" in r.text
    r = await browser.submit(
        "/console/imports/new", "/console/imports", {**base, "text": "ABC123456----p1", "unit_cost": "1.005"}
    )
    assert r.status_code == 422 and "最多两位小数" in r.text and 'value="1.005"' in r.text
    r = await browser.submit(
        "/console/imports/new",
        "/console/imports",
        base,
        files={"file": ("codes.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "text/csv")},
    )
    assert r.status_code == 422 and "不是文本或电子表格" in text_of(r.text)
    r = await browser.submit(
        "/console/imports/new", "/console/imports", {**base, "text": "x", "map_pin": "1"}
    )
    assert r.status_code == 422 and "请为每个字段选择对应的列" in r.text
    r = await browser.submit(
        "/console/imports/new",
        "/console/imports",
        {**base, "text": "A1234567890----p1", "expires_at": "2001-01-01"},
    )
    assert r.status_code == 422 and "批次有效期已过" in r.text
    r = await browser.submit("/console/imports/new", "/console/imports/preview", {"text": ""})
    assert r.status_code == 422 and r.json()["error"] == "请选择文件或粘贴卡密。"
    r = await browser.submit(
        "/console/imports/new",
        "/console/imports",
        {
            **base,
            "text": "A1234567890,p1\nB1234567890,p2",
            "map_header": "no",
            "map_number": "1",
            "map_pin": "0",
            "map_expires_at": "-",
        },
    )
    assert r.status_code == 303
    import_id = WIZARD.match(r.headers["location"]).group(1)
    report = await browser.get(r.headers["location"])
    assert "第 2 列" in text_of(report.text) and "是卡密数据" in text_of(report.text)

    viewer = await make_user(tenant, "viewer")
    other = new_browser()
    await other.console_login(tenant.slug, viewer.email, viewer.password)
    assert (await other.get(f"/console/imports/new?product_id={product_id}")).status_code == 403
    r = await other.submit("/console/stock", "/console/imports", {**base, "text": "A1234567890----p1"})
    assert r.status_code == 403
    assert (await other.get("/console/imports/generate")).status_code == 403
    assert (await other.get(f"/console/imports/{import_id}")).status_code == 200  # reading is allowed
    r = await other.submit("/console/stock", f"/console/imports/{import_id}/confirm", {"mode": "valid_only"})
    assert r.status_code == 403
