"""Campaign edit, stop and resume over the API, what a stopped campaign's page says, and the claim counts
(claims, members, codes handed out) computed with one grouped query per page."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import event, select

from core.audit.models import AuditEvent
from core.campaigns import services
from core.campaigns.models import Campaign
from core.claims.transfer import transfer_item
from core.db.base import utcnow
from core.db.context import tenant_context
from core.errors import DomainError
from core.grants.models import Grant, GrantItem
from core.grants.services import void_grant
from core.members.models import Member
from tenants.models import Tenant
from tests.integration.claims.helpers import Shop, random_phone, text_of

URL = "/api/v1/campaigns"


async def _campaign(shop: Shop, stock: int, **fields: Any) -> tuple[Any, dict[str, Any]]:
    stocked = await shop.stock(stock)
    r = await shop.post(URL, {"name": "会员日", "product_id": str(stocked.product_id), **fields})
    assert r.status_code == 201, r.text
    return stocked, r.json()


async def _patch(shop: Shop, campaign_id: str, body: dict[str, Any]) -> Any:
    return await shop.client.patch(f"{URL}/{campaign_id}", json=body, headers=shop.headers)


async def _audit(shop: Shop, campaign_id: str) -> list[AuditEvent]:
    async def read(db: Any) -> list[AuditEvent]:
        q = select(AuditEvent).where(AuditEvent.object_id == campaign_id).order_by(AuditEvent.occurred_at)
        return list((await db.execute(q)).scalars())

    return list(await shop.run(read))


async def test_patch_changes_only_what_is_sent_and_is_audited(shop: Shop) -> None:
    _stocked, created = await _campaign(shop, 1, per_member_limit=2)
    assert created["state"] == "open" and created["stopped_at"] is None
    assert (created["claim_count"], created["member_count"], created["code_count"]) == (0, 0, 0)
    ends = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
    r = await _patch(shop, created["id"], {"name": "  会员日（加场） ", "ends_at": ends.isoformat()})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["name"] == "会员日（加场）" and out["per_member_limit"] == 2 and out["quantity"] == 1
    assert dt.datetime.fromisoformat(out["ends_at"]) == ends and out["path"] == created["path"]
    assert out["state"] == "open"

    # null clears a time; unchanged values are not audited again
    r = await _patch(shop, created["id"], {"ends_at": None, "per_member_limit": 2})
    assert r.status_code == 200 and r.json()["ends_at"] is None
    r = await _patch(shop, created["id"], {"name": "会员日（加场）"})
    assert r.status_code == 200
    updates = [a for a in await _audit(shop, created["id"]) if a.action == "campaign.updated"]
    assert [sorted(a.data["changes"]) for a in updates] == [["ends_at", "name"], ["ends_at"]]
    assert updates[0].data["changes"]["name"] == "会员日（加场）"

    # pausing by the active switch closes the page; switching it back reopens
    assert (await _patch(shop, created["id"], {"active": False})).json()["state"] == "inactive"
    assert (await _patch(shop, created["id"], {"active": True})).json()["state"] == "open"


async def test_patch_validates_like_create(shop: Shop, other_shop: Shop) -> None:
    _stocked, created = await _campaign(shop, 1, starts_at="2030-01-01T00:00:00+08:00")
    cid = created["id"]
    for body, field, code in (
        ({"quantity": 0}, "quantity", "out_of_range"),
        ({"quantity": 11}, "quantity", "out_of_range"),
        ({"per_member_limit": 101}, "per_member_limit", "out_of_range"),
        ({"name": "   "}, "name", "required"),
        ({"name": "长" * 201}, "name", "too_long"),
        ({"ends_at": "2029-12-31T00:00:00+08:00"}, "ends_at", "invalid"),  # before the stored start
        ({"starts_at": "2030-02-01T00:00:00"}, "starts_at", "naive"),
    ):
        r = await _patch(shop, cid, body)
        assert r.status_code == 422, (body, r.text)
        problem = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert problem["code"] == "validation_failed" and problem["detail"], problem
        assert [(e["field"], e.get("code", "invalid")) for e in problem["errors"]] == [(field, code)], problem
    # the product cannot change, unknown fields and wrong types are refused, naming the field
    for body, field in (
        ({"product_id": str(uuid.uuid4())}, "product_id"),
        ({"colour": "red"}, "colour"),
        ({"quantity": "two"}, "quantity"),
    ):
        r = await _patch(shop, cid, body)
        assert r.status_code == 422, (body, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    assert (await shop.get(f"{URL}/{cid}")).json()["name"] == "会员日", "nothing changed"
    # another tenant's campaign is not found
    assert (await _patch(other_shop, cid, {"name": "x"})).status_code == 404
    assert (await other_shop.post(f"{URL}/{cid}/stop")).status_code == 404
    assert (await other_shop.post(f"{URL}/{cid}/resume")).status_code == 404
    r = await _patch(shop, str(uuid.uuid4()), {"name": "x"})
    assert r.status_code == 404 and r.json()["code"] == "campaign_not_found"


async def test_scopes(shop: Shop, make_tenant: Any, make_api_client: Any, client: Any) -> None:
    tenant = await make_tenant(plan="growth")
    writer = await make_api_client(tenant)
    reader = await make_api_client(tenant, ["grants:read"])
    own = Shop(tenant.id, shop.kernel, client, writer.headers)
    _stocked, created = await _campaign(own, 1)
    cid = created["id"]
    assert (await client.get(f"{URL}/{cid}", headers=reader.headers)).status_code == 200
    r = await client.patch(f"{URL}/{cid}", json={"name": "x"}, headers=reader.headers)
    assert r.status_code == 403
    assert (await client.post(f"{URL}/{cid}/stop", headers=reader.headers)).status_code == 403
    assert (await client.post(f"{URL}/{cid}/resume", headers=reader.headers)).status_code == 403
    assert (await own.get(f"{URL}/{cid}")).json()["state"] == "open"


async def test_stop_is_idempotent_audited_and_closes_the_page(shop: Shop, phones: Any) -> None:
    _stocked, campaign = await _campaign(shop, 3)
    cid, path = campaign["id"], campaign["path"]
    visitor = phones()
    number = random_phone()
    r = await visitor.submit(path, f"{path}/send", {"phone": number})
    assert r.status_code == 200 and 'name="code"' in r.text
    code = await shop.otp_for(number)

    r = await shop.post(f"{URL}/{cid}/stop")
    assert r.status_code == 200, r.text
    stopped = r.json()
    assert stopped["state"] == "stopped" and stopped["stopped_at"] is not None and stopped["active"] is True
    again = await shop.post(f"{URL}/{cid}/stop")
    assert again.status_code == 200 and again.json()["stopped_at"] == stopped["stopped_at"]
    assert [a.action for a in await _audit(shop, cid)].count("campaign.stopped") == 1
    listed = {c["id"]: c for c in (await shop.get(URL)).json()["items"]}
    assert listed[cid]["state"] == "stopped"

    # the page says the campaign has ended and offers no form; a code sent before cannot be used
    page = await visitor.get(path)
    assert page.status_code == 200 and "活动已结束" in text_of(page.text)
    assert 'data-closed="stopped"' in page.text and 'name="phone"' not in page.text
    r = await visitor.post_form(f"{path}/claim", {"phone": number, "code": code})
    assert r.status_code == 409 and "活动已结束" in text_of(r.text)
    r = await visitor.post_form(f"{path}/send", {"phone": random_phone()})
    assert r.status_code == 409 and "活动已结束" in text_of(r.text)
    with pytest.raises(DomainError) as closed:
        await shop.run(lambda db: services.claim(db, shop.kernel, uuid.UUID(cid), random_phone()))
    assert closed.value.code == "campaign_not_active" and closed.value.extra == {"state": "stopped"}

    # editing the window or the active switch does not reopen it
    later = (utcnow() + dt.timedelta(days=30)).isoformat()
    r = await _patch(shop, cid, {"starts_at": None, "ends_at": later, "active": True, "name": "改期"})
    assert r.status_code == 200 and r.json()["state"] == "stopped" and r.json()["name"] == "改期"
    assert "活动已结束" in text_of((await visitor.get(path)).text)

    # resuming does (idempotently, audited once)
    r = await shop.post(f"{URL}/{cid}/resume")
    assert r.status_code == 200 and r.json()["state"] == "open" and r.json()["stopped_at"] is None
    assert (await shop.post(f"{URL}/{cid}/resume")).json()["state"] == "open"
    assert [a.action for a in await _audit(shop, cid)].count("campaign.resumed") == 1
    # the code sent before the stop is still valid: the visitor claims with it
    r = await visitor.submit(path, f"{path}/claim", {"phone": number, "code": code})
    assert r.status_code == 303 and r.headers["location"].startswith("/h5/items/"), text_of(r.text)
    assert (await shop.get(f"{URL}/{cid}")).json()["claim_count"] == 1


async def test_resume_keeps_the_other_rules(shop: Shop, phones: Any) -> None:
    """A resumed campaign whose window has passed is ``ended``; a paused one stays paused."""
    _stocked, campaign = await _campaign(shop, 1, active=False)
    cid = campaign["id"]
    assert campaign["state"] == "inactive"
    assert "活动暂未开放" in text_of((await phones().get(campaign["path"])).text)
    await shop.post(f"{URL}/{cid}/stop")
    assert (await shop.post(f"{URL}/{cid}/resume")).json()["state"] == "inactive"

    async def end_window(db: Any) -> None:
        c = (await db.execute(select(Campaign).where(Campaign.id == uuid.UUID(cid)))).scalar_one()
        c.starts_at, c.ends_at, c.active = (
            utcnow() - dt.timedelta(days=2),
            utcnow() - dt.timedelta(days=1),
            True,
        )

    await shop.run(end_window)
    await shop.post(f"{URL}/{cid}/stop")
    assert (await shop.post(f"{URL}/{cid}/resume")).json()["state"] == "ended"


async def test_claim_counts(shop: Shop, other_shop: Shop) -> None:
    stocked, campaign = await _campaign(shop, 8, quantity=2, per_member_limit=2)
    _other_stock, empty = await _campaign(shop, 1)
    cid = uuid.UUID(campaign["id"])
    a, b, c = random_phone(), random_phone(), random_phone()
    grants = [
        await shop.run(lambda db, p=p: services.claim(db, shop.kernel, cid, p, None, None)) for p in (a, a, b)
    ]
    assert len(stocked.code_ids) == 8

    # one of a's grants is voided (its codes go back), one of b's units is transferred to c (counts once)
    await shop.run(lambda db: void_grant(db, shop.kernel, grants[0].id, "测试作废"))

    async def transfer(db: Any) -> None:
        tenant = await db.get(Tenant, shop.id)
        giver = await db.get(Member, (shop.id, grants[2].member_id))
        item = (
            (await db.execute(select(GrantItem).where(GrantItem.grant_id == grants[2].id))).scalars().first()
        )
        await transfer_item(db, shop.kernel, tenant, giver, item.id, c)

    await shop.run(transfer)

    detail = (await shop.get(f"{URL}/{cid}")).json()
    assert (detail["claim_count"], detail["member_count"], detail["code_count"]) == (3, 2, 4), detail
    listed = {x["id"]: x for x in (await shop.get(URL)).json()["items"]}
    assert (listed[str(cid)]["claim_count"], listed[str(cid)]["code_count"]) == (3, 4)
    assert (listed[empty["id"]]["claim_count"], listed[empty["id"]]["code_count"]) == (0, 0)
    assert listed[empty["id"]]["member_count"] == 0

    async def raw_units(db: Any) -> int:
        q = select(GrantItem).join(
            Grant, (Grant.tenant_id == GrantItem.tenant_id) & (Grant.id == GrantItem.grant_id)
        )
        return len(list((await db.execute(q.where(Grant.campaign_ref == campaign["ref"]))).scalars()))

    assert await shop.run(raw_units) == 7, "6 units granted plus the transfer's new unit"
    # another tenant sees none of it
    assert (await other_shop.get(f"{URL}/{cid}")).status_code == 404


async def test_list_counts_use_one_grouped_query(shop: Shop) -> None:
    """The number of statements a list page runs does not grow with the number of campaigns."""
    stocked = await shop.stock(6)

    async def make(n: int) -> None:
        for i in range(n):
            r = await shop.post(URL, {"name": f"活动 {i}", "product_id": str(stocked.product_id)})
            assert r.status_code == 201
            cid = uuid.UUID(r.json()["id"])
            await shop.run(
                lambda db, cid=cid: services.claim(db, shop.kernel, cid, random_phone(), None, None)
            )

    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    async def campaign_queries(expected: int) -> list[str]:
        statements.clear()
        engine = shop.kernel.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            page = await shop.run(lambda db: services.list_campaigns(db, shop.kernel, None, 50))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert len(page.items) == expected
        assert all(c.claim_count == 1 and c.code_count == 1 and c.member_count == 1 for c in page.items)
        # statements of other connections (the in-process worker, the audit sealer) do not name campaigns
        return [s for s in statements if "campaign" in s]

    await make(2)
    few = await campaign_queries(2)
    await make(4)
    many = await campaign_queries(6)
    assert len(few) == len(many) == 2, many  # the page, then one grouped count
    assert sum("campaign_claims" in s and "GROUP BY" in s.upper() for s in many) == 1


async def test_stop_waits_for_a_claim_under_way(shop: Shop, test_env: Any) -> None:
    """On PostgreSQL a claim holds a share lock on its campaign: a stop waits for it, and no claim is
    granted after the stop returns."""
    if test_env.backend != "postgresql":
        pytest.skip("row locks are proven on PostgreSQL")
    _stocked, campaign = await _campaign(shop, 3, per_member_limit=3)
    cid = uuid.UUID(campaign["id"])
    claimed = asyncio.Event()
    release = asyncio.Event()

    async def slow_claim() -> None:
        with tenant_context(shop.id):
            async with shop.kernel.db.transaction() as db:
                await services.claim(db, shop.kernel, cid, random_phone(), None, None)
                claimed.set()
                await release.wait()

    async def stop() -> None:
        with tenant_context(shop.id):
            async with shop.kernel.db.transaction() as db:
                await services.stop_campaign(db, shop.kernel, cid)

    claim_task = asyncio.create_task(slow_claim())
    await claimed.wait()
    stop_task = asyncio.create_task(stop())
    await asyncio.sleep(0.5)
    assert not stop_task.done(), "the stop waits for the claim under way"
    release.set()
    await asyncio.gather(claim_task, stop_task)
    with pytest.raises(DomainError) as closed:
        await shop.run(lambda db: services.claim(db, shop.kernel, cid, random_phone(), None, None))
    assert closed.value.code == "campaign_not_active"
    assert (await shop.get(f"{URL}/{cid}")).json()["claim_count"] == 1
