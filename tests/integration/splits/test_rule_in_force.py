"""The rule in force, from the database, agrees with the rule model on random scenarios: listing over
account over channel kind, a version without terms falls back, a listing's legacy split while it has no
version, versions of a later time never change an earlier order's rule."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from core.db.context import tenant_context
from core.splits.rules import (
    create_version,
    latest_in_force,
    legacy_terms,
    rule_in_force,
    terms_from_snapshot,
)
from core.splits.terms import SplitComponent, SplitTerms
from tests.integration.channel_orders.fake_channel import CONNECTOR_ID, add_listing

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _model(versions: dict[str, list[Any]], subjects: list[str], legacy: SplitTerms | None,
           at: dt.datetime) -> tuple[uuid.UUID | None, SplitTerms]:
    for i, subject in enumerate(subjects):
        rule = latest_in_force(versions.get(subject, []), at)
        if i == 0 and rule is None and legacy is not None:
            return None, legacy
        if rule is not None and rule.terms is not None:
            return rule.id, terms_from_snapshot(rule.terms)
    return None, SplitTerms()


async def test_rule_in_force_matches_the_model(kernel: Any, seller: Any) -> None:
    tid, account = seller.tenant_id, seller.shop.account_id
    listing = await add_listing(kernel, seller.shop, seller.stocked.product_id, "SKU-M", 2)  # legacy 10% + 2%
    legacy = legacy_terms({"channel_bp": 1000, "platform_bp": 200})
    subjects = [f"listing:{listing}", f"account:{account}", f"connector:{CONNECTOR_ID}"]
    rnd = random.Random(20261206)
    versions: dict[str, list[Any]] = {}
    with tenant_context(tid):
        for step in range(40):
            async with kernel.db.transaction() as db:
                subject = rnd.choice(subjects)
                terms = None if rnd.random() < 0.25 else SplitTerms(components=[
                    SplitComponent(party="channel", basis="sale", bp=rnd.randint(1, 3000))])
                rule = await create_version(db, subject, terms, valid_from=T0 + dt.timedelta(hours=rnd.randint(0, 200)))
                db.expunge(rule)
                versions.setdefault(subject, []).append(rule)
            for _ in range(5):
                at = T0 + dt.timedelta(hours=rnd.randint(-5, 210))
                async with kernel.db.transaction() as db:
                    got = await rule_in_force(db, CONNECTOR_ID, account, listing, at)
                assert got == _model(versions, subjects, legacy, at), (step, at)
            # an order placed at `at` keeps its rule whatever versions start after it
            placed = T0 + dt.timedelta(hours=rnd.randint(0, 200))
            async with kernel.db.transaction() as db:
                before = await rule_in_force(db, CONNECTOR_ID, account, listing, placed)
                await create_version(db, rnd.choice(subjects), None, valid_from=placed + dt.timedelta(minutes=1))
                assert await rule_in_force(db, CONNECTOR_ID, account, listing, placed) == before
                await db.rollback()
