"""The request-decoding layer: every route refuses NUL, deep JSON, out-of-range integers, lax types and
wrong media types with a 4xx problem+json, and nothing is stored (issue 9, items 1–4, 6–8)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import unique


def _is_problem(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["code"] == code and body["status"] == status and body["detail"], body
    assert "Traceback" not in r.text
    return body


@pytest.fixture
async def api(client, make_tenant, make_api_client):
    tenant = await make_tenant()
    creds = await make_api_client(tenant)
    return creds.headers


async def _product(client: httpx.AsyncClient, headers: dict[str, str], **fields) -> dict:
    body = {"sku": unique("SKU-"), "kind": "code", "name_zh": "测试卡", **fields}
    r = await client.post("/api/v1/products", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


# --- item 1: NUL -----------------------------------------------------------------------------------

NUL = "a\u0000b"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/products", {"sku": "NUL-1", "kind": "code", "name_zh": NUL}, "name_zh"),
        ("/api/v1/members", {"name": NUL, "phone": "13800138000"}, "name"),
        ("/api/v1/members", {"tags": ["ok", NUL]}, "tags[1]"),
        ("/api/v1/webhooks", {"url": "https://example.com/h", "events": ["*"], "description": NUL}, "description"),
        ("/api/v1/risk/blocklist", {"kind": "phone", "value": "13800138001", "note": NUL}, "note"),
        ("/api/v1/users", {"email": "nul@example.com", "role": "viewer", "name": NUL}, "name"),
        ("/api/v1/redemptions/validate", {"code": NUL}, "code"),
        ("/api/v1/grants", {"product_id": str(uuid.uuid4()), "phone": "13800138002", "campaign_ref": NUL},
         "campaign_ref"),
        ("/api/v1/products", {"sku": "NUL-2", "kind": "code", "name_zh": "x", NUL: 1}, NUL),
    ],
)
async def test_nul_in_any_json_string_is_400_and_nothing_is_stored(client, api, path, body, field):
    r = await client.post(path, headers={**api, "Idempotency-Key": uuid.uuid4().hex}, json=body)
    problem = _is_problem(r, 400, "nul_character")
    assert problem["errors"][0]["field"] == field
    assert problem["errors"][0]["code"] == "nul_character"
    listed = await client.get("/api/v1/products", headers=api, params={"q": "NUL-"})
    assert listed.status_code == 200 and listed.json()["items"] == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/products?q=a%00b", "q"),
        ("/api/v1/products?tag=%00", "tag"),
        ("/api/v1/grants?campaign_ref=x%00", "campaign_ref"),
        ("/api/v1/members?q=%00", "q"),
    ],
)
async def test_nul_in_query_or_path_is_400(client, api, url, field):
    r = await client.get(url, headers=api)
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == field


async def test_nul_in_a_path_is_never_a_500(client, api, app):
    r = await client.get("/api/v1/products/abc%00def", headers=api)
    assert r.status_code in (400, 404) and r.headers["content-type"].startswith("application/problem+json")
    # a routed path with a NUL (as a server decodes %00) is refused before any handler
    from core.http.decoding import request_guard_middleware

    sent: list[dict] = []

    async def never_called(*_a):
        raise AssertionError("the handler must not run")

    async def send(message):
        sent.append(message)

    guard = request_guard_middleware(never_called)
    await guard({"type": "http", "path": "/api/v1/members/a\x00b", "query_string": b"", "headers": []}, None, send)
    assert sent[0]["status"] == 400 and b"nul_character" in sent[1]["body"]


async def test_nul_in_a_header_is_400(client, api):
    r = await client.get("/api/v1/products", headers=[*api.items(), (b"x-device-id", b"a\x00b")])
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == "header:x-device-id"


def _multipart(filename: bytes, content: bytes) -> tuple[bytes, str]:
    boundary = "kqboundary"
    body = (
        b"--kqboundary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename + b"\"\r\n"
        b"Content-Type: text/csv\r\n\r\n" + content + b"\r\n--kqboundary--\r\n"
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def test_nul_in_an_upload_filename_or_form_field_is_400_but_binary_content_is_not(client, api):
    body, content_type = _multipart(b"members\x00.csv", b"name,phone\nA,13800138003\n")
    r = await client.post("/api/v1/members/import", headers={**api, "content-type": content_type}, content=body)
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == "file.filename"
    r = await client.post(
        "/api/v1/members/import", headers=api, files={"file": ("m.csv", b"x", "text/csv")}, data={"encoding": NUL}
    )
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == "encoding"
    # a file's bytes may contain 0x00: that is content, judged by the importer, not refused as NUL
    r = await client.post(
        "/api/v1/members/import", headers=api, files={"file": ("m.bin", b"\x00\x01\x02binary\x00", "text/csv")}
    )
    assert r.status_code < 500 and r.json()["code"] != "nul_character", r.text


@pytest.mark.parametrize("path", ["/api/v1/members/import", "/api/v1/code-imports", "/api/v1/bulk-grants"])
@pytest.mark.parametrize(
    ("part_headers", "value"),
    [(b"", b"\xff\xfe"), (b"Content-Type: text/plain; charset=no-such-charset\r\n", b"abc")],
)
async def test_a_form_field_that_is_not_text_in_its_charset_is_400(client, api, path, part_headers, value):
    body = (
        b"--b0undary\r\nContent-Disposition: form-data; name=\"encoding\"\r\n" + part_headers + b"\r\n"
        + value + b"\r\n--b0undary--\r\n"
    )
    r = await client.post(
        path, headers={**api, "content-type": "multipart/form-data; boundary=b0undary"}, content=body
    )
    assert _is_problem(r, 400, "invalid_form_encoding")["errors"][0]["code"] == "invalid_encoding"


# --- item 2: any header bytes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [b"x-request-id", b"accept-language", b"idempotency-key", b"authorization", b"cookie", b"user-agent",
     b"x-forwarded-for", b"x-device-id"],
)
async def test_non_utf8_headers_never_give_500(client, api, header):
    bad = b"\xff\xfe\x80 caf\xe9 \x01"
    headers = [(k.encode(), v.encode()) for k, v in api.items() if k.lower().encode() != header]
    headers.append((header, bad))
    for method, url, body in (("GET", "/api/v1/products", None), ("POST", "/api/v1/members", b'{"name":"h"}')):
        r = await client.request(
            method, url, headers=[*headers, (b"content-type", b"application/json")], content=body
        )
        assert r.status_code < 500, (header, r.status_code, r.text)
        assert "Traceback" not in r.text
    r = await client.get("/health", headers=[(header, bad)])
    assert r.status_code == 200
    for page in ("/console/login", "/platform/login", "/console/products"):
        r = await client.get(page, headers=[(header, bad)])
        assert r.status_code < 500, (page, header, r.status_code)


async def test_request_id_is_kept_when_printable_and_replaced_otherwise(client):
    r = await client.get("/api/v1/products", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    for bad in (b"\xff\xfe", b"has space", b"x" * 65, b"tab\there"):
        r = await client.get("/api/v1/products", headers=[(b"x-request-id", bad)])
        assert r.status_code == 401  # no token: refused properly, not 500
        rid = r.headers["x-request-id"]
        assert len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)


# --- item 3: depth ---------------------------------------------------------------------------------------


async def test_json_nested_too_deeply_is_400_before_decoding(client, api):
    deep = b"[" * 1000 + b"]" * 1000
    r = await client.post(
        "/api/v1/members", headers={**api, "content-type": "application/json"},
        content=b'{"name": "d", "tags": ' + deep + b"}",
    )
    _is_problem(r, 400, "json_too_deep")
    r = await client.post("/api/v1/redemptions/validate", headers={**api, "content-type": "application/json"},
                          content=b'{"a":' * 33 + b"1" + b"}" * 33)
    _is_problem(r, 400, "json_too_deep")
    # brackets inside strings do not count
    r = await client.post("/api/v1/members", headers=api, json={"name": "[" * 100, "phone": "13800138020"})
    assert r.status_code == 201, r.text


# --- item 4: integer ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/audit/events?cursor=9223372036854775808",
        "/api/v1/audit/events?cursor=99999999999999999999999999",
        "/api/v1/products?limit=9223372036854775808",
    ],
)
async def test_out_of_range_integer_query_parameters_are_4xx(client, api, url):
    r = await client.get(url, headers=api)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_out_of_range_integer_in_a_body_is_422(client, api):
    product = await _product(client, api)
    r = await client.post("/api/v1/campaigns", headers=api, content=(
        b'{"name": "big", "product_id": "' + product["id"].encode() + b'", "quantity": 9223372036854775808}'),
        )
    # no content-type: the body is still checked for type before anything else is done
    assert r.status_code == 415
    r = await client.post("/api/v1/campaigns", headers={**api, "content-type": "application/json"}, content=(
        b'{"name": "big", "product_id": "' + product["id"].encode() + b'", "quantity": 9223372036854775808}'))
    body = _is_problem(r, 422, "validation_failed")
    assert body["errors"][0] == {"field": "quantity", "message": body["errors"][0]["message"], "code": "out_of_range"}


async def test_a_value_the_database_refuses_is_422_not_500(client, api, monkeypatch):
    """The safety net: SQLAlchemy ``DataError`` (numeric out of range, invalid text) → 422, a warning."""
    from sqlalchemy.exc import DataError

    from core.catalog import api as catalog_api

    async def refuse(*_a, **_k):
        raise DataError("INSERT …", {}, Exception('value "99999999999" is out of range for type integer'))

    monkeypatch.setattr(catalog_api.services, "create_product", refuse)
    r = await client.post("/api/v1/products", headers={**api, "Accept-Language": "en"},
                          json={"sku": "DE-1", "kind": "code", "name_zh": "x"})
    body = _is_problem(r, 422, "invalid_value")
    assert "nothing was changed" in body["detail"]


# --- item 6: money --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(25.00, "send 2500 for ¥25.00"), (25.5, "send 2550 for ¥25.50"), ("2500", "send 2500 (not \"2500\")"),
     (-1, "integers in fen from 0 to 1000000000000"), (10**13, "integers in fen from 0 to 1000000000000")],
)
async def test_money_accepts_only_integer_fen(client, api, value, expected):
    r = await client.post("/api/v1/products", headers={**api, "Accept-Language": "en"},
                          json={"sku": unique("M-"), "kind": "code", "name_zh": "x", "face_value": value})
    body = _is_problem(r, 422, "validation_failed")
    error = body["errors"][0]
    assert error["field"] == "face_value" and error["code"] == "integer_fen"
    assert expected in error["message"] and expected in body["detail"]
    r = await client.post("/api/v1/products", headers=api,
                          json={"sku": unique("M-"), "kind": "code", "name_zh": "x", "face_value": 25.0})
    assert "请填写 2500" in r.json()["detail"]
    product = await _product(client, api, face_value=2500)
    assert product["face_value"] == 2500


async def test_money_in_nested_and_other_bodies(client, api):
    r = await client.post("/api/v1/redemptions", headers={**api, "Accept-Language": "en"},
                          json={"code": "ABCD-1234", "amount": 12.34})
    error = _is_problem(r, 422, "validation_failed")["errors"][0]
    assert error["field"] == "amount" and "send 1234 for ¥12.34" in error["message"]
    r = await client.post("/api/v1/redemptions", headers=api, json={"code": "ABCD-1234", "amount": 0})
    error = _is_problem(r, 422, "validation_failed")["errors"][0]
    assert error["code"] == "integer_fen" and "from 1 to" in error["message"]


async def test_openapi_describes_every_money_field_as_integer_fen(client):
    schema = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    money = {"face_value", "unit_cost", "amount", "balance", "balance_after", "initial_balance", "available_value"}
    seen = 0
    for name, comp in schema.items():
        for field, prop in comp.get("properties", {}).items():
            if field in money:
                assert "integer fen" in prop.get("description", ""), (name, field, prop)
                seen += 1
    assert seen >= 8


# --- item 7: strict bodies ------------------------------------------------------------------------------


async def test_bodies_are_decoded_strictly_but_query_parameters_still_parse(client, api):
    product = await _product(client, api)
    r = await client.post("/api/v1/campaigns", headers=api,
                          json={"name": "strict", "product_id": product["id"], "quantity": "5"})
    error = _is_problem(r, 422, "validation_failed")["errors"][0]
    assert error["field"] == "quantity" and "got `str`" in error["message"]
    r = await client.post("/api/v1/campaigns", headers=api,
                          json={"name": "strict", "product_id": product["id"], "active": "true"})
    assert _is_problem(r, 422, "validation_failed")["errors"][0]["field"] == "active"
    r = await client.post("/api/v1/campaigns", headers=api,
                          json={"name": "strict", "product_id": product["id"], "quantity": 2.0})
    assert _is_problem(r, 422, "validation_failed")["errors"][0]["field"] == "quantity"
    r = await client.post("/api/v1/campaigns", headers=api,
                          json={"name": "strict", "product_id": product["id"], "quantity": 2})
    assert r.status_code == 201, r.text
    r = await client.get("/api/v1/products", headers=api, params={"limit": "5"})
    assert r.status_code == 200


# --- item 8: media types -----------------------------------------------------------------------------


async def test_json_endpoints_refuse_other_media_types_with_415(client, api):
    body = '{"name": "m", "phone": "13800138009"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = await client.post("/api/v1/members", headers={**api, "content-type": content_type}, content=body)
        _is_problem(r, 415, "unsupported_media_type")
    r = await client.post("/api/v1/members", headers=api, data={"name": "m"})
    _is_problem(r, 415, "unsupported_media_type")
    r = await client.post("/api/v1/members", headers=api, files={"file": ("a.json", body.encode())})
    _is_problem(r, 415, "unsupported_media_type")
    r = await client.post("/api/v1/members", headers={**api, "content-type": "application/json"}, content=b"")
    _is_problem(r, 400, "body_required")
    r = await client.post("/api/v1/members", headers={**api, "content-type": "application/merge-patch+json"},
                          content=body)
    assert r.status_code == 201, r.text


async def test_upload_endpoints_keep_taking_multipart(client, api):
    r = await client.post("/api/v1/members/import", headers=api,
                          files={"file": ("m.csv", "name,phone\n甲,13800138010\n".encode(), "text/csv")})
    assert r.status_code == 201, r.text


async def test_nul_in_bodies_read_by_the_handler_itself_is_400(client, api, make_tenant):
    r = await client.post("/oauth/token", content=b"grant_type=client_credentials&client_id=kq%00x&client_secret=s",
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == "client_id"
    r = await client.post("/api/v1/code-imports", headers=api,
                          json={"product_id": str(uuid.uuid4()), "text": "ABC", "supplier": NUL})
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == "supplier"


def test_every_route_decodes_through_the_one_layer(app):
    """Every HTTP route, present and future, runs the decoding hook (a layer that set its own
    ``before_request`` would silently replace it) and uses the checking request class."""
    from litestar.handlers import HTTPRouteHandler

    from core.http.decoding import KaquanRequest, decode_request_body

    handlers = [h for route in app.routes for h in route.route_handlers if isinstance(h, HTTPRouteHandler)]
    assert len(handlers) > 50
    for handler in handlers:
        hook = handler.resolve_before_request()
        assert decode_request_body in (hook, getattr(hook, "__wrapped__", None)), handler
        assert issubclass(handler.resolve_request_class(), KaquanRequest), handler


async def test_nul_in_a_campaign_name_and_a_code_import_filename_is_400(client, api):
    product = await _product(client, api)
    r = await client.post("/api/v1/campaigns", headers=api, json={"name": NUL, "product_id": product["id"]})
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == "name"
    assert (await client.get("/api/v1/campaigns", headers=api)).json()["items"] == []
    body, content_type = _multipart(b"codes\x00.csv", b"code\nAAAA-BBBB-CCCC\n")
    body = body.replace(b"--kqboundary--", b"--kqboundary\r\nContent-Disposition: form-data; name=\"product_id\"\r\n\r\n"
                        + product["id"].encode() + b"\r\n--kqboundary--")
    r = await client.post("/api/v1/code-imports", headers={**api, "content-type": content_type}, content=body)
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == "file.filename"
    r = await client.post(f"/api/v1/code-imports?product_id={product['id']}&filename=a%00.csv", headers={
        **api, "content-type": "text/csv"}, content=b"code\nAAAA-BBBB-CCCC\n")
    assert _is_problem(r, 400, "nul_character")["errors"][0]["field"] == "filename"


async def test_a_query_string_that_is_not_utf8_is_400(client, api):
    r = await client.get("/api/v1/products?q=%ff%fe", headers=api)
    assert _is_problem(r, 400, "invalid_query")["errors"][0]["field"] == "query"
    r = await client.get("/api/v1/products?q=%E5%8D%A1", headers=api)  # 卡, UTF-8: fine
    assert r.status_code == 200
