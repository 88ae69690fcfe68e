"""Stock push through the three built-in HTTP channel connectors to local fake channel servers.

3 accounts (one ``ecommerce``, one ``locallife``, one ``social``) × N listings each (default 10,000), pushed in
batches of 500 (the stock-sync batch size), the three accounts at once, each account's batches one after the
other (as one coalesced push job per account runs). Every push goes over real HTTP on 127.0.0.1 to the fake
platform of ``tests/fakes`` (a stdlib threaded server that checks the signature or token and applies each SKU).

Baseline in the same run: the same requests, byte for byte (recorded from the connectors once), sent with a
bare ``httpx`` client that only reads the answer's JSON — the cost of the channel round trips alone. The ratio
is the connectors' own cost (encoding, signing, token handling, per-item results). The fakes forget their SKUs
before every run, so each run applies every item.

Also: the connector's part of a local-life issue request (verify the signature, parse, build the answer with
the codes), 50 at a time, as a p99 against the platform's 8-second limit.

    .venv/bin/python bench/channel_push.py [--listings 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import structlog

from bench._pg import machine_line
from plugins import CallbackOutcome, CallbackRequest, ConnectorContext, IssuedCode, StockItem, StockPush
from plugins.builtin.ecommerce_channel import CONNECTOR as ECOMMERCE
from plugins.builtin.ecommerce_channel import EcommerceConfig
from plugins.builtin.locallife_channel import CONNECTOR as LOCALLIFE
from plugins.builtin.locallife_channel import LocallifeConfig
from plugins.builtin.social_channel import CONNECTOR as SOCIAL
from plugins.builtin.social_channel import SocialConfig
from tests.fakes.channel_servers import FakeChannelServer, FakeLocalLife, FakeMarketplace, FakeSocialShop

BATCH = 500


def _accounts() -> list[tuple[str, Any, Any, FakeChannelServer, str]]:
    market = FakeMarketplace(app_secret="bench-mk").start()
    life = FakeLocalLife(client_secret="bench-ll").start()
    shop = FakeSocialShop(secret="bench-so", callback_token="bench-cb").start()
    assert (
        isinstance(market, FakeMarketplace)
        and isinstance(life, FakeLocalLife)
        and isinstance(shop, FakeSocialShop)
    )
    return [
        (
            "ecommerce",
            ECOMMERCE,
            EcommerceConfig(base_url=market.url, app_secret="bench-mk"),
            market,
            market.issue_token(),
        ),
        ("locallife", LOCALLIFE, LocallifeConfig(base_url=life.url, client_secret="bench-ll"), life, ""),
        (
            "social",
            SOCIAL,
            SocialConfig(base_url=shop.url, secret="bench-so", callback_token="bench-cb"),
            shop,
            "",
        ),
    ]


def _batches(name: str, listings: int, version: int) -> list[StockPush]:
    items = [
        StockItem(
            sku=f"{name}-{i:06d}", listing_id=f"L{i}", available=100 + i % 50, price_fen=9000, version=version
        )
        for i in range(listings)
    ]
    return [
        StockPush(reference=f"{name}-{version}-{n}", items=items[n : n + BATCH])
        for n in range(0, listings, BATCH)
    ]


def _ctx(config: Any, http: httpx.AsyncClient, token: str) -> ConnectorContext:
    return ConnectorContext(
        tenant_id=uuid.uuid4(),
        config=config,
        http=http,
        log=structlog.get_logger("bench"),
        access_token=token,
    )


async def _push_account(
    connector: Any, config: Any, token: str, pushes: list[StockPush], http: httpx.AsyncClient
) -> int:
    ok = 0
    ctx = _ctx(config, http, token)
    for push in pushes:
        result = await connector.push_stock(ctx, push)
        ok += sum(r.status == "ok" for r in result.items)
    return ok


async def _record(
    accounts: list[tuple[str, Any, Any, FakeChannelServer, str]], listings: int
) -> dict[str, list[httpx.Request]]:
    """The exact requests each connector sends for one full push (answered by the fake without a socket)."""
    recorded: dict[str, list[httpx.Request]] = {}
    for name, connector, config, fake, token in accounts:
        seen: list[httpx.Request] = []
        forward = fake.httpx_handler()

        def handler(
            request: httpx.Request, seen: list[httpx.Request] = seen, forward: Any = forward
        ) -> httpx.Response:
            seen.append(request)
            return forward(request)

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            await _push_account(connector, config, token, _batches(name, listings, 1), http)
        recorded[name] = [r for r in seen if "stable_token" not in str(r.url)]
    return recorded


async def _bare(requests: list[httpx.Request], http: httpx.AsyncClient) -> int:
    ok = 0
    for request in requests:
        answer = await http.request(
            request.method, request.url, content=request.content, headers=request.headers
        )
        ok += answer.status_code == 200 and isinstance(answer.json(), dict)
    return ok


async def _run(
    accounts: list[tuple[str, Any, Any, FakeChannelServer, str]], listings: int, rounds: int
) -> dict[str, list[float]]:
    recorded = await _record(accounts, listings)
    times: dict[str, list[float]] = {"connectors": [], "bare": []}
    limits = httpx.Limits(max_connections=10, max_keepalive_connections=10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        for round_ in range(rounds):
            for variant in ("connectors", "bare") if round_ % 2 == 0 else ("bare", "connectors"):
                for _, _, _, fake, _ in accounts:
                    fake.skus.clear()
                started = time.perf_counter()
                if variant == "connectors":
                    done = await asyncio.gather(
                        *(
                            _push_account(c, cfg, tok, _batches(n, listings, 2 + round_), http)
                            for n, c, cfg, _, tok in accounts
                        )
                    )
                    assert done == [listings] * 3, f"not every item applied: {done}"
                else:
                    await asyncio.gather(*(_bare(recorded[n], http) for n, *_ in accounts))
                times[variant].append(time.perf_counter() - started)
                assert all(len(fake.skus) == listings for *_, fake, _ in accounts)
    return times


async def _issue_p99(batches: int = 20, concurrency: int = 50) -> list[float]:
    life = FakeLocalLife(client_secret="bench-ll")
    config = LocallifeConfig(client_secret="bench-ll")
    took: list[float] = []
    async with httpx.AsyncClient() as http:
        ctx = _ctx(config, http, "")

        async def one(call: Any) -> None:
            started = time.perf_counter()
            request = CallbackRequest(
                headers={k.lower(): v for k, v in call.headers.items()},
                query={},
                body=call.body,
                received_at=ctx.now(),
            )
            event = await LOCALLIFE.parse_callback(ctx, request)
            order = event.issue.order
            codes = [IssuedCode(line_id=order.lines[0].line_id, code=f"C{order.order_id}")]
            LOCALLIFE.callback_reply(ctx, event, CallbackOutcome(status="issued", codes=codes))
            took.append(time.perf_counter() - started)

        for _ in range(batches):
            calls = [life.buy(f"SKU-{n % 7}") for n in range(concurrency)]
            await asyncio.gather(*(one(c) for c in calls))
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    accounts = _accounts()
    try:
        times = asyncio.run(_run(accounts, args.listings, args.rounds))
    finally:
        for *_, fake, _ in accounts:
            fake.stop()
    issue = sorted(asyncio.run(_issue_p99()))
    print(machine_line())
    print(f"3 accounts × {args.listings:,} listings, batches of {BATCH}; {args.rounds} interleaved rounds\n")
    print("| variant | median s | best s | items/s (median) | vs bare round trips |")
    print("|---|---:|---:|---:|---:|")
    bare = statistics.median(times["bare"])
    for variant in ("connectors", "bare"):
        median = statistics.median(times[variant])
        print(
            f"| {variant} | {median:.2f} | {min(times[variant]):.2f} | {3 * args.listings / median:,.0f} | "
            f"{bare / median:.0%} |"
        )
    p99 = issue[int(len(issue) * 0.99) - 1]
    print(
        f"\nLocal-life issue request, connector part (verify, parse, answer with codes), {len(issue)} requests "
        f"50 at a time: p50 {statistics.median(issue) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms (channel limit 8,000 ms)"
    )


if __name__ == "__main__":
    main()
