"""Codes voided in the inventory (``POST /api/v1/codes/void``, a supplier recall) take the units members
hold on them along: the items become ``voided`` and each grant's status follows the state machine."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from core.audit.models import AuditEvent
from core.db.base import utcnow
from core.events.models import Event
from core.grants.jobs import expire_items
from core.grants.models import GrantItem
from core.grants.services import mark_delivered
from tests.integration.claims.conftest import phones  # noqa: F401  (fixture)
from tests.integration.claims.helpers import Shop as ClaimShop
from tests.integration.claims.helpers import random_phone, text_of
from tests.integration.grants.shops import Shop
from tests.integration.inventory.stocking import stock_product


async def _grant(shop: Shop, product_id: uuid.UUID, quantity: int = 1, **who: Any) -> dict[str, Any]:
    body = {"product_id": str(product_id), "quantity": quantity, "channel": "none", **who}
    if not who:
        body["external_id"] = f"m-{uuid.uuid4().hex[:8]}"
    r = await shop.post("/api/v1/grants", body, reveal=True)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _status(shop: Shop, grant_id: str) -> tuple[str, list[str]]:
    r = await shop.get(f"/api/v1/grants/{grant_id}")
    assert r.status_code == 200, r.text
    return r.json()["status"], sorted(c["status"] for c in r.json()["codes"])


async def _void(shop: Shop, *code_ids: str) -> Any:
    return await shop.post(
        "/api/v1/codes/void", {"code_ids": list(code_ids), "reason": "供应商召回"}, key=None
    )


async def _audit(shop: Shop, action: str, object_id: str) -> list[dict[str, Any]]:
    async def read(db: Any) -> list[dict[str, Any]]:
        rows = (
            await db.execute(
                select(AuditEvent)
                .where(AuditEvent.action == action, AuditEvent.object_id == object_id)
                .order_by(AuditEvent.occurred_at)
            )
        ).scalars()
        return [dict(r.data) for r in rows]

    return await shop.run(read)


async def test_voiding_a_held_code_voids_the_unit_and_the_grant(shop: Shop) -> None:
    stocked = await shop.stock(1, with_pin=False)
    grant = await _grant(shop, stocked.product_id)
    unit = grant["codes"][0]
    r = await _void(shop, unit["code_id"])
    assert r.status_code == 200 and r.json() == {"voided": 1}, r.text

    assert await _status(shop, grant["id"]) == ("voided", ["voided"])
    detail = (await shop.get(f"/api/v1/grants/{grant['id']}")).json()
    assert detail["voided_at"] is not None and detail["void_reason"] == "供应商召回"
    assert grant["id"] not in [
        g["id"] for g in (await shop.get("/api/v1/grants", status="created")).json()["items"]
    ]
    assert grant["id"] in [
        g["id"] for g in (await shop.get("/api/v1/grants", status="voided")).json()["items"]
    ]
    # audited like the other paths: the items, then the grant's status change
    moved = await _audit(shop, "grant.items_voided", grant["id"])
    assert len(moved) == 1 and moved[0]["items"] == [unit["item_id"]] and moved[0]["reason"] == "供应商召回"
    changes = await _audit(shop, "grant.status_changed", grant["id"])
    assert [(c["from"], c["to"], c["cause"]) for c in changes] == [("created", "voided", "void")]

    async def events(db: Any) -> list[dict[str, Any]]:
        rows = await db.execute(
            select(Event).where(Event.type == "grant.voided", Event.object_id == grant["id"])
        )
        return [dict(e.data) for e in rows.scalars()]

    sent = await shop.run(events)
    assert len(sent) == 1 and sent[0]["codes"] == [unit["code_id"]] and sent[0]["cause"] == "codes_voided"
    # the code cannot be redeemed, nor voided again (nothing changes)
    r = await shop.post("/api/v1/redemptions", {"code": unit["number"], "store": "徐汇店"}, key=None)
    assert r.status_code == 409 and r.json()["code"] == "code_voided", r.text
    r = await _void(shop, unit["code_id"])
    assert r.status_code == 409 and r.json()["code"] == "code_not_voidable"
    assert len(await _audit(shop, "grant.items_voided", grant["id"])) == 1


async def test_a_delivered_grant_keeps_its_status_until_every_unit_is_voided(shop: Shop) -> None:
    stocked = await shop.stock(2, with_pin=False)
    grant = await _grant(shop, stocked.product_id, 2)
    assert await shop.run(lambda db: mark_delivered(db, uuid.UUID(grant["id"]), "log_notifier"))
    first, second = grant["codes"]

    assert (await _void(shop, first["code_id"])).status_code == 200
    # the other unit is still usable: the grant is still delivered
    assert await _status(shop, grant["id"]) == ("delivered", ["held", "voided"])
    assert await _audit(shop, "grant.status_changed", grant["id"]) == []
    r = await shop.post("/api/v1/redemptions/validate", {"code": second["number"]}, key=None)
    assert r.status_code == 200, r.text

    assert (await _void(shop, second["code_id"])).status_code == 200
    assert await _status(shop, grant["id"]) == ("voided", ["voided", "voided"])
    changes = await _audit(shop, "grant.status_changed", grant["id"])
    assert [(c["from"], c["to"]) for c in changes] == [("delivered", "voided")]


async def test_voiding_the_unused_unit_of_a_used_grant_leaves_it_partially_redeemed(shop: Shop) -> None:
    stocked = await shop.stock(2, with_pin=False)
    grant = await _grant(shop, stocked.product_id, 2)
    used, unused = grant["codes"]
    r = await shop.post("/api/v1/redemptions", {"code": used["number"], "store": "徐汇店"}, key=None)
    assert r.status_code == 201, r.text

    # the redeemed code is not voidable, and a refused void changes nothing (not even the other code)
    r = await _void(shop, used["code_id"], unused["code_id"])
    assert r.status_code == 409 and r.json()["code"] == "code_not_voidable"
    assert await _status(shop, grant["id"]) == ("partially_redeemed", ["held", "redeemed"])

    assert (await _void(shop, unused["code_id"])).status_code == 200
    assert await _status(shop, grant["id"]) == ("partially_redeemed", ["redeemed", "voided"])
    assert len(await _audit(shop, "grant.items_voided", grant["id"])) == 1


async def test_a_grant_whose_other_unit_expired_ends_expired(shop: Shop) -> None:
    stocked = await shop.stock(2, with_pin=False)
    grant = await _grant(shop, stocked.product_id, 2)
    first, second = grant["codes"]

    async def age(db: Any) -> None:
        await db.execute(
            update(GrantItem)
            .values(expires_at=utcnow() - dt.timedelta(hours=1))
            .where(GrantItem.id == uuid.UUID(first["item_id"]))
        )

    await shop.run(age)
    assert await shop.run(expire_items) == 1
    assert await _status(shop, grant["id"]) == ("created", ["expired", "held"])
    assert (await _void(shop, second["code_id"])).status_code == 200
    assert await _status(shop, grant["id"]) == ("expired", ["expired", "voided"])


async def test_my_codes_no_longer_lists_a_voided_unit(shop: Shop, phones: Any) -> None:  # noqa: F811
    claims = ClaimShop(shop.id, shop.kernel, shop.client, shop.headers)
    stocked = await shop.stock(2, with_pin=False)
    grant = await claims.grant(stocked.product_id, 2)
    link = await claims.claim_link(grant["id"])
    me, number = phones(), random_phone()
    r = await me.submit(link["path"], f"{link['path']}/send", {"phone": number})
    assert r.status_code == 303, text_of(r.text)
    r = await me.submit(link["path"], f"{link['path']}/verify", {"code": await claims.otp_for(number)})
    assert r.status_code == 303, text_of(r.text)
    kept, voided = grant["codes"]
    assert (await me.get("/h5/me")).text.count("data-item=") == 2

    assert (await _void(shop, voided["code_id"])).status_code == 200
    mine = await me.get("/h5/me")
    assert mine.status_code == 200 and mine.text.count("data-item=") == 1
    assert f'data-item="{kept["item_id"]}"' in mine.text and voided["item_id"] not in mine.text
    # the claim page still shows both units, the recalled one as voided (not as usable, nor "expired")
    page = await me.get(link["path"])
    assert f'class="card status-voided" data-item="{voided["item_id"]}"' in page.text
    assert f'class="card status-held" data-item="{kept["item_id"]}"' in page.text


async def test_rolling_back_a_use_of_a_voided_reusable_code_leaves_the_unit_voided(shop: Shop) -> None:
    stocked = await shop.stock(1, kind="reusable_code", with_pin=False, uses=2, max_uses=2)
    grant = await _grant(shop, stocked.product_id, 2)
    number, code_id = grant["codes"][0]["number"], grant["codes"][0]["code_id"]
    member = grant["member"]["id"]
    r = await shop.post("/api/v1/redemptions", {"code": number, "member_id": member}, key=None)
    assert r.status_code == 201, r.text
    assert (await _void(shop, code_id)).status_code == 200
    assert await _status(shop, grant["id"]) == ("partially_redeemed", ["redeemed", "voided"])

    # the use is given back, but the code is voided: the unit does not become usable again
    r = await shop.post(f"/api/v1/redemptions/{r.json()['id']}/rollback", {"reason": "收银错误"}, key=None)
    assert r.status_code == 200, r.text
    assert await _status(shop, grant["id"]) == ("voided", ["voided", "voided"])
    r = await shop.post("/api/v1/redemptions", {"code": number, "member_id": member}, key=None)
    assert r.status_code == 409 and r.json()["code"] == "code_voided"


async def test_rolling_back_a_spend_of_a_voided_stored_value_card(shop: Shop) -> None:
    stocked = await shop.stock(1, kind="stored_value", with_pin=False)  # face value 1000 fen
    grant = await _grant(shop, stocked.product_id)
    unit = grant["codes"][0]
    r = await shop.post("/api/v1/redemptions", {"code": unit["number"], "amount": 250}, key=None)
    assert r.status_code == 201, r.text
    assert (await _void(shop, unit["code_id"])).status_code == 200
    # partly spent before the recall: the grant was used, the card is not usable any more
    assert await _status(shop, grant["id"]) == ("partially_redeemed", ["voided"])

    r = await shop.post(f"/api/v1/redemptions/{r.json()['id']}/rollback", {"reason": "收银错误"}, key=None)
    assert r.status_code == 200, r.text
    assert await _status(shop, grant["id"]) == ("voided", ["voided"])


async def test_console_member_page_no_longer_lists_a_voided_unit_as_held(
    browser: Any, make_tenant: Any, make_api_client: Any, client: Any, kernel: Any
) -> None:
    tenant = await make_tenant(plan="growth")
    api = await make_api_client(tenant)
    stocked = await stock_product(kernel, tenant.id, 2, with_pin=False)
    body = {
        "product_id": str(stocked.product_id),
        "quantity": 2,
        "channel": "none",
        "external_id": "m-recall",
    }
    r = await client.post("/api/v1/grants", json=body, headers={**api.headers, "Idempotency-Key": "g-recall"})
    assert r.status_code == 201, r.text
    grant = r.json()
    kept, voided = grant["codes"]
    await browser.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)
    member_url = f"/console/members/{grant['member']['id']}"
    assert (await browser.get(member_url)).text.count("data-item=") == 2

    r = await client.post(
        "/api/v1/codes/void",
        json={"code_ids": [voided["code_id"]], "reason": "供应商召回"},
        headers=api.headers,
    )
    assert r.status_code == 200, r.text
    page = await browser.get(member_url)
    assert page.status_code == 200 and page.text.count("data-item=") == 1
    assert f'data-item="{kept["item_id"]}"' in page.text and voided["item_id"] not in page.text


async def test_concurrent_voids_and_redemptions_of_one_code_never_deadlock(shop: Shop, test_env: Any) -> None:
    """Both paths lock the grant before the code: each pair ends one way, never half, never in a deadlock."""
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")
    stocked = await shop.stock(8, with_pin=False)
    grants = [await _grant(shop, stocked.product_id) for _ in range(8)]

    async def redeem(unit: dict[str, Any]) -> Any:
        return await shop.post("/api/v1/redemptions", {"code": unit["number"], "store": "徐汇店"}, key=None)

    calls = []
    for g in grants:
        unit = g["codes"][0]
        calls += [redeem(unit), _void(shop, unit["code_id"])]
    answers = await asyncio.gather(*calls)
    for g, (redeemed, voided) in zip(grants, zip(answers[::2], answers[1::2], strict=True), strict=True):
        outcome = await _status(shop, g["id"])
        if redeemed.status_code == 201:
            assert voided.status_code == 409 and voided.json()["code"] == "code_not_voidable", voided.text
            assert outcome == ("redeemed", ["redeemed"])
        else:
            assert redeemed.status_code == 409 and redeemed.json()["code"] == "code_voided", redeemed.text
            assert voided.status_code == 200, voided.text
            assert outcome == ("voided", ["voided"])
