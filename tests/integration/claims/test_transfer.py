"""Transfer (转赠): the giver loses the code, the recipient gets a link only their phone opens."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select, update

from core.audit.models import AuditEvent
from core.events.models import Event
from core.grants.models import GrantItem
from core.inventory.models import Code
from tests.integration.claims.helpers import Phone, Shop, path_of, random_phone, text_of

_ITEM = re.compile(r'data-item="([0-9a-f-]{36})"')


async def _holder(shop: Shop, phones: Any, quantity: int = 1) -> tuple[Phone, str, dict[str, Any], list[str]]:
    """A member who claimed a link: (their phone browser, their number, the link, the granted numbers)."""
    stocked = await shop.stock(quantity)
    grant = await shop.grant(stocked.product_id, quantity)
    link = await shop.claim_link(grant["id"])
    me, number = phones(), random_phone()
    assert (await me.submit(link["path"], f"{link['path']}/send", {"phone": number})).status_code == 303
    r = await me.submit(link["path"], f"{link['path']}/verify", {"code": await shop.otp_for(number)})
    assert r.status_code == 303
    return me, number, link, stocked.numbers


async def test_transfer_moves_the_code_to_the_recipient(shop: Shop, phones: Any) -> None:
    giver, giver_number, link, numbers = await _holder(shop, phones)
    mine = await giver.get("/h5/me")
    item_id = _ITEM.search(mine.text).group(1)  # type: ignore[union-attr]
    item_page = await giver.get(f"/h5/items/{item_id}")
    assert item_page.status_code == 200 and numbers[0] in item_page.text and 'id="transfer"' in item_page.text

    friend = random_phone()
    r = await giver.submit(f"/h5/items/{item_id}", f"/h5/items/{item_id}/transfer", {"phone": friend})
    assert r.status_code == 200, text_of(r.text)
    assert f"{friend[:3]}****{friend[-4:]}" in r.text

    # the giver no longer sees the code anywhere
    after = await giver.get(f"/h5/items/{item_id}")
    assert after.status_code == 200 and numbers[0] not in after.text and "已转赠" in after.text
    assert 'id="transfer"' not in after.text
    assert item_id not in (await giver.get("/h5/me")).text
    old_link = await giver.get(link["path"])
    assert numbers[0] not in old_link.text and "data-transferred" in old_link.text

    # the recipient got a link by SMS that only their phone opens
    url = await shop.link_sent_to(friend)
    new_path = path_of(url)
    stranger = phones()
    page = await stranger.get(new_path)
    assert page.status_code == 200 and 'name="phone"' not in page.text and f"{friend[-4:]}" in page.text
    assert (await stranger.submit(new_path, f"{new_path}/send", {"phone": giver_number})).status_code == 303
    assert not any("验证码" in t for t in (await shop.sms_to(giver_number))[1:]), "no code went to the giver"
    code = await shop.otp_for(friend)
    recipient = phones()
    r = await recipient.submit(new_path, f"{new_path}/verify", {"code": code})
    assert r.status_code == 303
    shown = await recipient.get(new_path)
    assert numbers[0] in shown.text and "<svg" in shown.text

    async def facts(db: Any) -> tuple[GrantItem, GrantItem, list[Event], list[AuditEvent]]:
        old = (await db.execute(select(GrantItem).where(GrantItem.id == uuid.UUID(item_id)))).scalar_one()
        new = (await db.execute(select(GrantItem).where(GrantItem.id == old.transferred_to_id))).scalar_one()
        events = list((await db.execute(select(Event).where(Event.type == "code.transferred"))).scalars())
        audits = list(
            (await db.execute(select(AuditEvent).where(AuditEvent.action == "code.transferred"))).scalars()
        )
        return old, new, events, audits

    old, new, events, audits = await shop.run(facts)
    assert old.status == "transferred" and new.status == "held" and new.code_id == old.code_id
    assert (
        new.member_id != old.member_id and new.grant_id == old.grant_id and new.expires_at == old.expires_at
    )
    assert len(events) == 1 and events[0].data["new_item_id"] == str(new.id)
    assert len(audits) == 1
    assert friend not in repr(events[0].data) and friend not in repr(audits[0].data)

    # the recipient can pass it on; the giver cannot transfer it again
    r = await giver.submit("/h5/me", f"/h5/items/{item_id}/transfer", {"phone": random_phone()})
    assert r.status_code == 409 and "只有未使用且未过期的券码可以转赠" in r.text
    r = await giver.http.post(f"/h5/items/{item_id}/transfer", data={"phone": random_phone()})
    assert r.status_code == 403, "no CSRF token, no transfer"


async def test_transfer_guards(shop: Shop, phones: Any) -> None:
    giver, giver_number, _link, _numbers = await _holder(shop, phones, quantity=2)
    ids = _ITEM.findall((await giver.get("/h5/me")).text)
    assert len(ids) == 2
    first, second = ids
    page, action = f"/h5/items/{first}", f"/h5/items/{first}/transfer"
    r = await giver.submit(page, action, {"phone": giver_number})
    assert r.status_code == 422 and "不能转赠给自己" in r.text
    r = await giver.submit(page, action, {"phone": "10086"})
    assert r.status_code == 422 and "手机号格式不正确" in r.text

    async def redeem(db: Any) -> None:
        item = (await db.execute(select(GrantItem).where(GrantItem.id == uuid.UUID(second)))).scalar_one()
        await db.execute(update(Code).where(Code.id == item.code_id).values(state="redeemed"))

    await shop.run(redeem)
    assert 'id="transfer"' not in (await giver.get(f"/h5/items/{second}")).text
    r = await giver.submit("/h5/me", f"/h5/items/{second}/transfer", {"phone": random_phone()})
    assert r.status_code == 409 and "只有未使用且未过期的券码可以转赠" in r.text
    mine = await giver.get("/h5/me")
    assert 'data-status="redeemed"' in mine.text and "已使用" in mine.text

    # another member cannot open or transfer someone else's item
    other, _n, _l, _nums = await _holder(shop, phones)
    assert (await other.get(page)).status_code == 404
    r = await other.submit("/h5/me", action, {"phone": random_phone()})
    assert r.status_code == 404


async def test_member_session_does_not_cross_tenants(shop: Shop, other_shop: Shop, phones: Any) -> None:
    mine, _number, _link, _numbers = await _holder(shop, phones)
    theirs, _n, _l, their_numbers = await _holder(other_shop, phones)
    their_item = _ITEM.search((await theirs.get("/h5/me")).text).group(1)  # type: ignore[union-attr]
    r = await mine.get(f"/h5/items/{their_item}")
    assert r.status_code == 404 and their_numbers[0] not in r.text
    r = await mine.submit("/h5/me", f"/h5/items/{their_item}/transfer", {"phone": random_phone()})
    assert r.status_code == 404
    assert their_item not in (await mine.get("/h5/me")).text
