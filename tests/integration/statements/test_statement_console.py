"""The statements console over HTTP (forms with CSRF): a file carried from the upload to the mapping step
inside the form, a larger one chosen again on the mapping step, and readable refusals on the page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from admin_ui import statements_pages
from tests.integration.console.conftest import Browser, text_of
from tests.integration.statements.helpers import FIXTURES, register_builtin, sandbox_account


@pytest.fixture
async def console(app: Any, kernel: Any, make_tenant: Any) -> Any:
    register_builtin(app)
    tenant = await make_tenant(plan="growth")
    account_id = await sandbox_account(kernel, tenant.id)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local") as c:
        br = Browser(c)
        assert (await br.console_login(tenant.slug, tenant.owner_email, tenant.owner_password)).status_code in (200, 303)
        yield br, account_id


def _form_fields(html: str) -> dict[str, str]:
    """The hidden inputs and the selected option of each select of the mapping form."""
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    for name, body in re.findall(r'<select id="m-\w+" name="(\w+)"[^>]*>(.*?)</select>', html, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', body)
        fields[name] = chosen.group(1) if chosen else ""
    fields["kinds"] = ""
    return fields


def _big_file(rows: int) -> bytes:
    lines = ["账单流水号,订单号,交易类型,金额(元),入账时间,备注"]
    lines += [f"B{i:07d},O{i},销售,{i % 500}.50,2026-12-01 08:00:00,{'礼品卡' * 20}" for i in range(rows)]
    return "\n".join(lines).encode("gbk")


async def test_a_file_is_carried_to_the_mapping_step_and_imported(console) -> None:
    br, account_id = console
    data = _big_file(20000)  # about 2.8 MB: carried inside the form
    r = await br.submit("/console/statements", "/console/statements/upload", {"account_id": str(account_id)},
                        files={"file": ("big.csv", data)})
    assert r.status_code == 200, text_of(r.text)[:500]
    fields = _form_fields(r.text)
    assert fields["content"] and fields["map_order_id"] == "订单号" and fields["map_amount"] == "金额(元)"
    r = await br.submit("/console/statements", "/console/statements/import", fields,
                        files={"file": ("", b"")})
    assert r.status_code == 303, text_of(r.text)[:500]
    page = await br.get(r.headers["location"])
    assert 'data-report="new">20000<' in page.text


async def test_a_larger_file_is_chosen_again_and_bad_input_reads_well(console, monkeypatch) -> None:
    br, account_id = console
    monkeypatch.setattr(statements_pages, "CARRY_BYTES", 100)
    data = (FIXTURES / "utf8_bom.csv").read_bytes()
    r = await br.submit("/console/statements", "/console/statements/upload", {"account_id": str(account_id)},
                        files={"file": ("s.csv", data)})
    fields = _form_fields(r.text)
    assert "content" not in fields and 'name="file" type="file" required' in r.text
    r = await br.submit("/console/statements", "/console/statements/import", fields, files={"file": ("", b"")})
    assert r.status_code == 422 and "请选择对账单文件" in text_of(r.text)
    r = await br.submit("/console/statements", "/console/statements/import", fields,
                        files={"file": ("s.csv", data)})
    assert r.status_code == 303

    r = await br.submit("/console/statements", "/console/statements/upload", {"account_id": str(account_id)},
                        files={"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)})
    assert r.status_code == 422 and "不支持导入 .png 文件" in text_of(r.text) and "\"code\"" not in r.text
    r = await br.submit("/console/statements", "/console/statements/upload", {"account_id": ""},
                        files={"file": ("s.csv", data)})
    assert r.status_code == 422 and "请选择渠道账号" in text_of(r.text)
    r = await br.submit("/console/statements", "/console/statements/fetch",
                        {"account_id": str(account_id), "start": "2026-12-01", "end": "soon"})
    assert r.status_code == 422 and "YYYY-MM-DD" in text_of(r.text)
