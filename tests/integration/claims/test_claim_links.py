"""Claim links: creation over the API, binding by one-time code, tampering, expiry, reuse, forwarding, lockout."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
from sqlalchemy import select, text, update

from core.claims.models import ClaimLink, OtpChallenge
from core.claims.tokens import sign
from core.db.base import utcnow
from core.events.models import Event
from core.grants.models import GrantItem
from core.jobs.models import OutboxMessage
from core.members.models import Member
from tests.integration.claims.helpers import Phone, Shop, random_phone, text_of


async def _granted_link(
    shop: Shop, quantity: int = 1, **who: Any
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    stocked = await shop.stock(quantity + 2, usage_rules="到店出示券码即可使用")
    grant = await shop.grant(stocked.product_id, quantity, **who)
    return stocked, grant, await shop.claim_link(grant["id"])


async def _bind(shop: Shop, phone: Phone, link_path: str, number: str) -> httpx.Response:
    r = await phone.submit(link_path, f"{link_path}/send", {"phone": number})
    assert r.status_code == 303, text_of(r.text)
    code = await shop.otp_for(number)
    return await phone.submit(link_path, f"{link_path}/verify", {"code": code})


async def test_create_link_defaults_and_bounds(shop: Shop) -> None:
    stocked = await shop.stock(2)
    grant = await shop.grant(stocked.product_id)
    before = utcnow()
    link = await shop.claim_link(grant["id"])
    assert link["path"].startswith("/h5/c/") and link["url"].endswith(link["path"])
    expires = dt.datetime.fromisoformat(link["expires_at"])
    assert (
        dt.timedelta(days=7) - dt.timedelta(minutes=1) < expires - before <= dt.timedelta(days=7, minutes=1)
    )
    assert link["status"] == "open" and link["phone_masked"] is None

    short = await shop.claim_link(grant["id"], expires_in_seconds=600)
    assert dt.datetime.fromisoformat(short["expires_at"]) - before < dt.timedelta(minutes=11)
    for bad in (0, 10, 10**9):
        r = await shop.post(f"/api/v1/grants/{grant['id']}/claim-link", {"expires_in_seconds": bad})
        assert r.status_code == 422 and r.json()["code"] == "validation_failed"
    r = await shop.post(f"/api/v1/grants/{grant['id']}/claim-link", {"unknown": 1})
    assert r.status_code in (400, 422)
    r = await shop.post(f"/api/v1/grants/{uuid.uuid4()}/claim-link")
    assert r.status_code == 404 and r.json()["code"] == "grant_not_found"


async def test_claim_link_needs_write_scope(shop: Shop, make_api_client: Any, client: Any) -> None:
    stocked = await shop.stock(1)
    grant = await shop.grant(stocked.product_id)
    from tests.conftest import TenantHandle

    reader = await make_api_client(TenantHandle(shop.id, "", "", "", ""), ["grants:read"])
    r = await client.post(f"/api/v1/grants/{grant['id']}/claim-link", headers=reader.headers)
    assert r.status_code == 403 and r.json()["code"] == "insufficient_scope"


async def test_first_open_binds_and_shows_codes(shop: Shop, phones: Any) -> None:
    stocked, grant, link = await _granted_link(shop, quantity=2)
    me = phones()
    page = await me.get(link["path"])
    assert page.status_code == 200 and 'name="phone"' in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    number = random_phone()
    r = await _bind(shop, me, link["path"], number)
    assert r.status_code == 303 and r.headers["location"] == link["path"]
    cookie = r.headers["set-cookie"]
    assert "kq_member=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Path=/h5" in cookie and "Max-Age=7200" in cookie

    codes = await me.get(link["path"])
    assert codes.status_code == 200, text_of(codes.text)
    assert codes.headers["cache-control"] == "no-store"
    shown = [n for n in stocked.numbers if n in codes.text]
    assert len(shown) == 2, "both granted numbers are on the page"
    assert codes.text.count("<svg") == 2 and 'class="qr"' in codes.text
    assert "卡密" in codes.text and "到店出示券码即可使用" in codes.text and "有效期" in codes.text

    async def facts(db: Any) -> tuple[Any, Any, Any]:
        row = (await db.execute(select(ClaimLink).where(ClaimLink.id == uuid.UUID(link["id"])))).scalar_one()
        member = (await db.execute(select(Member).where(Member.id == row.member_id))).scalar_one()
        items = list(
            (
                await db.execute(select(GrantItem).where(GrantItem.grant_id == uuid.UUID(grant["id"])))
            ).scalars()
        )
        events = list((await db.execute(select(Event).where(Event.type == "code.claimed"))).scalars())
        return row, member, (items, events)

    row, member, (items, events) = await shop.run(facts)
    assert (
        row.status == "bound" and row.phone_masked == member.phone_masked == f"{number[:3]}****{number[-4:]}"
    )
    assert {i.member_id for i in items} == {member.id}
    assert all(i.revealed_at is not None for i in items), (
        "shown codes are marked: they never go back to stock"
    )
    assert len(events) == 1 and events[0].data["link_id"] == link["id"]

    # reuse in the binder's session keeps working; "my codes" lists both units
    again = await me.get(link["path"])
    assert all(n in again.text for n in shown)
    mine = await me.get("/h5/me")
    assert mine.status_code == 200 and mine.text.count("data-item=") == 2


async def test_forwarded_link_is_useless_to_another_phone(shop: Shop, phones: Any) -> None:
    stocked, _grant, link = await _granted_link(shop)
    owner, stranger = phones(), phones()
    number = random_phone()
    assert (await _bind(shop, owner, link["path"], number)).status_code == 303
    owner_page = (await owner.get(link["path"])).text
    shown = next(n for n in stocked.numbers if n in owner_page)

    page = await stranger.get(link["path"])
    assert page.status_code == 200 and shown not in page.text
    assert 'name="phone"' not in page.text and f"{number[:3]}****{number[-4:]}" in page.text
    # asking for a code with another phone still sends it to the bound phone only
    other = random_phone()
    r = await stranger.submit(link["path"], f"{link['path']}/send", {"phone": other})
    assert r.status_code == 303
    assert await shop.sms_to(other) == []
    bound_code = await shop.otp_for(number)
    wrong = "000000" if bound_code != "000000" else "111111"
    r = await stranger.submit(link["path"], f"{link['path']}/verify", {"code": wrong})
    assert r.status_code == 422 and shown not in r.text and "kq_member" not in r.headers.get("set-cookie", "")
    assert shown not in (await stranger.get(link["path"])).text
    # the bound phone's own code (the holder on a second device) opens it
    r = await stranger.submit(link["path"], f"{link['path']}/verify", {"code": bound_code})
    assert r.status_code == 303
    assert shown in (await stranger.get(link["path"])).text


async def test_tampered_and_foreign_tokens_are_refused(shop: Shop, other_shop: Shop, phones: Any) -> None:
    _stocked, _grant, link = await _granted_link(shop)
    visitor = phones()
    token = link["path"].rsplit("/", 1)[1]
    payload, signature = token.split(".")
    flipped = payload[:-3] + ("A" if payload[-3] != "A" else "B") + payload[-2:]
    for bad in (f"{flipped}.{signature}", f"{payload}.{signature[::-1]}", "not-a-token", payload, "a" * 300):
        r = await visitor.get(f"/h5/c/{bad}")
        assert r.status_code == 400, bad
        assert "链接无效" in r.text

    # a genuine signature of another tenant over this link id does not open it
    async def forge(db: Any) -> str:
        cipher = await other_shop.kernel.keys.cipher(db)
        return sign(cipher, "claim_link", uuid.UUID(link["id"]), utcnow() + dt.timedelta(days=1))

    r = await visitor.get(f"/h5/c/{await other_shop.run(forge)}")
    assert r.status_code == 400

    # a campaign or session token of the same tenant is not a claim link
    async def session_token(db: Any) -> str:
        return sign(await shop.kernel.keys.cipher(db), "member_session", uuid.UUID(link["id"]))

    r = await visitor.get(f"/h5/c/{await shop.run(session_token)}")
    assert r.status_code == 400
    # forms on a forged link do nothing
    r = await visitor.http.post(f"/h5/c/{flipped}.{signature}/send", data={"phone": random_phone()})
    assert r.status_code in (400, 403)


async def test_expired_link(shop: Shop, phones: Any) -> None:
    stocked = await shop.stock(1)
    grant = await shop.grant(stocked.product_id)
    link = await shop.claim_link(grant["id"], expires_in_seconds=300)
    visitor = phones()
    assert (await visitor.get(link["path"])).status_code == 200

    async def expire(db: Any) -> None:
        await db.execute(
            update(ClaimLink)
            .where(ClaimLink.id == uuid.UUID(link["id"]))
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )

    await shop.run(expire)
    r = await visitor.get(link["path"])
    assert r.status_code == 410 and "链接已过期" in r.text
    r = await visitor.http.post(f"{link['path']}/send", data={"phone": random_phone()})
    assert r.status_code in (403, 410)

    # the expiry signed into the token counts too, whatever the row says
    async def token_expired(db: Any) -> str:
        await db.execute(
            update(ClaimLink)
            .where(ClaimLink.id == uuid.UUID(link["id"]))
            .values(expires_at=utcnow() + dt.timedelta(days=1))
        )
        return sign(
            await shop.kernel.keys.cipher(db),
            "claim_link",
            uuid.UUID(link["id"]),
            utcnow() - dt.timedelta(seconds=5),
        )

    r = await visitor.get(f"/h5/c/{await shop.run(token_expired)}")
    assert r.status_code == 410


async def test_otp_lockout_and_storage(shop: Shop, phones: Any) -> None:
    stocked, _grant, link = await _granted_link(shop)
    visitor = phones()
    number = random_phone()
    assert (await visitor.submit(link["path"], f"{link['path']}/send", {"phone": number})).status_code == 303
    code = await shop.otp_for(number)
    wrong = "000000" if code != "000000" else "111111"
    for attempt in range(1, 5):
        r = await visitor.submit(link["path"], f"{link['path']}/verify", {"code": wrong})
        assert r.status_code == 422 and f"还可尝试 {5 - attempt} 次" in r.text
    r = await visitor.submit(link["path"], f"{link['path']}/verify", {"code": wrong})
    assert r.status_code == 423
    page = await visitor.get(link["path"])
    assert page.status_code == 423 and "data-locked" in page.text and "15 分钟" in page.text
    # while locked even the right code and a new code are refused
    r = await visitor.http.post(f"{link['path']}/verify", data={"code": code})
    assert r.status_code in (403, 423)
    assert not any(n in r.text for n in stocked.numbers)

    async def state(db: Any) -> tuple[OtpChallenge, list[Any], list[Any]]:
        ch = (await db.execute(select(OtpChallenge).where(OtpChallenge.subject == link["id"]))).scalar_one()
        raw = (await db.execute(text("select * from otp_challenges"))).all()
        outbox = await db.execute(
            select(OutboxMessage.payload).where(OutboxMessage.actor == "send_member_sms")
        )
        return ch, raw, list(outbox.scalars())

    ch, raw, payloads = await shop.run(state)
    assert ch.locked_until is not None and ch.locked_until - utcnow() > dt.timedelta(minutes=14)
    dump = repr(raw) + repr(payloads)
    assert code not in dump and number not in dump and number[-8:] not in dump, (
        "no plaintext code or phone at rest"
    )

    # after the lock runs out a fresh code works
    async def unlock(db: Any) -> None:
        await db.execute(
            update(OtpChallenge)
            .where(OtpChallenge.id == ch.id)
            .values(locked_until=utcnow() - dt.timedelta(seconds=1))
        )

    await shop.run(unlock)
    assert (await visitor.submit(link["path"], f"{link['path']}/send", {"phone": number})).status_code == 303
    fresh = await shop.otp_for(number)
    r = await visitor.submit(link["path"], f"{link['path']}/verify", {"code": fresh})
    assert r.status_code == 303


async def test_otp_expiry_resend_throttle_and_bad_phone(shop: Shop, phones: Any) -> None:
    _stocked, _grant, link = await _granted_link(shop)
    visitor = phones()
    r = await visitor.submit(link["path"], f"{link['path']}/send", {"phone": "12345"})
    assert r.status_code == 422 and "手机号格式不正确" in r.text
    number = random_phone()
    assert (await visitor.submit(link["path"], f"{link['path']}/send", {"phone": number})).status_code == 303
    r = await visitor.submit(link["path"], f"{link['path']}/send", {"phone": number})
    assert r.status_code == 429 and "秒后再获取" in r.text
    code = await shop.otp_for(number)

    async def age(db: Any) -> None:
        await db.execute(
            update(OtpChallenge)
            .where(OtpChallenge.subject == link["id"])
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )

    await shop.run(age)
    r = await visitor.submit(link["path"], f"{link['path']}/verify", {"code": code})
    assert r.status_code == 422 and "重新获取" in r.text


async def test_grant_to_a_phone_makes_a_link_only_that_phone_opens(shop: Shop, phones: Any) -> None:
    number = random_phone()
    stocked, _grant, link = await _granted_link(shop, phone=number)
    assert link["phone_masked"] == f"{number[:3]}****{number[-4:]}"
    visitor = phones()
    page = await visitor.get(link["path"])
    assert 'name="phone"' not in page.text and link["phone_masked"] in page.text
    r = await visitor.submit(link["path"], f"{link['path']}/send", {})
    assert r.status_code == 303
    r = await visitor.submit(link["path"], f"{link['path']}/verify", {"code": await shop.otp_for(number)})
    assert r.status_code == 303
    codes = (await visitor.get(link["path"])).text
    assert any(n in codes for n in stocked.numbers)


async def test_claim_link_isolation(shop: Shop, other_shop: Shop) -> None:
    stocked = await shop.stock(1)
    grant = await shop.grant(stocked.product_id)
    r = await other_shop.post(f"/api/v1/grants/{grant['id']}/claim-link")
    assert r.status_code == 404 and r.json()["code"] == "grant_not_found"


async def test_me_without_session(phones: Any) -> None:
    r = await phones().get("/h5/me")
    assert r.status_code == 401 and "领取链接" in r.text
    r = await phones().get(f"/h5/items/{uuid.uuid4()}")
    assert r.status_code == 401
