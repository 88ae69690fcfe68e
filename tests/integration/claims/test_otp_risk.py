"""Wrong one-time codes feed the risk engine's failure velocity (action ``claim``, per IP and device): a guesser
spreading attempts over many links or phones from one IP or device is locked out everywhere in the tenant,
while other visitors are not."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from core.campaigns import services
from core.claims.otp import OtpInvalid
from core.db.context import tenant_context
from core.errors import DomainError
from core.members.consent import PRIVACY_VERSION
from core.risk import engine
from core.risk.models import RiskLockout, RiskRefusal
from tenants.models import Tenant
from tests.integration.claims.helpers import Phone, Shop, random_phone, text_of
from tests.integration.risk.helpers import set_rules

GUESSER_IP = "203.0.113.7"
LOCKED = "失败次数过多"


def _wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


async def _link(shop: Shop) -> tuple[Any, dict[str, Any]]:
    stocked = await shop.stock(1)
    grant = await shop.grant(stocked.product_id)
    return stocked, await shop.claim_link(grant["id"])


async def _send(phone: Phone, link: dict[str, Any], number: str) -> Any:
    return await phone.submit(link["path"], f"{link['path']}/send", {"phone": number})


async def _verify(phone: Phone, link: dict[str, Any], code: str) -> Any:
    r = await phone.submit(link["path"], f"{link['path']}/verify", {"code": code})
    await engine.settle()  # on SQLite the failure is written right after the request's transaction
    return r


async def _facts(shop: Shop) -> tuple[list[RiskLockout], list[RiskRefusal]]:
    async def read(db: Any) -> tuple[list[RiskLockout], list[RiskRefusal]]:
        lockouts = list((await db.execute(select(RiskLockout))).scalars())
        refusals = list((await db.execute(select(RiskRefusal))).scalars())
        return lockouts, refusals

    result: tuple[list[RiskLockout], list[RiskRefusal]] = await shop.run(read)
    return result


async def test_wrong_link_codes_lock_the_ip_and_device_out_of_every_link(shop: Shop, phones: Any) -> None:
    await set_rules(shop.kernel, shop.id, failure_limit=3, window_minutes=10, lockout_minutes=15)
    stocked_a, link_a = await _link(shop)
    stocked_b, link_b = await _link(shop)
    guesser = phones(GUESSER_IP)
    number_a = random_phone()
    assert (await _send(guesser, link_a, number_a)).status_code == 303
    code_a = await shop.otp_for(number_a)
    for left in (4, 3):
        r = await _verify(guesser, link_a, _wrong(code_a))
        assert r.status_code == 422 and f"还可尝试 {left} 次" in text_of(r.text)
    r = await _verify(guesser, link_a, _wrong(code_a))  # the third failure of this IP: locked out
    assert r.status_code == 422

    # even the right code is refused now, with the lockout's reason, and nothing is shown
    r = await _verify(guesser, link_a, code_a)
    assert r.status_code == 429 and LOCKED in text_of(r.text), text_of(r.text)
    assert not any(n in r.text for n in stocked_a.numbers) and "kq_member" not in r.headers.get(
        "set-cookie", ""
    )

    # another link, another phone, from the same IP: no code is sent and none is checked
    number_b = random_phone()
    r = await _send(guesser, link_b, number_b)
    assert r.status_code == 429 and LOCKED in text_of(r.text)
    assert await shop.sms_to(number_b) == []
    # the same device from another IP is locked out as well
    device = guesser.http.cookies.get("kq_device")
    assert device
    roaming = phones("198.51.100.77", headers={"x-device-id": device})
    r = await _send(roaming, link_b, number_b)
    assert r.status_code == 429 and LOCKED in text_of(r.text)

    # a visitor on another IP and device opens link B normally
    neighbour = phones("198.51.100.9")
    assert (await _send(neighbour, link_b, number_b)).status_code == 303
    r = await _verify(neighbour, link_b, await shop.otp_for(number_b))
    assert r.status_code == 303
    shown = (await neighbour.get(link_b["path"])).text
    assert any(n in shown for n in stocked_b.numbers)

    lockouts, refusals = await _facts(shop)
    assert {(lo.action, lo.dimension) for lo in lockouts} == {("claim", "ip"), ("claim", "device")}
    assert all(lo.failures == 3 for lo in lockouts)
    assert {r.reason for r in refusals} == {"locked_out"} and len(refusals) == 3


async def test_wrong_campaign_codes_count_across_phones_and_survive_rollback(shop: Shop) -> None:
    """Service level: each wrong code's transaction rolls back, the failures stay; then the IP is refused
    for any phone of any campaign of the tenant, and so is the claim itself."""
    await set_rules(shop.kernel, shop.id, failure_limit=4, window_minutes=10, lockout_minutes=15)
    stocked = await shop.stock(3)
    made = []
    for name in ("春季", "夏季"):
        r = await shop.post("/api/v1/campaigns", {"name": name, "product_id": str(stocked.product_id)})
        assert r.status_code == 201, r.text
        made.append(uuid.UUID(r.json()["id"]))
    ip = "192.0.2.44"

    async def campaign_of(db: Any, cid: uuid.UUID) -> Any:
        return await services.get_campaign(db, cid)

    async def ask(cid: uuid.UUID, phone: str, *, from_ip: str = ip) -> None:
        async def go(db: Any) -> None:
            tenant = await db.get(Tenant, shop.id)
            await services.request_campaign_code(
                db, shop.kernel, tenant, await campaign_of(db, cid), phone, consent=PRIVACY_VERSION, ip=from_ip
            )

        await shop.run(go)

    async def confirm(cid: uuid.UUID, phone: str, code: str, *, from_ip: str = ip) -> str:
        async def go(db: Any) -> str:
            return await services.confirm_campaign_code(
                db, shop.kernel, await campaign_of(db, cid), phone, code, ip=from_ip
            )

        try:
            result: str = await shop.run(go)  # a refusal rolls the whole transaction back
        finally:
            await engine.settle()
        return result

    phones = [random_phone() for _ in range(3)]
    for phone in phones[:2]:
        await ask(made[0], phone)
        code = await shop.otp_for(phone)
        for _ in range(2):
            with pytest.raises(OtpInvalid):
                await confirm(made[0], phone, _wrong(code))

    # four failures, two phones: a third phone in the other campaign is refused before anything is sent
    with pytest.raises(DomainError) as refused:
        await ask(made[1], phones[2])
    assert refused.value.code == "risk_refused" and refused.value.extra["reason"] == "locked_out"
    assert refused.value.extra["dimension"] == "ip" and int(refused.value.headers["Retry-After"]) > 800
    assert await shop.sms_to(phones[2]) == []
    code = await shop.otp_for(phones[0])  # (its challenge still has attempts left)
    with pytest.raises(DomainError) as refused:
        await confirm(made[0], phones[0], code)
    assert refused.value.code == "risk_refused" and refused.value.extra["reason"] == "locked_out"
    with pytest.raises(DomainError) as refused:
        await shop.run(lambda db: services.claim(db, shop.kernel, made[1], phones[2], ip, None))
    assert refused.value.code == "risk_refused" and refused.value.extra["reason"] == "locked_out"

    # another IP is untouched
    await ask(made[1], phones[2], from_ip="192.0.2.45")
    confirmed = await confirm(made[1], phones[2], await shop.otp_for(phones[2]), from_ip="192.0.2.45")
    assert confirmed.endswith(phones[2][-8:])


async def test_campaign_page_guesser_is_refused_for_another_phone(shop: Shop, phones: Any) -> None:
    await set_rules(shop.kernel, shop.id, failure_limit=2, window_minutes=10, lockout_minutes=15)
    stocked = await shop.stock(2)
    r = await shop.post("/api/v1/campaigns", {"name": "抢券", "product_id": str(stocked.product_id)})
    path = r.json()["path"]
    guesser = phones(GUESSER_IP)
    number = random_phone()
    r = await guesser.submit(path, f"{path}/send", {"phone": number})
    assert r.status_code == 200 and 'name="code"' in r.text
    code = await shop.otp_for(number)
    for _ in range(2):
        r = await guesser.submit(path, f"{path}/claim", {"phone": number, "code": _wrong(code)})
        await engine.settle()
        assert r.status_code == 422 and "验证码错误" in text_of(r.text)
    r = await guesser.submit(path, f"{path}/claim", {"phone": number, "code": code})
    assert r.status_code == 429 and LOCKED in text_of(r.text)
    r = await guesser.submit(path, f"{path}/send", {"phone": random_phone()})
    assert r.status_code == 429 and LOCKED in text_of(r.text)

    async def grants(db: Any) -> int:
        from core.grants.models import Grant

        return len(list((await db.execute(select(Grant))).scalars()))

    assert await shop.run(grants) == 0


async def test_no_requester_no_risk_side_effects(shop: Shop) -> None:
    """Callers that know no IP or device (none today besides tests) keep the per-code lock only."""
    await set_rules(shop.kernel, shop.id, failure_limit=1, window_minutes=10, lockout_minutes=15)
    stocked = await shop.stock(1)
    r = await shop.post("/api/v1/campaigns", {"name": "无来源", "product_id": str(stocked.product_id)})
    cid = uuid.UUID(r.json()["id"])
    phone = random_phone()

    async def ask(db: Any) -> None:
        tenant = await db.get(Tenant, shop.id)
        await services.request_campaign_code(
            db, shop.kernel, tenant, await services.get_campaign(db, cid), phone, consent=PRIVACY_VERSION
        )

    await shop.run(ask)
    code = await shop.otp_for(phone)
    with tenant_context(shop.id), contextlib.suppress(OtpInvalid):
        async with shop.kernel.db.transaction() as db:
            campaign = await services.get_campaign(db, cid)
            await services.confirm_campaign_code(db, shop.kernel, campaign, phone, _wrong(code))
    await engine.settle()
    lockouts, refusals = await _facts(shop)
    assert lockouts == [] and refusals == []
