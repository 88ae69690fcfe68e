"""Stock sync after one bulk change: 3 channel accounts × N listings pushed to a local fake channel server.

Every listing of the tenant changes at once (one UPDATE, as a bulk repricing or the quota resize after a
large stock change does); the coalesced push of each account then runs as a worker would run it
(``core.channels.pushing.push_account``, concurrently for the 3 accounts): read the changed listings in
batches of 500, call the connector through the call seam (``bound.call("push_stock", ...)``, which POSTs the
batch as JSON to a stdlib HTTP server on 127.0.0.1), record every item's answer. The baseline is the same
batches POSTed to the same server by a bare httpx loop (no database), in the same run. Prints markdown.

    .venv/bin/python bench/stock_sync.py [--listings 10000] [--accounts 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import msgspec
from sqlalchemy import func, insert, select, update

from bench._pg import machine_line, throwaway_database
from core.catalog.models import Product
from core.channels.models import Listing
from core.channels.pushing import BATCH, push_account
from core.connectors.models import ConnectorAccount
from core.db.context import tenant_context
from core.db.ids import new_id
from core.kernel import Kernel
from core.plugin_host import PluginHost
from core.settings import load_settings
from plugins import CheckResult, ConnectorInfo, StockItemResult, StockPush, StockPushResult, hookimpl
from tenants.onboarding import create_tenant, ensure_default_plans
from tenants.schemas import TenantCreate


class _Channel(BaseHTTPRequestHandler):
    """The fake channel's stock endpoint: accepts a batch, answers each item ``ok`` with what it now holds."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps({"items": [{"sku": i["sku"], "ok": True, "stock": i["available"]}
                                       for i in body["items"]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


class BenchConfig(msgspec.Struct, kw_only=True):
    url: str


class HttpChannel:
    info = ConnectorInfo(id="bench_http_channel", kind="sales_channel", display_name="Bench channel",
                         config=BenchConfig, capabilities=frozenset({"stock_push"}))

    async def check(self, ctx: Any) -> CheckResult:
        return CheckResult(ok=True)

    async def push_stock(self, ctx: Any, push: StockPush) -> StockPushResult:
        body = {"reference": push.reference,
                "items": [{"sku": i.sku, "available": i.available, "price": i.price_fen, "on_sale": i.active}
                          for i in push.items]}
        r = await ctx.http.post(f"{ctx.config.url}/stock", json=body)
        r.raise_for_status()
        return StockPushResult(items=[
            StockItemResult(sku=i["sku"], status="ok" if i["ok"] else "failed", channel_available=i["stock"])
            for i in r.json()["items"]])


class _Plugin:
    @hookimpl
    def kaquan_connectors(self) -> list[Any]:
        return [HttpChannel()]


async def _setup(kernel: Kernel, url: str, listings: int, accounts: int) -> tuple[Any, list[Any]]:
    async with kernel.db.transaction() as db:
        await ensure_default_plans(db)
        created = await create_tenant(kernel, db, TenantCreate(
            name="Bench", slug=f"bench-{os.getpid()}", owner_email="bench@example.com", plan="growth"))
    tenant_id = created.tenant.id
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            product_ids = [new_id() for _ in range(listings)]
            rows = [{"id": pid, "sku": f"P{i:06d}", "kind": "code", "name_zh": f"基准券 {i}"}
                    for i, pid in enumerate(product_ids)]
            for start in range(0, len(rows), 5000):
                await db.execute(insert(Product), rows[start:start + 5000])
            account_ids = []
            for a in range(accounts):
                account = ConnectorAccount(connector_id="bench_http_channel", kind="sales_channel",
                                           name=f"channel {a}", status="active", config={"url": url})
                db.add(account)
                await db.flush()
                account_ids.append(account.id)
                rows = [{"id": new_id(), "account_id": account.id, "product_id": pid, "sku": f"C{a}-{i:06d}",
                         "price_rule": {"kind": "fixed", "price_fen": 9000}, "price_fen": 9000, "quota": 10,
                         "quota_kind": "fixed", "quota_value": 10, "version": 1, "pushed_version": 1}
                        for i, pid in enumerate(product_ids)]
                for start in range(0, len(rows), 5000):
                    await db.execute(insert(Listing), rows[start:start + 5000])
    return tenant_id, account_ids


async def _round(kernel: Kernel, host: PluginHost, tenant_id: Any, account_ids: list[Any]) -> tuple[float, int]:
    with tenant_context(tenant_id):
        started = time.perf_counter()
        async with kernel.db.transaction() as db:  # the bulk change: every listing has a new price
            await db.execute(update(Listing).values(price_fen=Listing.price_fen + 1, version=Listing.version + 1))
        reports = await asyncio.gather(*(push_account(kernel.db, kernel.keys, host, a) for a in account_ids))
        elapsed = time.perf_counter() - started
        async with kernel.db.transaction() as db:
            behind = await db.scalar(select(func.count()).where(Listing.version > Listing.pushed_version))
    if behind:
        raise SystemExit(f"{behind} listings were not pushed")
    return elapsed, sum(r.pushed for r in reports)


async def _bare(url: str, listings: int, accounts: int) -> float:
    async def one(a: int) -> None:
        async with httpx.AsyncClient() as http:
            for start in range(0, listings, BATCH):
                items = [{"sku": f"C{a}-{i:06d}", "available": 10, "price": 9001, "on_sale": True}
                         for i in range(start, min(listings, start + BATCH))]
                r = await http.post(f"{url}/stock", json={"reference": f"{a}:{start}", "items": items})
                r.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(one(a) for a in range(accounts)))
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listings", type=int, default=10_000, help="listings per account")
    parser.add_argument("--accounts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Channel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    host = PluginHost()
    host.register(_Plugin(), name="bench_http_channel")
    host.check()
    key = "mk-bench:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    results: list[tuple[float, int, float]] = []
    try:
        async with throwaway_database() as bench_db:
            settings = load_settings(env={}, database_url=bench_db.app_url, database_owner_url=bench_db.owner_url,
                                     master_key=key, log_level="WARNING")
            kernel = Kernel.create(settings)
            try:
                tenant_id, account_ids = await _setup(kernel, url, args.listings, args.accounts)
                for _ in range(args.rounds):
                    elapsed, pushed = await _round(kernel, host, tenant_id, account_ids)
                    results.append((elapsed, pushed, await _bare(url, args.listings, args.accounts)))
            finally:
                await kernel.close()
    finally:
        server.shutdown()
    total = args.listings * args.accounts
    print(f"Machine: {machine_line()}")
    print(f"{args.accounts} accounts × {args.listings:,} listings, every listing changed at once, "
          f"batches of {BATCH}, pushed to a local HTTP channel\n")
    print("| round | listings pushed | kaquan seconds | listings/s | bare HTTP seconds | bare / kaquan |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, (elapsed, pushed, bare) in enumerate(results, 1):
        assert pushed == total, (pushed, total)
        print(f"| {n} | {pushed:,} | {elapsed:.2f} | {pushed / elapsed:,.0f} | {bare:.2f} | {bare / elapsed:.0%} |")


if __name__ == "__main__":
    asyncio.run(main())
