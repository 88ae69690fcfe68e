"""``/api/v1/split-rules`` and ``/api/v1/split-ledger``: versions, the rule in force, preview, bad input
refused with problem+json and nothing written, ledger rows and balances."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.integration.channels.conftest import add_account
from tests.integration.grants.shops import open_shop

TEN_PCT = {"components": [{"party": "channel", "basis": "sale", "bp": 1000}]}


async def test_versions_in_force_and_preview(client: Any, kernel: Any, make_tenant: Any, make_api_client: Any) -> None:
    shop = await open_shop(client, kernel, make_tenant, make_api_client)
    account = await add_account(shop)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat()
    r = await shop.post("/api/v1/split-rules", {"subject": "connector:fake_channel", "terms": TEN_PCT,
                                                "valid_from": past, "note": "电商"})
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert (v1["version"], v1["subject"], v1["terms"]["components"][0]["bp"]) == (1, "connector:fake_channel", 1000)
    r = await shop.post("/api/v1/split-rules", {"subject": f"account:{account}", "terms": {
        "components": [{"party": "channel", "basis": "redeemed", "bp": 500}]}})
    assert r.status_code == 201
    acct_rule = r.json()

    r = await shop.get("/api/v1/split-rules/in-force", account=str(account))
    assert r.status_code == 200 and r.json()["rule_id"] == acct_rule["id"]
    # before the account's version existed, the channel kind's applied
    r = await shop.get("/api/v1/split-rules/in-force", account=str(account),
                       at=(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat())
    assert r.json()["rule_id"] == v1["id"] and r.json()["version"] == 1
    # the account stops overriding: the channel kind's rule applies again
    r = await shop.post("/api/v1/split-rules", {"subject": f"account:{account}", "terms": None})
    assert r.status_code == 201 and r.json()["version"] == 2
    assert (await shop.get("/api/v1/split-rules/in-force", account=str(account))).json()["rule_id"] == v1["id"]

    page = (await shop.get("/api/v1/split-rules", subject=f"account:{account}")).json()
    assert [x["version"] for x in page["items"]] == [2, 1]
    page = (await shop.get("/api/v1/split-rules", limit=2)).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = (await shop.get("/api/v1/split-rules", limit=2, cursor=page["next_cursor"])).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert {x["id"] for x in page["items"] + rest["items"]} >= {v1["id"], acct_rule["id"]}
    assert (await shop.get(f"/api/v1/split-rules/{v1['id']}")).json()["note"] == "电商"
    presets = (await shop.get("/api/v1/split-rules/presets")).json()
    assert presets["redeemed_5"]["components"][0]["basis"] == "redeemed"
    assert [c["min_referrals"] for c in presets["conversion_sharer_kol"]["components"]] == [0, 3, 0]
    r = await shop.post("/api/v1/split-rules", {"subject": "connector:social", "terms": presets["conversion_sharer_kol"]})
    assert r.status_code == 201 and r.json()["terms"] == presets["conversion_sharer_kol"]

    r = await shop.post("/api/v1/split-rules/preview", {"rule_id": v1["id"], "gross_fen": 2999, "quantity": 3})
    assert r.status_code == 200, r.text
    events = r.json()["events"]
    assert [e["event"] for e in events] == ["sale", "refund", "refund"]
    assert events[0]["totals"] == {"channel": 299, "tenant": 2700}
    assert events[1]["units"] == 1 and sum(events[1]["totals"].values()) == -999
    assert all(v == 0 for v in events[-1]["balance"].values())
    r = await shop.post("/api/v1/split-rules/preview", {"terms": {"components": [
        {"party": "channel", "basis": "redeemed", "bp": 500, "min_fen": 60}]}, "gross_fen": 1000, "quantity": 1})
    assert [e["event"] for e in r.json()["events"]] == ["sale", "redemption", "redemption_rollback", "refund"]
    assert r.json()["events"][1]["totals"] == {"channel": 60, "tenant": -60}


async def test_bad_input_is_refused_and_writes_nothing(client: Any, kernel: Any, make_tenant: Any,
                                                       make_api_client: Any) -> None:
    shop = await open_shop(client, kernel, make_tenant, make_api_client)
    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"subject": "connector:x", "terms": {"components": [{"party": "channel", "basis": "sale", "bp": 10.5}]}},
         400, ""),
        ({"subject": "connector:x", "terms": {"components": [{"party": "channel", "basis": "sale", "bp": 20000}]}},
         400, ""),
        ({"subject": "connector:x", "terms": {"components": [
            {"party": "channel", "basis": "sale", "bp": 100, "min_fen": 500, "max_fen": 100}]}}, 422, "min_above_max"),
        ({"subject": "connector:x", "terms": {"components": [{"party": "channel", "basis": "sale"}]}},
         422, "charges_nothing"),
        ({"subject": "connector:x", "terms": {"components": [
            {"party": "referrer", "basis": "sale", "bp": 5, "min_referrals": 3}]}}, 422, "referrals_need_conversion"),
        ({"subject": "shop:1", "terms": TEN_PCT}, 422, ""),
        ({"subject": "account:not-a-uuid", "terms": TEN_PCT}, 422, ""),
        ({"subject": "account:0190c1f2-0000-7000-8000-000000000000", "terms": TEN_PCT}, 404,
         "split_subject_not_found"),
        ({"subject": "connector:x", "terms": TEN_PCT, "valid_from": "2026-01-01T00:00:00"}, 422, ""),
        ({"subject": "connector:x", "terms": {"components": [], "extra": 1}}, 400, ""),
    ]
    for body, status, code in bad:
        r = await shop.post("/api/v1/split-rules", body)
        assert r.status_code in ((400, 422) if status == 400 else (status,)), (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if code:
            assert code in r.text, r.text
    assert (await shop.get("/api/v1/split-rules")).json()["items"] == []
    r = await shop.post("/api/v1/split-rules/preview", {"gross_fen": 100})
    assert r.status_code == 422
    r = await shop.post("/api/v1/split-rules/preview", {"terms": TEN_PCT, "gross_fen": 1.5})
    assert r.status_code in (400, 422) and "gross_fen" in r.text
    assert (await shop.get("/api/v1/split-ledger", period="2026-13")).status_code == 422
    assert (await shop.get("/api/v1/split-ledger", event="gift")).status_code == 422
    assert (await shop.get("/api/v1/split-rules/0190c1f2-0000-7000-8000-000000000000")).status_code == 404


async def test_ledger_rows_and_balances(client: Any, kernel: Any, app: Any, seller: Any, channel: Any) -> None:
    from tests.integration.channel_orders.fake_channel import add_listing, event_body, post_callback, run_jobs
    from tests.integration.splits.test_posting import _paid, _refund

    await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-B", 5, price_fen=1000)
    await post_callback(client, seller.shop, event_body(_paid("O-B", "SKU-B", 2, 1000)))
    assert await run_jobs(app, seller.tenant_id) == []
    await post_callback(client, seller.shop, event_body(_refund("O-B", 1, "RF-B", 1000)))
    assert await run_jobs(app, seller.tenant_id) == []
    headers = seller.headers
    page = (await client.get("/api/v1/split-ledger", params={"account": str(seller.shop.account_id)},
                             headers=headers)).json()
    assert {(x["event"], x["party"], x["amount_fen"]) for x in page["items"]} == {
        ("sale", "channel", 200), ("sale", "platform", 40), ("sale", "tenant", 1760),
        ("refund", "channel", -100), ("refund", "platform", -20), ("refund", "tenant", -880)}
    line = page["items"][0]["line_id"]
    period = page["items"][0]["period"]
    sale = (await client.get("/api/v1/split-ledger", params={"event": "sale", "line": line, "limit": 2},
                             headers=headers)).json()
    assert len(sale["items"]) == 2 and sale["next_cursor"]
    r = await client.get("/api/v1/split-ledger/balances", params={"period": period, "line": line}, headers=headers)
    body = r.json()
    assert {(b["party"], b["amount_fen"], b["rows"]) for b in body["items"]} == {
        ("channel", 100, 2), ("platform", 20, 2), ("tenant", 880, 2)}
    assert body["line"] == {"channel": 100, "platform": 20, "tenant": 880}
