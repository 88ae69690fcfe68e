"""Channel orders: fulfilment through callbacks against grants in the same run, and local-life issue
requests answered synchronously under 50 concurrent requests.

Run: ``.venv/bin/python bench/channel_orders.py [--orders 300] [--rounds 3] [--issues 500]``

A throwaway PostgreSQL database migrated like production (app role, RLS). The app runs in process
(``httpx.ASGITransport``, no network), its job system idle: the benchmark runs the channel-order jobs itself,
as a worker would, so the measured time is the work. A bench channel connector (registered on the app's
plugin host, like a partner's) verifies an HMAC signature on every callback and takes deliveries at once.

1. **Fulfilment vs grants**, interleaved rounds: ``--orders`` grants of one code (``POST /api/v1/grants``,
   20 concurrent clients) against ``--orders`` channel orders of one code: the signed ``order.paid``
   callback (20 concurrent), then processing (stored once, risk, quota, allocation) and delivery to the
   channel (``deliver_codes``), 20 at a time. Printed: grants/s, orders/s, their ratio (aim ≥ 0.8).
2. **Local-life issue requests**: ``--issues`` signed ``code.issue`` callbacks, 50 in flight at once, each
   answered with its codes: p50 / p99 / max answer time against Douyin's 8-second limit (aim p99 ≤ 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import statistics
import tempfile
import time
import uuid
from typing import Any

import msgspec
from _pg import ADMIN_URL, machine_line, throwaway_database
from http_overhead import bench_settings, quiet_app, running
from sqlalchemy import func, select

from core.catalog.models import Product
from core.channel_orders.delivery import deliver_channel_order
from core.channel_orders.models import ChannelMessage, ChannelOrder
from core.channel_orders.processing import process_message
from core.channels.models import Listing
from core.connectors.calls import seal_secrets
from core.connectors.models import AccountRoute, ConnectorAccount
from core.crypto.envelope import generate_master_key_spec
from core.db.context import set_tenant, tenant_context
from core.db.ids import readable_ref
from core.inventory.models import Batch, Code
from core.inventory.vault import seal
from core.jobs.context import MessageInfo, reset_job_context, set_job_context
from plugins import (
    BadCallback,
    CallbackOutcome,
    CallbackReply,
    CallbackRequest,
    CallResult,
    ChannelEvent,
    CheckResult,
    CodeDelivery,
    ConnectorContext,
    ConnectorInfo,
    IssueRequest,
    OrderLine,
    Secret,
    hookimpl,
)
from plugins import ChannelOrder as OrderIn
from tenants import onboarding
from tenants.clients import create_client
from tenants.schemas import PlanCreate, TenantCreate

SIGNATURE = "x-bench-signature"
#: Seconds spent per round in (callbacks, processing, delivery).
PHASES: list[tuple[float, float, float]] = []


class BenchConfig(msgspec.Struct, frozen=True, kw_only=True):
    secret: Secret = ""


class BenchChannel:
    """A partner-like channel: HMAC-verified callbacks, deliveries taken at once."""

    info = ConnectorInfo(id="bench_channel", kind="sales_channel", display_name="Bench channel", config=BenchConfig,
                         capabilities=frozenset({"callbacks", "delivery", "third_party_codes"}))

    async def check(self, ctx: ConnectorContext) -> CheckResult:
        return CheckResult(ok=True)

    async def parse_callback(self, ctx: ConnectorContext, request: CallbackRequest) -> ChannelEvent:
        secret = ctx.config.secret  # type: ignore[attr-defined]
        want = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get(SIGNATURE, ""), want):
            raise BadCallback("bad signature", signature=True)
        return msgspec.json.decode(request.body, type=ChannelEvent)

    def callback_reply(self, ctx: ConnectorContext, event: ChannelEvent | None,
                       outcome: CallbackOutcome) -> CallbackReply:
        return CallbackReply(body=msgspec.json.encode(outcome))

    async def deliver_codes(self, ctx: ConnectorContext, delivery: CodeDelivery) -> CallResult:
        return CallResult(status="ok", channel_ref=delivery.reference)


class BenchPlugin:
    @hookimpl
    def kaquan_connectors(self) -> list[Any]:
        return [BenchChannel()]


async def _product(kernel: Any, sku: str, count: int) -> uuid.UUID:
    async with kernel.db.transaction() as s:
        product = Product(sku=sku, kind="code", code_format="number_pin", name_zh=sku, face_value=1000)
        s.add(product)
        await s.flush()
        batch = Batch(ref=readable_ref("B"), product_id=product.id, supplier="bench", unit_cost=300, code_count=count)
        s.add(batch)
        await s.flush()
        cipher = await kernel.keys.cipher(s)
        for _ in range(count):
            sealed = seal(cipher, f"BC{secrets.token_hex(8).upper()}", f"{secrets.randbelow(10**6):06d}")
            s.add(Code(product_id=product.id, batch_id=batch.id, digest=sealed.digest, secret=sealed.secret,
                       last4=sealed.last4, has_pin=True))
        return product.id


async def prepare(app: Any, codes: int) -> dict[str, Any]:
    kernel = app.state.kernel
    async with kernel.db.transaction() as s:
        await onboarding.ensure_default_plans(s)
        await onboarding.create_plan(s, PlanCreate(code="bench", name="Bench", requests_per_minute=10_000_000,
                                                   max_api_clients=10))
        created = await onboarding.create_tenant(kernel, s, TenantCreate(
            name="Channel Co", slug="channel-co", owner_email="o@channel.example.com", plan="bench"))
    set_tenant(None)
    tenant_id = created.tenant.id
    secret = secrets.token_hex(16)
    with tenant_context(tenant_id):
        grant_product = await _product(kernel, "GRANT", codes)
        channel_product = await _product(kernel, "CHANNEL", codes * 2)
        async with kernel.db.transaction() as s:
            account = ConnectorAccount(connector_id="bench_channel", kind="sales_channel", name="Bench shop")
            s.add(account)
            await s.flush()
            account.secrets = seal_secrets(await kernel.keys.cipher(s), account.id, {"secret": secret})
            s.add(AccountRoute(account_id=account.id, tenant_id=tenant_id))
            s.add(Listing(account_id=account.id, product_id=channel_product, sku="SKU", price_fen=1990,
                          quota_kind="fixed", quota_value=codes * 2, quota=codes * 2))
            row, client_secret = await create_client(s, "bench", ["grants:write", "channel_orders:read"])
            account_id = account.id
    return {"tenant_id": tenant_id, "account_id": account_id, "secret": secret, "grant_product": grant_product,
            "client": (row.client_id, client_secret)}


def _signed(secret: str, event: ChannelEvent) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode(event)
    return body, {SIGNATURE: hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
                  "content-type": "application/json"}


async def _bounded(n: int, fns: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(n)

    async def one(fn: Any) -> Any:
        async with gate:
            return await fn()

    return await asyncio.gather(*(one(f) for f in fns))


async def grants_round(c: Any, token: str, product_id: uuid.UUID, n: int, tag: str) -> float:
    headers = {"Authorization": f"Bearer {token}"}

    def one(i: int) -> Any:
        async def go() -> None:
            body = {"product_id": str(product_id), "quantity": 1, "external_id": f"m-{tag}-{i}", "channel": "none"}
            r = await c.post("/api/v1/grants", json=body, headers={**headers, "Idempotency-Key": f"{tag}-{i}"})
            assert r.status_code == 201, r.text
        return go

    t0 = time.perf_counter()
    await _bounded(20, [one(i) for i in range(n)])
    return time.perf_counter() - t0


async def orders_round(c: Any, app: Any, fx: dict[str, Any], n: int, tag: str) -> float:
    kernel, env, tenant_id = app.state.kernel, app.state.jobs.env, fx["tenant_id"]
    now = dt.datetime.now(dt.UTC)

    def callback(i: int) -> Any:
        async def go() -> None:
            event = ChannelEvent(message_id=f"{tag}-{i}", type="order.paid", occurred_at=now, order=OrderIn(
                order_id=f"{tag}-{i}", placed_at=now, lines=[OrderLine(line_id="1", sku="SKU", quantity=1,
                                                                       unit_price_fen=1990)]))
            body, headers = _signed(fx["secret"], event)
            r = await c.post(f"/channels/{fx['account_id']}/callback", content=body, headers=headers)
            assert r.status_code == 200, r.text
        return go

    t0 = time.perf_counter()
    await _bounded(20, [callback(i) for i in range(n)])
    t1 = time.perf_counter()
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:
            ids = list((await s.execute(select(ChannelMessage.id).where(ChannelMessage.status == "pending"))).scalars())

        def process(mid: uuid.UUID) -> Any:
            async def go() -> None:
                with tenant_context(tenant_id):
                    async with kernel.db.transaction() as s:
                        await process_message(s, kernel, mid)
            return go

        await _bounded(20, [process(m) for m in ids])
        async with kernel.db.transaction() as s:
            orders = list((await s.execute(select(ChannelOrder.id).where(ChannelOrder.status == "received"))).scalars())

    def deliver(oid: uuid.UUID) -> Any:
        async def go() -> None:
            tokens = set_job_context(env, MessageInfo("bench", "deliver_channel_order", tenant_id, None, None, 0))
            try:
                with tenant_context(tenant_id):
                    await deliver_channel_order(str(oid))
            finally:
                reset_job_context(tokens)
        return go

    t2 = time.perf_counter()
    await _bounded(20, [deliver(o) for o in orders])
    elapsed = time.perf_counter() - t0
    PHASES.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as s:
            done = await s.scalar(select(func.count()).select_from(ChannelOrder).where(
                ChannelOrder.status == "fulfilled", ChannelOrder.channel_order_id.like(f"{tag}-%")))
    assert done == n, f"{done} of {n} orders fulfilled"
    return elapsed


async def issue_latencies(c: Any, fx: dict[str, Any], n: int, concurrency: int = 50) -> list[float]:
    now = dt.datetime.now(dt.UTC)

    def one(i: int) -> Any:
        async def go() -> float:
            order = OrderIn(order_id=f"LL-{concurrency}-{i}", placed_at=now,
                            lines=[OrderLine(line_id="1", sku="SKU", quantity=1, unit_price_fen=990)])
            event = ChannelEvent(message_id=f"iss-{concurrency}-{i}", type="code.issue", occurred_at=now,
                                 issue=IssueRequest(order=order))
            body, headers = _signed(fx["secret"], event)
            t0 = time.perf_counter()
            r = await c.post(f"/channels/{fx['account_id']}/callback", content=body, headers=headers)
            took = time.perf_counter() - t0
            assert r.status_code == 200 and b'"issued"' in r.content, r.text
            return took
        return go

    return await _bounded(concurrency, [one(i) for i in range(n)])


async def bare_floor(app_url: str, tenant_id: uuid.UUID, n: int, statements: int,
                     concurrency: int = 50) -> tuple[list[float], float]:
    """The floor under the issue path: ``n`` transactions of ``statements`` round trips each (the tenant's
    ``set_config`` and ``statements - 1`` prepared ``SELECT``\ s of one listing row through RLS) on a bare
    asyncpg pool of the app's size, ``concurrency`` at a time, no ORM, no HTTP. Returns the latencies and
    this process's CPU seconds per transaction."""
    import asyncpg

    pool = await asyncpg.create_pool(app_url.replace("+asyncpg", ""), min_size=10, max_size=10)
    tenant = str(tenant_id)

    async def one() -> float:
        t0 = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("select set_config('app.tenant_id', $1, true)", tenant)
            for _ in range(statements - 1):
                await conn.fetchrow("SELECT id, quota FROM listings WHERE tenant_id = $1 AND sku = 'SKU'", tenant_id)
        return time.perf_counter() - t0

    try:
        await _bounded(concurrency, [one for _ in range(20)])
        cpu = time.process_time()
        lat = await _bounded(concurrency, [one for _ in range(n)])
        return lat, (time.process_time() - cpu) / n
    finally:
        await pool.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> None:
    print(machine_line())
    async with throwaway_database(args.admin_url, prefix="kaquan_bench_channel") as db:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = bench_settings(db, data_dir, generate_master_key_spec(), "")
            app = quiet_app(settings)
            app.state.jobs.plugins.register(BenchPlugin(), name="bench-channel")
            fx = await prepare(app, args.orders * args.rounds + args.issues + 10)
            async with running(app) as c:
                await app.state.jobs.relay.stop()  # the benchmark runs the channel-order jobs itself
                r = await c.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=fx["client"])
                token = r.json()["access_token"]
                await grants_round(c, token, fx["grant_product"], 20, "warm")
                await orders_round(c, app, fx, 20, "warm")
                rows = []
                for k in range(args.rounds):
                    g = await grants_round(c, token, fx["grant_product"], args.orders, f"g{k}")
                    o = await orders_round(c, app, fx, args.orders, f"o{k}")
                    rows.append((args.orders / g, args.orders / o))
                cpu = time.process_time()
                solo = await issue_latencies(c, fx, 20, concurrency=1)
                cpu_solo = (time.process_time() - cpu) / 20
                cpu = time.process_time()
                lat = await issue_latencies(c, fx, args.issues)
                cpu_conc = (time.process_time() - cpu) / args.issues
            floor, cpu_floor = await bare_floor(db.app_url, fx["tenant_id"], args.issues, args.floor_statements)
    print("\n### Channel order fulfilment through callbacks vs grants\n")
    print("| round | grants/s | channel orders/s | ratio |\n|---|---:|---:|---:|")
    for k, (g, o) in enumerate(rows, 1):
        print(f"| {k} | {g:.1f} | {o:.1f} | {o / g:.2f} |")
    ratios = [o / g for g, o in rows]
    print(f"| median | | | **{statistics.median(ratios):.2f}** |")
    share = [sum(p[i] for p in PHASES[1:]) for i in range(3)]
    total = sum(share) or 1
    print(f"\nTime of a channel order round: callbacks {share[0] / total:.0%}, processing (risk, quota, "
          f"allocation) {share[1] / total:.0%}, delivery to the channel {share[2] / total:.0%}.")
    print(f"\n### Local-life issue requests, 50 concurrent ({len(lat)} requests)\n")
    print("| p50 | p99 | max | Douyin's limit |\n|---:|---:|---:|---:|")
    print(f"| {pct(lat, 50) * 1000:.0f} ms | {pct(lat, 99) * 1000:.0f} ms | {max(lat) * 1000:.0f} ms | 8000 ms |")
    print(f"\nOne at a time (20 requests): p50 {pct(solo, 50) * 1000:.0f} ms, max {max(solo) * 1000:.0f} ms.")
    print(f"\nCPU of this process per issue request (app and load generator, one event loop): "
          f"{cpu_solo * 1000:.1f} ms one at a time, {cpu_conc * 1000:.1f} ms at 50 concurrent.")
    print(f"\nFloor, bare asyncpg ({args.floor_statements} round trips per transaction, 50 concurrent, "
          f"{len(floor)} transactions): p50 {pct(floor, 50) * 1000:.0f} ms, p99 {pct(floor, 99) * 1000:.0f} ms, "
          f"CPU {cpu_floor * 1000:.2f} ms per transaction.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--issues", type=int, default=500)
    parser.add_argument("--floor-statements", type=int, default=30,
                        help="round trips per bare asyncpg transaction (the issue path's statement count)")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    asyncio.run(main(parser.parse_args()))
