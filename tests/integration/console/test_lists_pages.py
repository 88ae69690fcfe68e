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
