"""The member page's QR code carries the card number and the PIN (``number#PIN``): one scan at the redeem
page (or the API) redeems a code that has a PIN, without typing the PIN."""

from __future__ import annotations

from core.inventory.vault import scan_parts, scan_payload
from tests.integration.redemption.helpers import code_state, issued_codes

URL = "/api/v1/redemptions"


def test_the_payload_reads_back_as_number_and_pin() -> None:
    assert scan_payload("CARD1234", "P9") == "CARD1234#P9"
    assert scan_payload("CARD1234", None) == "CARD1234"
    assert scan_parts("CARD1234#P9") == [("CARD1234", "P9")]
    assert scan_parts("A#B#C") == [("A", "B#C"), ("A#B", "C")]  # a number may hold a '#' itself
    assert scan_parts("CARD1234") == [] and scan_parts("#P9") == []


async def test_a_scanned_number_and_pin_redeem_the_code(client, kernel, make_tenant, make_api_client) -> None:
    t = await make_tenant()
    api = await make_api_client(t, ["redemptions:read", "redemptions:write"])
    iss = await issued_codes(kernel, t.id, 2)
    payload = scan_payload(iss.numbers[0], iss.pins[0])

    r = await client.post(f"{URL}/validate", json={"code": payload}, headers=api.headers)
    assert r.status_code == 200 and r.json()["valid"], r.text
    r = await client.post(URL, json={"code": payload, "terminal": "POS-1"}, headers=api.headers)
    assert r.status_code == 201, r.text
    assert iss.pins[0] not in r.text and iss.numbers[0] not in r.text
    assert await code_state(kernel, t.id, iss.code_ids[0]) == "redeemed"

    # a wrong PIN in the payload is a wrong PIN, not an unknown code
    r = await client.post(URL, json={"code": f"{iss.numbers[1]}#WRONG"}, headers=api.headers)
    assert r.status_code in (401, 403, 422) and r.json()["code"] == "pin_mismatch", r.text
    assert await code_state(kernel, t.id, iss.code_ids[1]) != "redeemed"
