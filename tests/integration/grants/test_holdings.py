"""``core.grants.holdings.member_holdings``, what the console's member page shows: the units a member holds
(code masked, with its product) and their latest grants, newest first, with those grants' products."""

from __future__ import annotations

import secrets

from core.db.context import tenant_context
from core.grants.holdings import member_holdings
from core.grants.schemas import GrantRequest
from core.grants.services import create_grant, void_grant
from core.inventory.vault import masked_code
from tests.integration.inventory.stocking import stock_product


async def test_held_units_are_masked_with_their_product_and_grants_are_newest_first(kernel, make_tenant):
    tenant = await make_tenant()
    coffee = await stock_product(kernel, tenant.id, 3)
    tea = await stock_product(kernel, tenant.id, 1)
    phone = f"139{secrets.randbelow(10**8):08d}"
    with tenant_context(tenant.id):
        async with kernel.db.transaction() as db:
            grants = [
                await create_grant(
                    db, kernel, GrantRequest(product_id=p, quantity=n, phone=phone, channel="none"), source="api"
                )
                for p, n in ((coffee.product_id, 2), (tea.product_id, 1), (coffee.product_id, 1))
            ]
            await void_grant(db, kernel, grants[2].id, "entered by mistake")  # its unit goes back to stock
        member_id = grants[0].member_id
        assert member_id is not None
        async with kernel.db.transaction() as db:
            everything = await member_holdings(db, member_id, grant_limit=10)
            latest = await member_holdings(db, member_id, grant_limit=2)

    held = everything.held
    assert len(held) == 3 and all(h.item.member_id == member_id for h in held)
    products = {h.item.grant_id: h.product.id for h in held if h.product is not None}
    assert products == {grants[0].id: coffee.product_id, grants[1].id: tea.product_id}
    numbers = coffee.numbers + tea.numbers
    assert {h.masked for h in held} <= {masked_code(n) for n in numbers}
    assert not any(n in h.masked for h in held for n in numbers)
    assert [g.id for g in everything.grants] == [g.id for g in reversed(grants)]
    assert set(everything.products) == {coffee.product_id, tea.product_id}
    assert [g.id for g in latest.grants] == [grants[2].id, grants[1].id]
