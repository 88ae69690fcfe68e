"""A plan naming a connector no installed plugin provides is refused, in the API and in the service."""

from __future__ import annotations

import secrets

import pytest

from core.errors import ValidationFailed
from tenants import onboarding
from tenants.schemas import PlanCreate


async def test_api_refuses_a_plan_naming_an_unknown_connector_and_stores_nothing(client, operator):
    code = f"p{secrets.token_hex(3)}"
    r = await client.post(
        "/api/platform/v1/plans",
        headers={**operator.headers, "Accept-Language": "en"},
        json={"code": code, "name": "Typo", "allowed_connectors": ["acme_sms", "acme_smss"]},
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), r.text
    body = r.json()
    assert body["code"] == "unknown_connector"
    assert "acme_smss" in body["detail"] and "kaquan plugins list" in body["detail"]
    assert body["errors"] == [
        {"field": "allowed_connectors", "message": "unknown connector 'acme_smss'", "code": "unknown"}
    ]
    plans = (await client.get("/api/platform/v1/plans", headers=operator.headers)).json()
    assert code not in {p["code"] for p in plans}


async def test_api_accepts_installed_connectors_and_the_wildcard(client, operator):
    code = f"p{secrets.token_hex(3)}"
    r = await client.post(
        "/api/platform/v1/plans",
        headers=operator.headers,
        json={"code": code, "name": "SMS", "allowed_connectors": ["acme_sms", "sms_gateway", "acme_sms", "*"]},
    )
    assert r.status_code == 201, r.text
    assert r.json()["allowed_connectors"] == ["acme_sms", "sms_gateway", "*"]


async def test_service_refuses_unknown_connectors_in_chinese_too(kernel):
    data = PlanCreate(code=f"p{secrets.token_hex(3)}", name="X", allowed_connectors=["nope"])
    async with kernel.db.transaction() as db:
        with pytest.raises(ValidationFailed) as caught:
            await onboarding.create_plan(db, data)
    assert caught.value.code == "unknown_connector"
    assert "没有已安装的插件提供连接器 nope" in caught.value.detail("zh-CN")
    with pytest.raises(ValidationFailed):
        onboarding.check_allowed_connectors(["log_notifier", "gone"], known={"log_notifier"})
    assert onboarding.check_allowed_connectors(["log_notifier"], known={"log_notifier"}) == ["log_notifier"]
