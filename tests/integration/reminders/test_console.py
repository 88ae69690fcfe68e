"""The console "Expiry reminders" page: the setting form (save, readable errors), the reminders sent (masked,
paged, one query), roles, and tenant isolation (another tenant's cursor is a 404)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import event, func, select

from admin_ui import reminders_pages
from core.audit.models import AuditEvent
from core.db.context import tenant_context
from core.reminders.services import ReminderSettingIn, get_setting, list_sent, set_setting
from tests.integration.console.conftest import text_of
from tests.integration.reminders.conftest import DAY, hold, phone, run

PAGE_URL = "/console/reminders"
SAVE_URL = "/console/reminders/settings"
ROW = re.compile(r'data-reminder="([0-9a-f-]{36})"')
OLDER = re.compile(r'href="/console/reminders\?cursor=([0-9a-f-]{36})"')


async def login(browser: Any, tenant: Any, user: Any) -> None:
    r = await browser.console_login(tenant.slug, user.email, user.password)
    assert r.status_code == 303, r.text


async def setting_of(kernel: Any, tenant_id: uuid.UUID) -> tuple[int, bool]:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            s = await get_setting(db)
    return s.days_before, s.enabled


async def test_owner_sees_and_changes_the_setting(browser, kernel, make_tenant, make_user):
    tenant = await make_tenant()
    owner = await make_user(tenant, "owner")
    await login(browser, tenant, owner)
    page = await browser.get(PAGE_URL)
    assert page.status_code == 200, page.text
    assert 'href="/console/reminders" data-nav="reminders" aria-current="page"' in page.text  # in the menu, marked current
    assert 'name="days_before"' in page.text and 'value="3"' in page.text
    assert re.search(r'name="enabled" value="1" checked', page.text)
    text = text_of(page.text)
    assert "到期提醒" in text and "已开启：到期前 3 天提醒" in text and "还没有发送过提醒" in text

    r = await browser.submit(PAGE_URL, SAVE_URL, {"days_before": "7", "enabled": "1"})
    assert r.status_code == 303 and r.headers["location"] == PAGE_URL
    page = await browser.get(PAGE_URL)
    assert "已保存：会员将在卡券到期前 7 天收到提醒" in text_of(page.text)
    assert 'value="7"' in page.text and 'data-reminders-state="on"' in page.text
    assert await setting_of(kernel, tenant.id) == (7, True)

    r = await browser.submit(PAGE_URL, SAVE_URL, {"days_before": "7"})  # the box unticked
    assert r.status_code == 303
    page = await browser.get(PAGE_URL)
    assert "已保存：到期提醒已关闭" in text_of(page.text) and 'data-reminders-state="off"' in page.text
    assert not re.search(r'name="enabled" value="1" checked', page.text)
    assert await setting_of(kernel, tenant.id) == (7, False)

    await browser.get(f"/console/lang?to=en&next={PAGE_URL}")
    r = await browser.submit(PAGE_URL, SAVE_URL, {"days_before": "1", "enabled": "1"})
    page = await browser.get(PAGE_URL)
    assert "Saved: members are reminded 1 day before their codes expire." in text_of(page.text)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            audited = await db.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "reminder_settings.updated")
            )
    assert audited == 3


@pytest.mark.parametrize("bad", ["0", "91", "abc", "", "2.5", "-3"])
async def test_bad_days_show_a_readable_error_and_keep_the_value(
    browser, kernel, make_tenant, make_user, bad
):
    tenant = await make_tenant()
    owner = await make_user(tenant, "owner")
    await login(browser, tenant, owner)
    r = await browser.submit(PAGE_URL, SAVE_URL, {"days_before": bad, "enabled": "1"})
    assert r.status_code == 422
    assert "请输入 1 到 90 之间的整数天数" in text_of(r.text)
    assert 'class="field field-error"' in r.text and 'aria-invalid="true"' in r.text
    assert f'name="days_before" type="number" min="1" max="90" inputmode="numeric" value="{bad}"' in r.text
    assert "<form" in r.text and "Traceback" not in r.text
    assert await setting_of(kernel, tenant.id) == (3, True)  # nothing saved


async def test_the_error_is_in_english_for_english_users(browser, make_tenant, make_user):
    tenant = await make_tenant()
    owner = await make_user(tenant, "owner")
    await login(browser, tenant, owner)
    await browser.get(f"/console/lang?to=en&next={PAGE_URL}")
    r = await browser.submit(PAGE_URL, SAVE_URL, {"days_before": "120", "enabled": "1"})
    assert r.status_code == 422 and "Enter a whole number of days from 1 to 90." in text_of(r.text)


async def test_reminders_sent_are_listed_masked_newest_first_and_paged(
    browser, kernel, make_tenant, make_user, monkeypatch
):
    tenant = await make_tenant()
    owner = await make_user(tenant, "owner")
    number = phone()
    by_phone = await hold(kernel, tenant.id, 2 * DAY, quantity=2, phone=number, name="张三")
    by_mail = await hold(kernel, tenant.id, DAY, email="li.si@example.com")
    later = await hold(kernel, tenant.id, 20 * DAY, phone=phone())  # outside the window: not reminded
    first = await run(kernel, tenant.id)
    assert first.items_reminded == 3
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            await set_setting(db, ReminderSettingIn(days_before=30))
    second = await run(kernel, tenant.id)  # a later run: its reminders are listed first
    assert second.items_reminded == 1

    await login(browser, tenant, owner)
    page = await browser.get(PAGE_URL)
    assert page.status_code == 200
    rows = ROW.findall(page.text)
    assert rows[0] == str(later.item_ids[0])
    assert set(rows) == {*map(str, by_phone.item_ids), *map(str, by_mail.item_ids), str(later.item_ids[0])}
    text = text_of(page.text)
    assert f"{number[:3]}****{number[-4:]}" in text and "l***@example.com" in text
    assert number not in page.text and "li.si@example.com" not in page.text  # contacts only masked
    assert "张三" in text and "测试券" in text and "持有中" in text and "短信" in text
    assert f'href="/console/members/{by_phone.member_id}"' in page.text
    assert not OLDER.search(page.text)

    monkeypatch.setattr(reminders_pages, "PAGE", 2)
    seen: list[str] = []
    url = PAGE_URL
    for _ in range(5):
        page = await browser.get(url)
        assert page.status_code == 200
        found = ROW.findall(page.text)
        assert 0 < len(found) <= 2
        seen += found
        older = OLDER.search(page.text)
        if older is None:
            break
        url = f"{PAGE_URL}?cursor={older.group(1)}"
    assert seen == rows  # every reminder once, in the same order as the single page


async def test_the_list_is_one_query_whatever_its_length(kernel, make_tenant):
    tenant = await make_tenant()
    first = await hold(kernel, tenant.id, DAY, phone=phone())
    await run(kernel, tenant.id)

    async def listed(after: uuid.UUID | None = None) -> tuple[int, int]:
        """(reminders listed, statements the session ran for them)."""
        statements: list[Any] = []
        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                event.listen(db.sync_session, "do_orm_execute", statements.append)
                page = await list_sent(db, after=after, limit=50)
        return len(page.items), len(statements)

    assert await listed() == (1, 1)
    for _ in range(4):
        await hold(kernel, tenant.id, DAY, quantity=2, phone=phone())
    await run(kernel, tenant.id)
    assert await listed() == (9, 1)  # no query per row
    assert await listed(after=first.item_ids[0]) == (0, 2)  # the cursor's look-up, then the page


async def test_roles(new_browser, kernel, make_tenant, make_user):
    tenant = await make_tenant()
    users = {role: await make_user(tenant, role) for role in ("admin", "operator", "finance", "viewer")}
    browsers = {role: new_browser() for role in users}
    for role, user in users.items():
        await login(browsers[role], tenant, user)

    for role in ("finance", "viewer"):
        assert (await browsers[role].get(PAGE_URL)).status_code == 403, role
        home = await browsers[role].get("/console")
        assert 'href="/console/reminders"' not in home.text, role
        r = await browsers[role].submit("/console", SAVE_URL, {"days_before": "9", "enabled": "1"})
        assert r.status_code == 403, role

    operator = await browsers["operator"].get(PAGE_URL)
    assert operator.status_code == 200 and 'href="/console/reminders"' in operator.text
    assert "data-read-only" in operator.text and "data-save-reminders" not in operator.text
    assert re.search(r'name="days_before"[^>]* disabled', operator.text)
    r = await browsers["operator"].submit(PAGE_URL, SAVE_URL, {"days_before": "9", "enabled": "1"})
    assert r.status_code == 403
    assert await setting_of(kernel, tenant.id) == (3, True)

    admin = await browsers["admin"].get(PAGE_URL)
    assert "data-save-reminders" in admin.text and "data-read-only" not in admin.text
    r = await browsers["admin"].submit(PAGE_URL, SAVE_URL, {"days_before": "9", "enabled": "1"})
    assert r.status_code == 303
    assert await setting_of(kernel, tenant.id) == (9, True)


async def test_tenants_see_only_their_own_reminders_and_settings(new_browser, kernel, make_tenant, make_user):
    a, b = await make_tenant(), await make_tenant()
    owner_a, owner_b = await make_user(a, "owner"), await make_user(b, "owner")
    held_a = await hold(kernel, a.id, DAY, quantity=2, phone=phone())
    held_b = await hold(kernel, b.id, DAY, phone=phone())
    await run(kernel, a.id)
    await run(kernel, b.id)
    browser_a, browser_b = new_browser(), new_browser()
    await login(browser_a, a, owner_a)
    await login(browser_b, b, owner_b)

    page_b = await browser_b.get(PAGE_URL)
    assert ROW.findall(page_b.text) == [str(held_b.item_ids[0])]
    for item in held_a.item_ids:  # A's reminder as B's cursor: not found, not B's first page
        r = await browser_b.get(f"{PAGE_URL}?cursor={item}")
        assert r.status_code == 404 and str(item) not in r.text
    assert (await browser_b.get(f"{PAGE_URL}?cursor={uuid.uuid4()}")).status_code == 404
    assert (await browser_b.get(f"{PAGE_URL}?cursor=not-a-uuid")).status_code == 400

    r = await browser_b.submit(PAGE_URL, SAVE_URL, {"days_before": "30"})
    assert r.status_code == 303
    assert await setting_of(kernel, b.id) == (30, False)
    assert await setting_of(kernel, a.id) == (3, True)  # A's setting untouched
    page_a = await browser_a.get(PAGE_URL)
    assert set(ROW.findall(page_a.text)) == set(map(str, held_a.item_ids))
    assert 'value="3"' in page_a.text and 'data-reminders-state="on"' in page_a.text
