"""Finding grants by a member's phone (normalised: +86, spaces, dashes) and by a card number, through the API's
list endpoint: looked up by keyed digest, only the tenant's own grants."""

from __future__ import annotations

from tests.integration.claims.helpers import Shop, random_phone


async def test_grants_found_by_phone_and_by_code(shop: Shop, other_shop: Shop) -> None:
    first, second = await shop.stock(1), await shop.stock(1)
    phone_a, phone_b = random_phone(), random_phone()
    g1 = await shop.grant(first.product_id, phone=phone_a)
    g2 = await shop.grant(second.product_id, phone=phone_b)
    await shop.grant((await shop.stock(1)).product_id, phone=phone_b)

    typed = f"+86 {phone_a[:3]}-{phone_a[3:7]} {phone_a[7:]}"
    r = await shop.get("/api/v1/grants", phone=typed)
    assert r.status_code == 200, r.text
    assert [g["id"] for g in r.json()["items"]] == [g1["id"]]
    assert len((await shop.get("/api/v1/grants", phone=phone_b)).json()["items"]) == 2

    number = second.numbers[0]
    r = await shop.get("/api/v1/grants", code=f" {number} ")
    assert [g["id"] for g in r.json()["items"]] == [g2["id"]]
    # both filters at once narrow; a code of another member's grant with this phone finds nothing
    assert (await shop.get("/api/v1/grants", phone=phone_a, code=number)).json()["items"] == []
    assert (await shop.get("/api/v1/grants", code="NO-SUCH-CODE-123")).json()["items"] == []

    bad = await shop.get("/api/v1/grants", phone="12345")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_phone"
    # another tenant never sees our grants, by phone or by code
    assert (await other_shop.get("/api/v1/grants", phone=phone_a)).json()["items"] == []
    assert (await other_shop.get("/api/v1/grants", code=number)).json()["items"] == []
