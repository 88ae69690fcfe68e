"""Members API: create with a protected phone, duplicates, list filters, update, CSV import (GBK, zh headers,
all or nothing) and isolation."""

from __future__ import annotations

import uuid

import msgspec
from sqlalchemy import func, select, text

from core.members.models import Member


async def test_create_protects_the_phone(shop, owner_engine):
    r = await shop.post(
        "/api/v1/members",
        {
            "external_id": "crm-1",
            "phone": "+86 139 1234 5678",
            "email": "Li@Example.COM",
            "name": "李雷",
            "tags": ["vip", "vip", "new"],
        },
    )
    assert r.status_code == 201, r.text
    m = r.json()
    assert (
        m["phone_masked"] == "139****5678" and m["email"] == "Li@example.com" and m["tags"] == ["vip", "new"]
    )
    assert "13912345678" not in r.text
    async with owner_engine.connect() as conn:
        row = (await conn.execute(text("select * from members where external_id = 'crm-1'"))).one()
    assert "13912345678" not in repr(row) and len(row.phone_digest) == 64
    got = (await shop.get(f"/api/v1/members/{m['id']}")).json()
    assert got == m


async def test_duplicates_are_409(shop):
    ok = await shop.post("/api/v1/members", {"external_id": "dup-1", "phone": "13800000001"})
    assert ok.status_code == 201
    r = await shop.post("/api/v1/members", {"external_id": "dup-1"})
    assert r.status_code == 409 and r.json()["code"] == "member_exists"
    r = await shop.post("/api/v1/members", {"external_id": "dup-2", "phone": "+8613800000001"})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "phone"
    r = await shop.post("/api/v1/members", {"name": "nobody"})
    assert r.status_code == 422 and r.json()["code"] == "member_identity_required"
    r = await shop.post("/api/v1/members", {"phone": "12345"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "phone"
    r = await shop.post("/api/v1/members", {"email": "not-mail"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "email"


async def test_list_filters_and_pages(shop):
    a = (
        await shop.post("/api/v1/members", {"external_id": "a-1", "phone": "13700000001", "tags": ["vip"]})
    ).json()
    b = (
        await shop.post("/api/v1/members", {"external_id": "b-2", "name": "韩梅梅", "tags": ["staff"]})
    ).json()
    c = (await shop.post("/api/v1/members", {"email": "c@example.com", "tags": ["vip", "staff"]})).json()
    ids = lambda r: [m["id"] for m in r.json()["items"]]  # noqa: E731
    assert ids(await shop.get("/api/v1/members", tag="vip")) == [c["id"], a["id"]]
    assert ids(await shop.get("/api/v1/members", phone="+86 137 0000 0001")) == [a["id"]]
    assert ids(await shop.get("/api/v1/members", q="13700000001")) == [a["id"]]
    assert ids(await shop.get("/api/v1/members", q="韩梅")) == [b["id"]]
    assert ids(await shop.get("/api/v1/members", q="b-2")) == [b["id"]]
    p1 = (await shop.get("/api/v1/members", limit=2)).json()
    p2 = (await shop.get("/api/v1/members", limit=2, cursor=p1["next_cursor"])).json()
    assert [m["id"] for m in p1["items"] + p2["items"]] == [c["id"], b["id"], a["id"]]
    t1 = (await shop.get("/api/v1/members", tag="staff", limit=1)).json()
    t2 = (await shop.get("/api/v1/members", tag="staff", limit=1, cursor=t1["next_cursor"])).json()
    assert [m["id"] for m in t1["items"] + t2["items"]] == [c["id"], b["id"]] and t2["next_cursor"] is None
    assert (await shop.get("/api/v1/members", phone="bad")).status_code == 422


async def test_update(shop):
    m = (await shop.post("/api/v1/members", {"external_id": "u-1", "phone": "13600000001"})).json()
    (await shop.post("/api/v1/members", {"external_id": "u-2", "phone": "13600000002"})).json()
    r = await shop.patch(
        f"/api/v1/members/{m['id']}", {"name": "新名字", "tags": ["x"], "phone": "13600000003"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "新名字" and r.json()["phone_masked"] == "136****0003"
    r = await shop.patch(f"/api/v1/members/{m['id']}", {"phone": "13600000002"})
    assert r.status_code == 409
    r = await shop.patch(f"/api/v1/members/{m['id']}", {"status": "blocked"})
    assert r.json()["status"] == "blocked"
    r = await shop.patch(f"/api/v1/members/{m['id']}", {"status": "weird"})
    assert r.status_code == 422
    assert (await shop.patch(f"/api/v1/members/{uuid.uuid4()}", {"name": "x"})).status_code == 404


async def _import(shop, data: bytes, filename: str = "members.csv"):
    return await shop.client.post(
        "/api/v1/members/import", files={"file": (filename, data, "text/csv")}, headers=shop.headers
    )


async def test_import_gbk_with_chinese_headers(shop):
    csv_text = "会员编号,手机号,姓名,邮箱,标签\nE001,13500000001,张三,zs@example.com,vip、员工\nE002,+86 135 0000 0002,李四,,\n"
    r = await _import(shop, csv_text.encode("gbk"))
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["inserted"] == 2 and report["problems"] == [] and "gb" in report["encoding"].lower()
    found = (await shop.get("/api/v1/members", phone="13500000001")).json()["items"]
    assert (
        found[0]["name"] == "张三" and found[0]["tags"] == ["vip", "员工"] and found[0]["source"] == "import"
    )
    raw = await shop.client.post(
        "/api/v1/members/import?filename=m.csv",
        content=b"external_id,phone,name\nE003,13500000003,Ann\n",
        headers={**shop.headers, "Content-Type": "text/csv"},
    )
    assert raw.status_code == 201 and raw.json()["inserted"] == 1


async def test_import_is_all_or_nothing(shop):
    await shop.post("/api/v1/members", {"external_id": "X-1"})
    csv_text = (
        "手机号,会员编号,姓名\n13400000001,N1,ok\n1340000,N2,bad phone\n13400000001,N3,dup phone\n"
        ",X-1,exists\n,,\n"
    )
    r = await _import(shop, csv_text.encode("utf-8-sig"))
    assert r.status_code == 422 and r.json()["code"] == "member_import_rejected"
    problems = {(p["row"], p["field"], p["code"]) for p in r.json()["problems"]}
    assert problems == {
        (3, "phone", "invalid_phone"),
        (4, "phone", "duplicate_in_file"),
        (5, "external_id", "exists"),
    }
    count = await shop.run(lambda db: db.scalar(select(func.count()).select_from(Member)))
    assert count == 1  # nothing of the file was inserted
    r = await _import(shop, b"foo,bar\n1,2\n")
    assert r.status_code == 422 and r.json()["code"] == "import_no_member_columns"
    r = await _import(shop, b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "x.csv")
    assert r.status_code in (400, 422)


async def test_an_oversized_raw_import_is_413_and_stores_nothing(shop, kernel, monkeypatch):
    monkeypatch.setattr(kernel, "settings", msgspec.structs.replace(kernel.settings, max_import_bytes=1000))
    body = b"external_id,phone\n" + b"".join(b"E%04d,1350000%04d\n" % (n, n) for n in range(100))
    r = await shop.client.post(
        "/api/v1/members/import?filename=m.csv",
        content=body,
        headers={**shop.headers, "Content-Type": "text/csv", "Accept-Language": "en"},
    )
    assert (r.status_code, r.json()["code"], r.json()["max_bytes"]) == (413, "import_too_large", 1000), r.text
    assert r.json()["detail"] == "The upload is larger than 1000 bytes; split the file"
    assert await shop.run(lambda db: db.scalar(select(func.count()).select_from(Member))) == 0


async def test_isolation(shop, other_shop):
    m = (await shop.post("/api/v1/members", {"external_id": "iso-1", "phone": "13300000001"})).json()
    assert (await other_shop.get(f"/api/v1/members/{m['id']}")).status_code == 404
    assert (await other_shop.patch(f"/api/v1/members/{m['id']}", {"name": "x"})).status_code == 404
    assert (await other_shop.get("/api/v1/members", phone="13300000001")).json()["items"] == []
    # the same phone and external id are free in another tenant
    r = await other_shop.post("/api/v1/members", {"external_id": "iso-1", "phone": "13300000001"})
    assert r.status_code == 201 and r.json()["id"] != m["id"]
