"""Statements fetched through the account's connector, page by page until ``has_more`` is false: the built-in
sandbox channel, and the HTTP channels against their fake platforms (locallife, ecommerce with OAuth and a
small page size). Fetching again stores nothing twice; refunds are stored as the positive amount refunded; an
account whose connector has no ``statements`` capability gets 409; a channel that fails stores nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.connectors.calls import seal_tokens
from core.connectors.models import ConnectorAccount
from core.db.context import tenant_context
from plugins import StatementLine
from plugins.builtin import ecommerce_channel
from plugins.builtin import sandbox_channel as sandbox
from tests.fakes.channel_servers import FakeLocalLife, FakeMarketplace, FakeSocialShop
from tests.integration.channel_orders.conftest import channel, quiet_relay  # noqa: F401  (the test connector, no statements)
from tests.integration.channel_orders.fake_channel import connect_account
from tests.integration.statements.helpers import add_account, register_builtin, sandbox_account

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _range(days: int = 1) -> dict[str, str]:
    return {"start": (NOW - dt.timedelta(days=days)).isoformat(), "end": (NOW + dt.timedelta(hours=1)).isoformat()}


@pytest.fixture
async def seller(client: Any, kernel: Any, app: Any, make_tenant: Any, make_api_client: Any) -> Any:
    register_builtin(app)
    tenant = await make_tenant(plan="growth")
    creds = await make_api_client(tenant)
    return tenant, creds.headers


def _sandbox_lines(account_id: uuid.UUID, n: int) -> None:
    shop = sandbox.WORLD.shop(account_id)
    with sandbox.WORLD.lock:
        for i in range(n):
            kind = "refund" if i == n - 1 else "sale"
            shop.statement.append(StatementLine(
                line_id=f"ST{i:04d}", order_id=f"SO{i // 2}", order_line_id="1", kind=kind,
                amount_fen=-500 if kind == "refund" else 1000 + i, commission_fen=0 if kind == "refund" else 100,
                occurred_at=NOW - dt.timedelta(minutes=n - i), description=f"第 {i} 行"))


async def test_sandbox_statement_fetched_page_by_page_and_again_doubles_nothing(client, kernel, seller) -> None:
    tenant, headers = seller
    account_id = await sandbox_account(kernel, tenant.id, page_size=3)
    _sandbox_lines(account_id, 7)  # three pages of at most three lines
    r = await client.post("/api/v1/statements/fetches", headers=headers,
                          json={"account_id": str(account_id), **_range()})
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["source"], s["lines_total"], s["lines_new"], s["lines_repeated"]) == ("fetch", 7, 7, 0)
    assert len(s["digest"]) == 64 and s["period_start"] and s["period_end"]
    lines = (await client.get(f"/api/v1/statements/{s['id']}/lines", headers=headers)).json()["items"]
    assert [ln["line_id"] for ln in lines] == [f"ST{i:04d}" for i in range(7)]
    assert (lines[-1]["kind"], lines[-1]["amount_fen"]) == ("refund", 500)
    assert (lines[0]["amount_fen"], lines[0]["commission_fen"]) == (1000, 100)

    _sandbox_lines(account_id, 0)
    again = (await client.post("/api/v1/statements/fetches", headers=headers,
                               json={"account_id": str(account_id), **_range()})).json()
    assert (again["lines_new"], again["lines_repeated"]) == (0, 7)


async def test_a_failing_channel_stores_nothing(client, kernel, seller) -> None:
    tenant, headers = seller
    account_id = await sandbox_account(kernel, tenant.id, page_size=2)
    _sandbox_lines(account_id, 5)
    sandbox.fail_next(account_id, "server_error", times=1)
    r = await client.post("/api/v1/statements/fetches", headers=headers,
                          json={"account_id": str(account_id), **_range()})
    assert r.status_code == 502 and r.json()["code"] == "statement_fetch_failed"
    assert (await client.get("/api/v1/statements", headers=headers)).json()["items"] == []


@pytest.fixture
def locallife() -> Iterator[FakeLocalLife]:
    fake = FakeLocalLife(client_secret="ll-" + uuid.uuid4().hex)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


async def test_locallife_bills_over_http(client, kernel, seller, locallife) -> None:
    tenant, headers = seller
    account_id = await add_account(kernel, tenant.id, "locallife", {
        "base_url": locallife.url, "client_key": locallife.client_key, "account_id": "acc-9", "poi_id": "poi-main",
        "timeout_seconds": 3}, {"client_secret": locallife.client_secret})
    order = locallife.new_order([("LL-1", 2, 4990)], {"buyer_id": "b1"})
    line_id = next(iter(order.lines))
    assert locallife.record_delivery(order.order_id, line_id, "req-1", [{"code": "C1"}, {"code": "C2"}])
    locallife.record_refund(order.order_id, line_id, 1)
    r = await client.post("/api/v1/statements/fetches", headers=headers,
                          json={"account_id": str(account_id), **_range()})
    assert r.status_code == 201, r.text
    lines = (await client.get(f"/api/v1/statements/{r.json()['id']}/lines", headers=headers)).json()["items"]
    assert [(ln["order_id"], ln["order_line_id"], ln["kind"], ln["amount_fen"], ln["commission_fen"])
            for ln in lines] == [(order.order_id, line_id, "sale", 9980, 499), (order.order_id, line_id, "refund", 4990, 0)]


async def test_ecommerce_bills_over_http_with_paging(client, kernel, seller) -> None:
    tenant, headers = seller
    market = FakeMarketplace(app_secret="mk-" + uuid.uuid4().hex)
    market.start()
    try:
        account_id = await add_account(kernel, tenant.id, "ecommerce", {
            "base_url": market.url, "app_key": market.app_key, "page_size": 2, "timeout_seconds": 3},
            {"app_secret": market.app_secret})
        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                account = await db.get(ConnectorAccount, (tenant.id, account_id))
                assert account is not None
                account.oauth_tokens = seal_tokens(await kernel.keys.cipher(db), account_id,
                                                   {"access_token": market.issue_token()})
        for n in range(3):
            order = market.new_order([("SKU-E", 1, 1000 * (n + 1))], {"buyer_id": f"b{n}"})
            lid = next(iter(order.lines))
            assert market.record_delivery(order.order_id, lid, f"r{n}", [{"code": f"E{n}"}])
        market.record_refund(order.order_id, lid, 1)
        r = await client.post("/api/v1/statements/fetches", headers=headers,
                              json={"account_id": str(account_id), **_range()})
        assert r.status_code == 201, r.text
        assert (r.json()["lines_total"], r.json()["lines_new"]) == (4, 4)
        lines = (await client.get(f"/api/v1/statements/{r.json()['id']}/lines", headers=headers)).json()["items"]
        assert [(ln["kind"], ln["amount_fen"], ln["commission_fen"]) for ln in lines] == [
            ("sale", 1000, 50), ("sale", 2000, 100), ("sale", 3000, 150), ("refund", 3000, 0)]
    finally:
        market.stop()


async def test_social_flows_over_http_one_per_page(client, kernel, seller) -> None:
    tenant, headers = seller
    social = FakeSocialShop(secret="so-" + uuid.uuid4().hex)
    social.start()
    try:
        account_id = await add_account(kernel, tenant.id, "social", {
            "base_url": social.url, "appid": social.appid, "page_size": 1, "timeout_seconds": 3},
            {"secret": social.secret, "callback_token": "so-callback"})
        order = social.new_order([("SO-1", 3, 1990)], {"buyer_id": "b1"})
        lid = next(iter(order.lines))
        assert social.record_delivery(order.order_id, lid, "r1", [{"code": "S1"}, {"code": "S2"}, {"code": "S3"}])
        social.record_refund(order.order_id, lid, 2)
        r = await client.post("/api/v1/statements/fetches", headers=headers,
                              json={"account_id": str(account_id), **_range()})
        assert r.status_code == 201, r.text
        lines = (await client.get(f"/api/v1/statements/{r.json()['id']}/lines", headers=headers)).json()["items"]
        assert [(ln["kind"], ln["amount_fen"], ln["commission_fen"]) for ln in lines] == [
            ("sale", 5970, 298), ("refund", 3980, 0)]
    finally:
        social.stop()


async def test_fetch_refusals(client, kernel, seller, channel, make_tenant, make_api_client) -> None:  # noqa: F811
    tenant, headers = seller
    shop = await connect_account(kernel, tenant.id)  # the test connector: no statements capability
    r = await client.post("/api/v1/statements/fetches", headers=headers,
                          json={"account_id": str(shop.account_id), **_range()})
    assert r.status_code == 409 and r.json()["code"] == "statement_fetch_unsupported"
    assert "导入" in r.json()["detail"]  # the tenant default locale is zh-CN

    account_id = await sandbox_account(kernel, tenant.id)
    for bad in ({"start": _range()["end"], "end": _range()["start"]}, _range(days=100),
                {"start": "2026-11-01T00:00:00", "end": "2026-11-02T00:00:00"}):
        r = await client.post("/api/v1/statements/fetches", headers=headers, json={"account_id": str(account_id), **bad})
        assert r.status_code == 422 and r.json()["code"] == "statement_range_invalid", (bad, r.text)
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            account = await db.get(ConnectorAccount, (tenant.id, account_id))
            assert account is not None
            account.status = "paused"
    r = await client.post("/api/v1/statements/fetches", headers=headers, json={"account_id": str(account_id), **_range()})
    assert r.status_code == 409 and r.json()["code"] == "statement_account_unavailable"
    r = await client.post("/api/v1/statements/fetches", headers=headers, json={"account_id": str(uuid.uuid4()), **_range()})
    assert r.status_code == 404 and r.json()["code"] == "statement_account_not_found"


def test_ecommerce_connector_declares_statements() -> None:
    assert "statements" in ecommerce_channel.CONNECTOR.info.capabilities


async def _run_fetch_jobs(app: Any, tenant_id: uuid.UUID) -> int:
    """Run the tenant's queued statement fetches as the worker would (claimed from the outbox)."""
    from sqlalchemy import select, update

    from core.jobs.context import MessageInfo, reset_job_context, set_job_context
    from core.jobs.models import OutboxMessage
    from core.settlement.statement_jobs import fetch_channel_statement
    from core.settlement.statements import FETCH_JOB

    with tenant_context(tenant_id):
        async with app.state.kernel.db.transaction() as db:
            rows = list((await db.execute(select(OutboxMessage).where(
                OutboxMessage.actor == FETCH_JOB, OutboxMessage.status == "pending"))).scalars())
            for row in rows:
                await db.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(status="done"))
    for row in rows:
        info = MessageInfo("m-" + uuid.uuid4().hex, FETCH_JOB, tenant_id, row.business_key, None, 0)
        tokens = set_job_context(app.state.jobs.env, info)
        try:
            with tenant_context(tenant_id):
                await fetch_channel_statement(**row.payload)
        finally:
            reset_job_context(tokens)
    return len(rows)


