"""The member pages' dead ends (issue 14): privacy consent before a phone is collected, a blocklisted
phone refused before any SMS, the code box kept during the resend cooldown, the code already claimed
linked at the campaign limit, sign-in by phone on "my codes", and the tenant's SMS signature and texts."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from core.errors import ValidationFailed
from core.members.consent import PRIVACY_VERSION
from core.members.models import MemberConsent
from core.notifications import branding
from core.risk import services as risk
from core.risk.models import RiskRefusal
from core.risk.schemas import BlockIn
from tenants.models import Tenant
from tests.integration.claims.helpers import Shop, random_phone, text_of

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def _campaign(shop: Shop, stock: int = 3, **fields: Any) -> dict[str, Any]:
    stocked = await shop.stock(stock)
    r = await shop.post("/api/v1/campaigns", {"name": "新人礼", "product_id": str(stocked.product_id), **fields})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _consents(shop: Shop) -> list[MemberConsent]:
    async def read(db: Any) -> list[MemberConsent]:
        return list((await db.execute(select(MemberConsent).order_by(MemberConsent.consented_at))).scalars())

    return list(await shop.run(read))


async def _slug(shop: Shop) -> str:
    async def read(db: Any) -> str:
        return str((await db.get(Tenant, shop.id)).slug)

    return str(await shop.run(read))


async def test_no_code_without_privacy_consent_and_the_consent_is_recorded(shop: Shop, phones: Any) -> None:
    campaign = await _campaign(shop)
    visitor = phones()
    page = await visitor.get(campaign["path"])
    assert 'name="consent"' in page.text and "《隐私政策》" in page.text and "/h5/privacy" in page.text
    number = random_phone()
    r = await visitor.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number, "consent": ""})
    assert r.status_code == 422 and "请先阅读并勾选同意《隐私政策》" in text_of(r.text)
    assert await shop.sms_to(number) == [] and await _consents(shop) == []

    r = await visitor.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number})
    assert r.status_code == 200 and 'name="code"' in r.text
    [consent] = await _consents(shop)
    assert consent.policy_version == PRIVACY_VERSION and consent.source == "campaign"
    assert consent.phone_masked == f"{number[:3]}****{number[-4:]}" and consent.consented_at is not None

    privacy = await visitor.get("/h5/privacy")  # the shop is known from the campaign page's cookie
    assert privacy.status_code == 200 and "隐私政策" in privacy.text and PRIVACY_VERSION in privacy.text


async def test_a_blocklisted_phone_gets_no_code_and_the_refusal_is_counted(shop: Shop, phones: Any) -> None:
    campaign = await _campaign(shop)
    number = random_phone()

    async def block(db: Any) -> None:
        await risk.add_block(db, shop.kernel, BlockIn(kind="phone", value=number))

    await shop.run(block)
    visitor = phones()
    r = await visitor.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number})
    assert r.status_code == 429 and "黑名单" in text_of(r.text)
    assert await shop.sms_to(number) == []

    async def refusals(db: Any) -> list[str]:
        return [r.reason for r in (await db.execute(select(RiskRefusal))).scalars()]

    assert "blocked_phone" in await shop.run(refusals)


async def test_the_code_box_stays_during_the_resend_cooldown(shop: Shop, phones: Any) -> None:
    campaign = await _campaign(shop)
    visitor = phones()
    number = random_phone()
    first = await visitor.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number})
    assert first.status_code == 200 and "秒后可重发" in text_of(first.text)
    again = await visitor.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number})
    assert again.status_code == 429 and 'name="code"' in again.text, text_of(again.text)
    assert re.search(r'data-countdown="([1-9]\d*)"', again.text) and "秒后可重发" in text_of(again.text)
    code = await shop.otp_for(number)  # the first code still works from the kept box
    r = await visitor.submit(campaign["path"], f"{campaign['path']}/claim", {"phone": number, "code": code})
    assert r.status_code == 303 and r.headers["location"].startswith("/h5/items/")


async def test_at_the_claim_limit_the_page_links_to_the_code_claimed_before(shop: Shop, phones: Any) -> None:
    campaign = await _campaign(shop, per_member_limit=1)
    number = random_phone()
    first = phones()
    await first.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number})
    r = await first.submit(
        campaign["path"], f"{campaign['path']}/claim", {"phone": number, "code": await shop.otp_for(number)}
    )
    claimed = r.headers["location"]

    other_device = phones()  # the same person on a new phone: no session yet
    await other_device.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number})
    r = await other_device.submit(
        campaign["path"], f"{campaign['path']}/claim", {"phone": number, "code": await shop.otp_for(number)}
    )
    assert r.status_code == 429 and "领取上限" in text_of(r.text)
    assert f'href="{claimed}"' in r.text and "data-claimed-link" in r.text
    shown = await other_device.get(claimed)  # the confirmed phone is signed in: the link opens the code
    assert shown.status_code == 200 and "<svg" in shown.text


async def test_my_codes_without_a_session_offers_sign_in_by_phone(shop: Shop, phones: Any) -> None:
    campaign = await _campaign(shop)
    number = random_phone()
    claimer = phones()
    await claimer.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number})
    await claimer.submit(
        campaign["path"], f"{campaign['path']}/claim", {"phone": number, "code": await shop.otp_for(number)}
    )
    slug = await _slug(shop)

    stranger = phones()
    bare = await stranger.get("/h5/me")
    assert bare.status_code == 401 and "领取链接" in text_of(bare.text)
    me = f"/h5/me?shop={slug}"
    page = await stranger.get(me)
    assert page.status_code == 200 and "登录查看我的券" in page.text and 'name="consent"' in page.text

    unknown = random_phone()  # not a member: the same answer, and no SMS
    r = await stranger.submit(me, f"/h5/login/{slug}/send", {"phone": unknown})
    assert r.status_code == 200 and 'name="code"' in r.text and await shop.sms_to(unknown) == []

    sms_before = len(await shop.sms_to(number))
    r = await stranger.submit(me, f"/h5/login/{slug}/send", {"phone": number})
    assert r.status_code == 200 and "data-login-sent" in r.text
    assert len(await shop.sms_to(number)) == sms_before + 1
    r = await stranger.submit(me, f"/h5/login/{slug}/verify", {"phone": number, "code": await shop.otp_for(number)})
    assert r.status_code == 303 and r.headers["location"] == "/h5/me"
    mine = await stranger.get("/h5/me")
    assert mine.status_code == 200 and "data-my-codes" in mine.text
    assert [c.source for c in await _consents(shop)].count("login") == 2


async def test_the_tenants_sms_signature_and_texts_are_used_and_checked(shop: Shop, phones: Any) -> None:
    async def bad(db: Any, templates: dict[str, str], signature: str = "") -> str:
        try:
            await branding.save_branding(db, "", signature, templates)
        except ValidationFailed as exc:
            return f"{exc.errors[0].field}: {exc.detail('zh-CN')}"
        raise AssertionError("accepted")

    assert "未知的占位符 {pin}" in await shop.run(lambda db: bad(db, {"claim_otp": "码 {code} {pin}"}))
    assert "必须包含 {code}" in await shop.run(lambda db: bad(db, {"claim_otp": "您好"}))
    assert "template_claim_otp" in await shop.run(lambda db: bad(db, {"claim_otp": "{code}" + "长" * 300}))
    assert "sms_signature" in await shop.run(lambda db: bad(db, {}, signature="超长的短信签名超过十二个字了吧"))

    async def save(db: Any) -> None:
        await branding.save_branding(db, "小咖啡", "小咖啡", {"claim_otp": "验证码为 {code}，{minutes} 分钟有效"})

    await shop.run(save)
    campaign = await _campaign(shop)
    visitor = phones()
    number = random_phone()
    r = await visitor.submit(campaign["path"], f"{campaign['path']}/send", {"phone": number})
    assert "小咖啡" in r.text  # the display name in the H5 header
    [text] = await shop.sms_to(number)
    assert text.startswith("【小咖啡】验证码为 ") and text.endswith("5 分钟有效")


async def test_the_logo_is_checked_stored_and_served_with_cache_headers(shop: Shop, phones: Any) -> None:
    async def refused(db: Any, data: bytes) -> str:
        try:
            await branding.save_logo(db, data, "image/gif")
        except ValidationFailed as exc:
            return exc.detail("zh-CN")
        raise AssertionError("accepted")

    assert "仅支持 PNG、JPEG 或 WebP" in await shop.run(lambda db: refused(db, b"GIF89a" + b"\x00" * 10))
    assert "不能超过 200 KB" in await shop.run(lambda db: refused(db, PNG + b"\x00" * 205_000))
    digest = await shop.run(lambda db: branding.save_logo(db, PNG, "image/png"))
    campaign = await _campaign(shop)
    page = await phones().get(campaign["path"])
    match = re.search(r'<img class="logo" src="(/h5/logo/[^"]+)"', page.text)
    assert match and digest[:16] in match.group(1)
    logo = await phones().get(match.group(1))
    assert logo.status_code == 200 and logo.content == PNG and logo.headers["content-type"] == "image/png"
    assert "immutable" in logo.headers["cache-control"] and logo.headers["etag"]
    assert (await phones().get(match.group(1)[:-4] + "0000")).status_code == 404
