"""Grant and item statuses tell the truth at each step, over HTTP: redemption, rollback, reusable use,
stored-value spend, delivery, void, expiry; illegal moves are refused and change nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select, update

from core.audit.models import AuditEvent
from core.db.base import utcnow
from core.grants.jobs import expire_items
from core.grants.models import Grant, GrantItem
from core.grants.services import mark_delivered
from core.inventory.models import Code
from tests.integration.grants.shops import Shop


async def _grant(shop: Shop, product_id: uuid.UUID, quantity: int = 1, **who: Any) -> dict[str, Any]:
    body = {"product_id": str(product_id), "quantity": quantity, "channel": "none", **who}
    if not who:
        body["external_id"] = f"m-{uuid.uuid4().hex[:8]}"
    r = await shop.post("/api/v1/grants", body, reveal=True)
    assert r.status_code == 201, r.text
    return r.json()


async def _status(shop: Shop, grant_id: str) -> tuple[str, list[str]]:
    r = await shop.get(f"/api/v1/grants/{grant_id}")
    assert r.status_code == 200, r.text
    return r.json()["status"], [c["status"] for c in r.json()["codes"]]


async def _redeem(shop: Shop, code: str, **extra: Any) -> dict[str, Any]:
    r = await shop.post("/api/v1/redemptions", {"code": code, "store": "徐汇店", **extra}, key=None)
    assert r.status_code == 201, r.text
    return r.json()


async def _rollback(shop: Shop, redemption_id: str) -> Any:
    return await shop.post(f"/api/v1/redemptions/{redemption_id}/rollback", {"reason": "收银错误"}, key=None)


async def test_undelivered_api_grant_follows_its_redemptions(shop: Shop) -> None:
    stocked = await shop.stock(2, with_pin=False)
    grant = await _grant(shop, stocked.product_id, 2)
    numbers = [c["number"] for c in grant["codes"]]
    assert await _status(shop, grant["id"]) == ("created", ["held", "held"])

    first = await _redeem(shop, numbers[0])
    status, items = await _status(shop, grant["id"])
    assert status == "partially_redeemed" and sorted(items) == ["held", "redeemed"]
    listed = await shop.get("/api/v1/grants", status="partially_redeemed")
    assert grant["id"] in [g["id"] for g in listed.json()["items"]]

    second = await _redeem(shop, numbers[1])
    assert await _status(shop, grant["id"]) == ("redeemed", ["redeemed", "redeemed"])

    # a rollback moves it back, one step at a time
    assert (await _rollback(shop, second["id"])).status_code == 200
    status, items = await _status(shop, grant["id"])
    assert status == "partially_redeemed" and sorted(items) == ["held", "redeemed"]
    assert (await _rollback(shop, first["id"])).status_code == 200
    assert await _status(shop, grant["id"]) == ("created", ["held", "held"])

    async def changes(db: Any) -> list[dict[str, Any]]:
        rows = (await db.execute(select(AuditEvent).where(
            AuditEvent.action == "grant.status_changed", AuditEvent.object_id == grant["id"]
        ).order_by(AuditEvent.occurred_at))).scalars()
        return [(r.data["from"], r.data["to"]) for r in rows]

    assert await shop.run(changes) == [
        ("created", "partially_redeemed"), ("partially_redeemed", "redeemed"),
        ("redeemed", "partially_redeemed"), ("partially_redeemed", "created"),
    ]


async def test_illegal_moves_are_refused_and_change_nothing(shop: Shop) -> None:
    stocked = await shop.stock(2, with_pin=False)
    grant = await _grant(shop, stocked.product_id, 2)
    numbers = [c["number"] for c in grant["codes"]]
    red = await _redeem(shop, numbers[0])

    # a used grant cannot be voided (its code was used; the other would go back to stock)
    r = await shop.post(f"/api/v1/grants/{grant['id']}/void", {"reason": "客户取消"}, key=None)
    assert r.status_code == 409 and r.json()["code"] == "grant_not_voidable"
    assert r.json()["status"] == "partially_redeemed"
    # a redeemed unit cannot be redeemed again, nor rolled back twice
    r = await shop.post("/api/v1/redemptions", {"code": numbers[0]}, key=None)
    assert r.status_code == 409 and r.json()["code"] == "already_redeemed"
    assert (await _rollback(shop, red["id"])).status_code == 200
    r = await _rollback(shop, red["id"])
    assert r.status_code == 409 and r.json()["code"] == "already_rolled_back"
    assert await _status(shop, grant["id"]) == ("created", ["held", "held"])


async def test_delivered_grant_goes_back_to_delivered_on_rollback(shop: Shop) -> None:
    stocked = await shop.stock(1, with_pin=False)
    grant = await _grant(shop, stocked.product_id)
    gid = uuid.UUID(grant["id"])
    assert await shop.run(lambda db: mark_delivered(db, gid, "log_notifier"))
    assert (await _status(shop, grant["id"]))[0] == "delivered"
    red = await _redeem(shop, grant["codes"][0]["number"])
    assert await _status(shop, grant["id"]) == ("redeemed", ["redeemed"])
    # a delivery landing after the redemption keeps the truth (redeemed) and is still recorded
    assert await shop.run(lambda db: mark_delivered(db, gid, "log_notifier")) is False
    assert (await _rollback(shop, red["id"])).status_code == 200
    assert await _status(shop, grant["id"]) == ("delivered", ["held"])


async def test_late_delivery_of_a_redeemed_grant_records_the_time_only(shop: Shop) -> None:
    stocked = await shop.stock(1, with_pin=False)
    grant = await _grant(shop, stocked.product_id)
    await _redeem(shop, grant["codes"][0]["number"])
    gid = uuid.UUID(grant["id"])
    assert await shop.run(lambda db: mark_delivered(db, gid, "sms_gateway")) is True
    r = await shop.get(f"/api/v1/grants/{grant['id']}")
    assert r.json()["status"] == "redeemed" and r.json()["delivered_at"] is not None


async def test_reusable_code_uses_move_the_grant(shop: Shop) -> None:
    stocked = await shop.stock(1, kind="reusable_code", with_pin=False, uses=2, max_uses=2)
    grant = await _grant(shop, stocked.product_id, 2)
    number = grant["codes"][0]["number"]
    assert grant["codes"][1]["number"] == number  # one reusable code, one unit per use
    member = grant["member"]["id"]
    first = await _redeem(shop, number, member_id=member)
    status, items = await _status(shop, grant["id"])
    assert status == "partially_redeemed" and sorted(items) == ["held", "redeemed"]
    await _redeem(shop, number, member_id=member)
    assert await _status(shop, grant["id"]) == ("redeemed", ["redeemed", "redeemed"])
    assert (await _rollback(shop, first["id"])).status_code == 200
    assert (await _status(shop, grant["id"]))[0] == "partially_redeemed"


async def test_stored_value_spends_move_the_grant(shop: Shop) -> None:
    stocked = await shop.stock(1, kind="stored_value", with_pin=False)  # face value 1000 fen
    grant = await _grant(shop, stocked.product_id)
    number = grant["codes"][0]["number"]
    part = await _redeem(shop, number, amount=250)
    # partly spent: the card is still held (usable), the grant is used
    assert await _status(shop, grant["id"]) == ("partially_redeemed", ["held"])
    rest = await _redeem(shop, number, amount=750)
    assert rest["balance_after"] == 0
    assert await _status(shop, grant["id"]) == ("redeemed", ["redeemed"])
    assert (await _rollback(shop, rest["id"])).status_code == 200
    assert await _status(shop, grant["id"]) == ("partially_redeemed", ["held"])
    assert (await _rollback(shop, part["id"])).status_code == 200
    assert await _status(shop, grant["id"]) == ("created", ["held"])


async def test_void_moves_grant_and_items(shop: Shop) -> None:
    stocked = await shop.stock(2, with_pin=False)
    r = await shop.post("/api/v1/grants", {"product_id": str(stocked.product_id), "quantity": 2,
                                           "external_id": "m-void", "channel": "none"})
    grant = r.json()
    r = await shop.post(f"/api/v1/grants/{grant['id']}/void", {"reason": "客户取消"}, key=None)
    assert r.status_code == 200, r.text
    assert await _status(shop, grant["id"]) == ("voided", ["voided", "voided"])
    r = await shop.post(f"/api/v1/grants/{grant['id']}/void", {"reason": "again"}, key=None)
    assert r.status_code == 409 and r.json()["code"] == "grant_not_voidable"


async def test_expiry_sweep_expires_units_and_the_grant(shop: Shop) -> None:
    soon = utcnow() + dt.timedelta(days=30)
    stocked = await shop.stock(3, with_pin=False, expiries=[soon, soon, soon])
    whole = await _grant(shop, stocked.product_id)
    used = await _grant(shop, stocked.product_id, 2)
    await _redeem(shop, used["codes"][0]["number"])

    async def age(db: Any) -> None:  # their validity ended an hour ago
        past = utcnow() - dt.timedelta(hours=1)
        await db.execute(update(GrantItem).values(expires_at=past).where(
            GrantItem.grant_id.in_([uuid.UUID(whole["id"]), uuid.UUID(used["id"])])))
        await db.execute(update(Code).values(expires_at=past).where(Code.product_id == stocked.product_id))

    await shop.run(age)
    assert await shop.run(expire_items) == 2
    assert await shop.run(expire_items) == 0  # nothing twice
    assert await _status(shop, whole["id"]) == ("expired", ["expired"])
    status, items = await _status(shop, used["id"])
    assert status == "partially_redeemed" and sorted(items) == ["expired", "redeemed"]
    # an expired unit can be neither redeemed nor voided
    r = await shop.post("/api/v1/redemptions", {"code": whole["codes"][0]["number"]}, key=None)
    assert r.status_code == 409 and r.json()["code"] == "code_expired"
    r = await shop.post(f"/api/v1/grants/{whole['id']}/void", {"reason": "过期"}, key=None)
    assert r.status_code == 409 and r.json()["code"] == "grant_not_voidable"


async def test_database_refuses_an_unknown_status(shop: Shop) -> None:
    import pytest
    from sqlalchemy.exc import IntegrityError

    stocked = await shop.stock(1, with_pin=False)
    grant = await _grant(shop, stocked.product_id)

    async def corrupt(db: Any) -> None:
        await db.execute(update(Grant).where(Grant.id == uuid.UUID(grant["id"])).values(status="lost"))

    with pytest.raises(IntegrityError):
        await shop.run(corrupt)
    assert (await _status(shop, grant["id"]))[0] == "created"


async def test_a_unit_past_its_own_validity_is_not_redeemable_before_or_after_the_sweep(shop: Shop) -> None:
    """A "days after issue" validity ends before the code's own expiry: the unit, not the code, decides."""
    stocked = await shop.stock(1, with_pin=False, validity_kind="days_after_issue", validity_days=30)
    grant = await _grant(shop, stocked.product_id)
    number = grant["codes"][0]["number"]

    async def age(db: Any) -> None:
        await db.execute(update(GrantItem).values(expires_at=utcnow() - dt.timedelta(minutes=1))
                         .where(GrantItem.grant_id == uuid.UUID(grant["id"])))

    await shop.run(age)
    for _ in range(2):
        r = await shop.post("/api/v1/redemptions", {"code": number}, key=None)
        assert r.status_code == 409 and r.json()["code"] == "code_expired", r.text
        r = await shop.post("/api/v1/redemptions/validate", {"code": number}, key=None)
        assert r.status_code == 409 and r.json()["code"] == "code_expired", r.text
        await shop.run(expire_items)
    assert await _status(shop, grant["id"]) == ("expired", ["expired"])