async def test_a_queued_fetch_stores_its_lines_or_records_why_not(client, kernel, app, seller, quiet_relay) -> None:  # noqa: F811
    tenant, headers = seller
    account_id = await sandbox_account(kernel, tenant.id, page_size=2)
    _sandbox_lines(account_id, 5)
    r = await client.post("/api/v1/statements/fetch-jobs", headers=headers,
                          json={"account_id": str(account_id), **_range()})
    assert r.status_code == 202, r.text
    queued = r.json()
    assert (queued["status"], queued["lines_new"]) == ("running", 0)
    assert await _run_fetch_jobs(app, tenant.id) == 1
    done = (await client.get(f"/api/v1/statements/{queued['id']}", headers=headers)).json()
    assert (done["status"], done["lines_new"], len(done["digest"])) == ("done", 5, 64)

    sandbox.fail_next(account_id, "server_error", times=1)
    failed = (await client.post("/api/v1/statements/fetch-jobs", headers=headers,
                                json={"account_id": str(account_id), **_range()})).json()
    assert await _run_fetch_jobs(app, tenant.id) == 1
    failed = (await client.get(f"/api/v1/statements/{failed['id']}", headers=headers)).json()
    assert failed["status"] == "failed" and "nothing was stored" in failed["error"] and failed["lines_new"] == 0
    r = await client.post("/api/v1/statements/fetch-jobs", headers=headers,
                          json={"account_id": str(uuid.uuid4()), **_range()})
    assert r.status_code == 404
