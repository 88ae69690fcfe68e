"""Console catalog pages: product list (filters, search), create and edit forms (yuan → fen, validation
errors shown next to the form), bundles, product detail, and the role guard."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select

from core.audit.models import AuditEvent
from core.catalog.models import Product
from core.db.context import tenant_context
from tests.conftest import unique
from tests.integration.console.conftest import text_of

PRODUCT = re.compile(r"^/console/products/([0-9a-f-]{36})$")


def product_fields(sku: str, **changes: str) -> dict[str, str]:
    fields = {
        "kind": "code",
        "code_format": "number_pin",
        "sku": sku,
        "status": "active",
        "name_zh": "爱奇艺黄金会员月卡",
        "name_en": "iQIYI Gold monthly",
        "brand": "爱奇艺",
        "category": "视频会员",
        "tags": "视频, 月卡，热门",
        "face_value": "19.90",
        "currency": "CNY",
        "validity_kind": "batch_expiry",
        "validity_date": "",
        "validity_days": "",
        "usage_rules": "在 App「我的 › 兑换码」中兑换",
        "provenance": "authorised_reseller",
        "max_uses": "",
        "low_stock_threshold": "20",
        "low_stock_days_cover": "",
        "near_expiry_days": "15",
    }
    fields.update(changes)
    return fields


async def _product(kernel, tenant_id, sku: str) -> Product | None:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            return (await db.execute(select(Product).where(Product.sku == sku))).scalar_one_or_none()


async def create(browser, sku: str, **changes: str) -> uuid.UUID:
    r = await browser.submit("/console/products/new", "/console/products", product_fields(sku, **changes))
    assert r.status_code == 303, text_of(r.text)[:2000]
    match = PRODUCT.match(r.headers["location"])
    assert match
    return uuid.UUID(match.group(1))


async def test_owner_creates_a_product_and_finds_it(browser, make_tenant, kernel):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    listing = await browser.get("/console/products")
    assert (
        listing.status_code == 200
        and "还没有商品" in listing.text
        and 'href="/console/products/new"' in listing.text
    )
    form = await browser.get("/console/products/new")
    assert 'value="CNY"' in form.text and 'value="30"' in form.text and "面值（元）" in form.text

    sku = unique("IQY-")
    product_id = await create(browser, sku)
    stored = await _product(kernel, tenant.id, sku)
    assert stored is not None and stored.id == product_id
    assert stored.face_value == 1990 and isinstance(stored.face_value, int)
    assert stored.tags == ["视频", "月卡", "热门"] and stored.code_format == "number_pin"
    assert stored.low_stock_threshold == 20 and stored.near_expiry_days == 15 and stored.max_uses is None

    detail = await browser.get(f"/console/products/{product_id}")
    text = text_of(detail.text)
    assert detail.status_code == 200 and f"商品 {sku} 已创建" in text
    assert (
        "¥19.90" in text and "授权经销商" in text and "卡号 + 卡密" in text and "可用量不超过 20 时" in text
    )
    assert "还没有卡密" in text and f"/console/imports/new?product_id={product_id}" in detail.text

    other = await create(
        browser,
        unique("GV-"),
        kind="stored_value",
        name_zh="礼品储值卡",
        name_en="Gift card",
        face_value="100",
        tags="",
        low_stock_threshold="",
    )
    listing = await browser.get("/console/products")
    assert f'data-product="{sku}"' in listing.text and "储值卡" in listing.text
    only = await browser.get("/console/products", params={"kind": "stored_value"})
    assert f"/console/products/{other}" in only.text and sku not in only.text
    found = await browser.get("/console/products", params={"q": "gold"})
    assert sku in found.text and f"/console/products/{other}" not in found.text
    none = await browser.get("/console/products", params={"q": "nothing-like-this", "status": "inactive"})
    assert "没有符合筛选条件的商品" in none.text

    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            actions = list(
                (
                    await db.execute(select(AuditEvent.action).where(AuditEvent.object_id == str(product_id)))
                ).scalars()
            )
    assert actions == ["product.created"]


async def test_form_errors_are_shown_and_nothing_is_created(browser, make_tenant, kernel):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    sku = unique("BAD-")

    r = await browser.submit(
        "/console/products/new", "/console/products", product_fields(sku, face_value="12.345")
    )
    assert r.status_code == 422 and "最多两位小数" in r.text
    assert (
        'value="12.345"' in r.text and 'value="爱奇艺黄金会员月卡"' in r.text
    )  # the form keeps what was typed
    assert re.search(r'class="field field-error">\s*<label for="f-face_value"', r.text)
    for bad in ("-1", "1e3", "abc", "0.001"):
        r = await browser.submit(
            "/console/products/new", "/console/products", product_fields(sku, face_value=bad)
        )
        assert r.status_code == 422, bad

    r = await browser.submit("/console/products/new", "/console/products", product_fields(sku, name_zh=""))
    assert r.status_code == 422 and "中文名称为必填项" in r.text
    assert re.search(r'class="field field-error">\s*<label for="f-name_zh"', r.text)

    r = await browser.submit(
        "/console/products/new", "/console/products", product_fields(sku, kind="reusable_code", max_uses="")
    )
    assert r.status_code == 422 and "使用次数" in r.text

    r = await browser.submit(
        "/console/products/new",
        "/console/products",
        product_fields(sku, validity_kind="fixed_date", validity_date="2001-01-01"),
    )
    assert r.status_code == 422 and "必须是将来的时间" in r.text
    r = await browser.submit(
        "/console/products/new",
        "/console/products",
        product_fields(sku, validity_kind="days_after_issue", validity_days="ninety"),
    )
    assert r.status_code == 422 and "请填写整数" in r.text

    r = await browser.submit(
        "/console/products/new",
        "/console/products",
        product_fields(sku, low_stock_threshold="5", low_stock_days_cover="7", currency="yen"),
    )
    assert r.status_code == 422 and "另有" in r.text  # every problem counted in one answer
    assert re.search(r'class="field field-error">\s*<label for="f-low_stock_days_cover"', r.text)
    assert re.search(r'class="field field-error">\s*<label for="f-currency"', r.text)
    assert await _product(kernel, tenant.id, sku) is None

    await create(browser, sku)
    r = await browser.submit("/console/products/new", "/console/products", product_fields(sku))
    assert r.status_code == 409 and f"SKU '{sku}' 已被其他商品使用" in text_of(r.text)

    await browser.get("/console/lang?to=en&next=/console")
    r = await browser.submit(
        "/console/products/new", "/console/products", product_fields(sku, face_value="1.234")
    )
    assert r.status_code == 422 and "at most two decimals" in r.text and "Face value (yuan)" in r.text


async def test_validity_date_is_the_end_of_that_day_in_the_tenant_timezone(browser, make_tenant, kernel):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    sku = unique("FIX-")
    product_id = await create(
        browser, sku, validity_kind="fixed_date", validity_date="2099-06-30", validity_days="12"
    )
    stored = await _product(kernel, tenant.id, sku)
    assert stored is not None and stored.validity_days is None  # the other rule's value is not sent
    assert stored.validity_date is not None
    assert (
        stored.validity_date.replace(tzinfo=None).isoformat() == "2099-06-30T16:00:00"
    )  # 24:00 Asia/Shanghai
    edit = await browser.get(f"/console/products/{product_id}/edit")
    assert 'value="2099-06-30"' in edit.text and 'value="19.90"' in edit.text
    assert "2099-06-30" in (await browser.get(f"/console/products/{product_id}")).text


async def test_edit_product_and_bundle(browser, make_tenant, kernel):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    a = await create(browser, unique("A-"), name_zh="咖啡券")
    b = await create(browser, unique("B-"), name_zh="蛋糕券")

    edit = await browser.get(f"/console/products/{a}/edit")
    assert edit.status_code == 200 and 'value="咖啡券"' in edit.text and "创建后不可更改" in edit.text
    fields = product_fields("", name_zh="大杯咖啡券", face_value="25", status="inactive")
    fields["sku"] = re.search(r'id="f-sku" name="sku" type="text" value="([^"]+)"', edit.text).group(1)
    fields["kind"] = "bundle"  # ignored: the kind is fixed
    r = await browser.submit(f"/console/products/{a}/edit", f"/console/products/{a}", fields)
    assert r.status_code == 303 and r.headers["location"] == f"/console/products/{a}"
    page = text_of((await browser.get(f"/console/products/{a}")).text)
    assert "大杯咖啡券" in page and "¥25.00" in page and "已下架" in page and "已保存" in page

    r = await browser.submit(
        f"/console/products/{a}/edit", f"/console/products/{a}", {**fields, "status": "bogus"}
    )
    assert r.status_code == 422 and "状态必须是" in r.text

    bundle_sku = unique("PACK-")
    items = [
        ("item_product", str(a)),
        ("item_quantity", "1"),
        ("item_product", str(b)),
        ("item_quantity", "2"),
        ("item_product", ""),
        ("item_quantity", ""),
    ]
    base = product_fields(
        bundle_sku, kind="bundle", name_zh="下午茶套餐", face_value="60", low_stock_threshold="9"
    )
    r = await browser.submit("/console/products/new", "/console/products", [*base.items(), *items[:2]])
    assert r.status_code == 422 and "至少包含两个商品" in r.text
    r = await browser.submit("/console/products/new", "/console/products", [*base.items(), *items])
    assert r.status_code == 303, text_of(r.text)[:1500]
    bundle_page = text_of((await browser.get(r.headers["location"])).text)
    assert (
        "组合权益包" in bundle_page
        and "大杯咖啡券" in bundle_page
        and "蛋糕券" in bundle_page
        and "× 2" in bundle_page
    )
    stored = await _product(kernel, tenant.id, bundle_sku)
    assert stored is not None and stored.low_stock_threshold is None  # a bundle has no stock of its own


async def test_viewer_reads_but_cannot_change_the_catalog(browser, new_browser, make_tenant, make_user):
    tenant = await make_tenant()
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    product_id = await create(browser, unique("V-"))
    viewer = await make_user(tenant, "viewer")
    other = new_browser()
    await other.console_login(tenant.slug, viewer.email, viewer.password)
    listing = await other.get("/console/products")
    assert listing.status_code == 200 and "/console/products/new" not in listing.text
    detail = await other.get(f"/console/products/{product_id}")
    assert (
        detail.status_code == 200 and "/edit" not in detail.text and "/console/imports/new" not in detail.text
    )
    assert (await other.get("/console/products/new")).status_code == 403
    r = await other.submit("/console/products", "/console/products", product_fields(unique("X-")))
    assert r.status_code == 403 and "您的角色无权执行此操作" in r.text
    r = await other.submit("/console/products", f"/console/products/{product_id}", product_fields("X"))
    assert r.status_code == 403
    assert (await other.get(f"/console/products/{uuid.uuid4()}")).status_code == 404


async def test_products_of_another_tenant_are_not_found(browser, new_browser, make_tenant):
    first, second = await make_tenant(), await make_tenant()
    await browser.console_login(first.slug, first.owner_email, first.owner_password)
    product_id = await create(browser, unique("MINE-"))
    intruder = new_browser()
    await intruder.console_login(second.slug, second.owner_email, second.owner_password)
    assert (await intruder.get(f"/console/products/{product_id}")).status_code == 404
    assert (await intruder.get(f"/console/products/{product_id}/edit")).status_code == 404
    r = await intruder.submit(
        "/console/products", f"/console/products/{product_id}", product_fields("HIJACK")
    )
    assert r.status_code == 404
    assert str(product_id) not in (await intruder.get("/console/products")).text
