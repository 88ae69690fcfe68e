"""Claim test helpers: a tenant with an API client and stock, cookie-isolated phones (browsers), and the
member SMS read back from the outbox (opened with the tenant's key, as the delivery job does)."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from html import unescape
from typing import Any

import httpx
from litestar import Litestar
from sqlalchemy import select

from core.claims.otp import SMS_ACTOR, open_sms
from core.db.context import tenant_context
from core.jobs.models import OutboxMessage
from core.members.consent import PRIVACY_VERSION
from core.members.services import mask_phone, normalize_phone
from tests.integration.inventory.stocking import Stocked, stock_product

_CSRF = re.compile(r'name="_csrf_token" value="([^"]+)"')
_OTP = re.compile(r"验证码为 (\d{6})")
_LINK = re.compile(r"(https?://\S+/h5/c/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")


def text_of(page: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def random_phone() -> str:
    return "139" + "".join(secrets.choice("0123456789") for _ in range(8))


@dataclass
class Shop:
    id: uuid.UUID
    kernel: Any
    client: httpx.AsyncClient
    headers: dict[str, str]

    async def post(self, path: str, json: Any = None) -> httpx.Response:
        headers = {**self.headers, "Idempotency-Key": secrets.token_hex(8)}
        return await self.client.post(path, json=json, headers=headers)

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params, headers=self.headers)

    async def stock(self, count: int, **kw: Any) -> Stocked:
        return await stock_product(self.kernel, self.id, count, **kw)

    async def run(self, fn: Any) -> Any:
        """``fn(db)`` in one transaction of the tenant."""
        with tenant_context(self.id):
            async with self.kernel.db.transaction() as db:
                return await fn(db)

    async def grant(self, product_id: uuid.UUID, quantity: int = 1, **who: Any) -> dict[str, Any]:
        body = {"product_id": str(product_id), "quantity": quantity, "channel": "none", **who}
        if not any(k in who for k in ("member_id", "external_id", "phone", "email")):
            body["external_id"] = f"ext-{secrets.token_hex(4)}"
        r = await self.post("/api/v1/grants", body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def claim_link(self, grant_id: str, **body: Any) -> dict[str, Any]:
        r = await self.post(f"/api/v1/grants/{grant_id}/claim-link", body or None)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def sms_to(self, phone: str) -> list[str]:
        """Texts queued to ``phone`` (oldest first)."""
        e164 = normalize_phone(phone)

        async def read(db: Any) -> list[str]:
            rows = (
                await db.execute(
                    select(OutboxMessage).where(OutboxMessage.actor == SMS_ACTOR).order_by(OutboxMessage.id)
                )
            ).scalars()
            cipher = await self.kernel.keys.cipher(db)
            out = []
            for row in rows:
                if row.payload.get("to_masked") != mask_phone(e164):
                    continue
                to, body = open_sms(cipher, row.payload)
                if to == e164:
                    out.append(body)
            return out

        return list(await self.run(read))

    async def otp_for(self, phone: str) -> str:
        texts = [t for t in await self.sms_to(phone) if _OTP.search(t)]
        assert texts, f"no one-time code was sent to {phone}"
        match = _OTP.search(texts[-1])
        assert match
        return match.group(1)

    async def link_sent_to(self, phone: str) -> str:
        texts = [t for t in await self.sms_to(phone) if _LINK.search(t)]
        assert texts, f"no claim link was sent to {phone}"
        match = _LINK.search(texts[-1])
        assert match
        return match.group(1)


class Phone:
    """A member's phone browser: its own cookie jar (and device cookie), seen from ``ip``; submits forms
    with the page's CSRF field."""

    def __init__(self, app: Litestar, ip: str = "127.0.0.1", headers: dict[str, str] | None = None) -> None:
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(ip, 40_000)),
            base_url="http://testserver.local",
            follow_redirects=False,
            headers=headers,
        )

    async def get(self, url: str) -> httpx.Response:
        return await self.http.get(url)

    async def submit(self, page_url: str, action: str, data: dict[str, str]) -> httpx.Response:
        """Submit a form; a form that sends a one-time code has the privacy box ticked unless ``data``
        says otherwise (``consent=""``)."""
        if action.endswith("/send"):
            data = {"consent": PRIVACY_VERSION, **data}
        page = await self.http.get(page_url)
        match = _CSRF.search(page.text)
        assert match, f"no form on {page_url}: {page.status_code} {text_of(page.text)[:200]}"
        return await self.http.post(action, data={**data, "_csrf_token": unescape(match.group(1))})

    async def post_form(self, action: str, data: dict[str, str]) -> httpx.Response:
        """POST with the CSRF cookie's token (for pages that show no form, e.g. a closed campaign)."""
        token = self.http.cookies.get("kq_csrf") or ""
        return await self.http.post(action, data={**data, "_csrf_token": token})

    async def close(self) -> None:
        await self.http.aclose()


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]
