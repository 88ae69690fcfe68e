"""``find_or_create_member(upsert=True)`` (the grant path) keeps the rules of the general path: found by
external id or phone, created once (audited once), empty fields filled and none overwritten, the phone
sealed, a blocked member stays blocked, and the combinations the upsert does not cover still work."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from core.audit.models import AuditEvent
from core.db.context import tenant_context
from core.errors import Conflict
from core.members.models import Member
from core.members.services import find_or_create_member, member_phone, phone_digest

PHONE = "+86 137-0000-2222"


async def _resolve(shop: Any, **identifiers: Any) -> Member:
    async def work(db: Any) -> Member:
        return await find_or_create_member(db, shop.kernel, source="grant", upsert=True, **identifiers)

    member: Member = await shop.run(work)
    return member


async def _created_audits(shop: Any, member_id: Any) -> int:
    async def count(db: Any) -> int:
        query = select(func.count()).where(
            AuditEvent.action == "member.created", AuditEvent.object_id == str(member_id)
        )
        return int(await db.scalar(query))

    return int(await shop.run(count))


async def test_by_external_id_created_once_then_found_and_filled(shop):
    first = await _resolve(shop, external_id=" crm-7 ")
    assert (first.external_id, first.email, first.name, first.status) == ("crm-7", None, None, "active")
    again = await _resolve(shop, external_id="crm-7", email="a@Example.COM", name="Li")
    assert again.id == first.id and (again.email, again.name) == ("a@example.com", "Li")
    kept = await _resolve(shop, external_id="crm-7", email="other@example.com", name="Wang")
    assert (kept.email, kept.name) == ("a@example.com", "Li")  # filled fields are never overwritten
    assert await _created_audits(shop, first.id) == 1
    stored = await shop.run(lambda db: db.execute(select(Member).where(Member.external_id == "crm-7")))
    (row,) = stored.scalars()
    assert (row.email, row.name, row.source) == ("a@example.com", "Li", "grant")


async def test_by_phone_sealed_found_whatever_its_spelling(shop):
    first = await _resolve(shop, phone=PHONE, name="Zhao")
    assert first.phone_masked == "137****2222" and first.phone_secret and PHONE not in str(first.phone_secret)

    async def check(db: Any) -> tuple[str | None, str]:
        return await member_phone(db, shop.kernel, first), await phone_digest(
            db, shop.kernel, "+8613700002222"
        )

    plain, digest = await shop.run(check)
    assert plain == "+8613700002222" and first.phone_digest == digest
    again = await _resolve(shop, phone="0086 13700002222", email="z@example.com")
    assert again.id == first.id and again.name == "Zhao" and again.email == "z@example.com"
    assert await _created_audits(shop, first.id) == 1


async def test_a_blocked_member_is_found_blocked(shop):
    member = await _resolve(shop, external_id="blocked-1")
    r = await shop.patch(f"/api/v1/members/{member.id}", {"status": "blocked"})
    assert r.status_code == 200, r.text
    assert (await _resolve(shop, external_id="blocked-1", email="b@example.com")).status == "blocked"
    s = await shop.stock(1)
    r = await shop.post("/api/v1/grants", {"product_id": str(s.product_id), "external_id": "blocked-1"})
    assert r.status_code == 409 and r.json()["code"] == "member_blocked"


async def test_combinations_outside_the_upsert_keep_the_general_rules(shop):
    by_ext = await _resolve(shop, external_id="ext-1")
    by_phone = await _resolve(shop, phone="13700003333")
    with pytest.raises(Conflict) as refused:  # both identifiers, two members
        await _resolve(shop, external_id="ext-1", phone="13700003333")
    assert refused.value.code == "member_mismatch"
    both = await _resolve(shop, external_id="ext-2", phone="13700004444")
    assert both.external_id == "ext-2" and both.phone_masked == "137****4444"
    oldest = await _resolve(shop, email="mail@example.com")
    assert (await _resolve(shop, email="mail@example.com")).id == oldest.id
    assert (await _resolve(shop, member_id=by_phone.id)).id == by_phone.id
    assert by_ext.id != by_phone.id


async def test_a_member_already_in_the_session_is_updated_in_place(shop):
    await _resolve(shop, phone="13700005555")

    async def work(db: Any) -> tuple[bool, str | None]:
        loaded = (await db.execute(select(Member).where(Member.name.is_(None)))).scalars().all()
        found = await find_or_create_member(
            db, shop.kernel, phone="13700005555", name="Qian", source="grant", upsert=True
        )
        return any(m is found for m in loaded), found.name

    assert await shop.run(work) == (True, "Qian")


async def test_concurrent_upserts_create_one_member(shop, test_env):
    if test_env.backend != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")

    async def one() -> Member:
        with tenant_context(shop.id):
            async with shop.kernel.db.transaction() as db:
                member = await find_or_create_member(
                    db, shop.kernel, external_id="race", name="R", source="grant", upsert=True
                )
                await asyncio.sleep(0.05)  # hold the row while the others wait on the unique index
                return member

    members = await asyncio.gather(*[one() for _ in range(6)])
    assert len({m.id for m in members}) == 1
    assert await _created_audits(shop, members[0].id) == 1
