"""Settlement figures against the ledger rows they come from: for random months of sales, redemptions,
rollbacks, partial refunds and adjustments (seeded, reproducible) the API's totals and lines equal the
definitions summed in Python, and net due = gross − commission − refunds + adjustments to the fen."""

from __future__ import annotations

import random
from typing import Any

from core.db.context import tenant_context
from core.splits.ledger import EntryIn, append
from tests.integration.channel_orders.fake_channel import connect_account
from tests.integration.settlements.scenario import at, seed_month

NON_TENANT = ("channel", "platform", "referrer", "kol")


def _month_rows(rng: random.Random, account_id: Any, lines: list[Any], orders: list[Any]) -> list[EntryIn]:
    """Rows as the splits engine writes them: a sale's rows add up to its gross, a redemption's and a
    rollback's to zero, a refund's to minus the gross refunded; adjustments move money between parties."""
    out: list[EntryIn] = []

    def put(line: Any, order: Any, event: str, ref: str, amounts: dict[str, int]) -> None:
        out.extend(EntryIn(account_id=account_id, line_id=line, order_id=order, event=event, event_ref=ref,
                           party=p, amount_fen=a, occurred_at=at(2026, 8, rng.randint(1, 28)), component=p)
                   for p, a in amounts.items())

    for n, (line, order) in enumerate(zip(lines, orders, strict=True)):
        gross = rng.randint(1, 100_000)
        shares = {p: rng.randint(0, gross // 8) for p in rng.sample(NON_TENANT, rng.randint(0, 4))}
        put(line, order, "sale", f"s{n}", {**shares, "tenant": gross - sum(shares.values())})
        if rng.random() < 0.5:
            fee = rng.randint(0, 500)
            put(line, order, "redemption", f"r{n}", {"channel": fee, "tenant": -fee})
            if rng.random() < 0.3:
                put(line, order, "redemption_rollback", f"rb{n}", {"channel": -fee, "tenant": fee})
        if rng.random() < 0.4:
            back = {p: -(a // 2) for p, a in shares.items()}
            refunded = gross // 2
            put(line, order, rng.choice(("refund", "cancellation")), f"f{n}",
                {**back, "tenant": -refunded - sum(back.values())})
        if rng.random() < 0.2:
            d = rng.randint(-300, 300)
            put(line if rng.random() < 0.5 else None, order, "adjustment", f"a{n}", {"channel": -d, "tenant": d})
    return out


def _expected(rows: list[EntryIn]) -> dict[str, int]:
    gross = sum(r.amount_fen for r in rows if r.event == "sale")
    commission = sum(r.amount_fen for r in rows if r.party != "tenant" and r.event != "adjustment")
    refunds = -sum(r.amount_fen for r in rows if r.event in ("refund", "cancellation"))
    adjustments = sum(r.amount_fen for r in rows if r.event == "adjustment" and r.party == "tenant")
    net = sum(r.amount_fen for r in rows if r.party == "tenant")
    return {"gross_fen": gross, "commission_fen": commission, "refunds_fen": refunds,
            "adjustments_fen": adjustments, "net_due_fen": net}


async def test_totals_and_lines_follow_the_rows(client, kernel, seller) -> None:
    for seed in range(6):
        rng = random.Random(seed)
        shop = await connect_account(kernel, seller.tenant_id, name=f"Shop {seed}")
        base = await seed_month(kernel, seller.tenant_id, shop.account_id, 2026, 7, f"S{seed}")  # lines only
        more = await seed_month(kernel, seller.tenant_id, shop.account_id, 2026, 6, f"T{seed}")
        lines, orders = base.line_ids + more.line_ids, base.order_ids + more.order_ids
        rows = _month_rows(rng, shop.account_id, lines, orders)
        with tenant_context(seller.tenant_id):
            async with kernel.db.transaction() as db:
                assert await append(db, rows) == len(rows)
        want = _expected(rows)
        assert want["net_due_fen"] == (want["gross_fen"] - want["commission_fen"] - want["refunds_fen"]
                                       + want["adjustments_fen"])
        url = f"/api/v1/settlements/{shop.account_id}/2026-08"
        got = (await client.get(url, headers=seller.headers)).json()
        assert got["totals"] == want, seed
        assert got["parties"]["tenant"] == want["net_due_fen"]
        page = (await client.get(url + "/lines", params={"limit": 500}, headers=seller.headers)).json()
        assert sum(ln["net_due_fen"] for ln in page["items"]) == want["net_due_fen"]
        assert sum(ln["gross_fen"] for ln in page["items"]) == want["gross_fen"]
        assert sum(ln["refunds_fen"] for ln in page["items"]) == want["refunds_fen"]
        assert sum(ln["channel_fen"] + ln["platform_fen"] + ln["referrer_fen"] + ln["kol_fen"]
                   for ln in page["items"]) == want["commission_fen"]
