"""Hand-written grant servers: what a grant costs on this machine without kaquan's layers (asyncpg + Litestar).

Two uvicorn factories, each an ASGI app built with Litestar whose one handler talks to PostgreSQL through a
plain asyncpg pool (no SQLAlchemy, no ORM, no middleware), as the app role ``kaquan_app`` with row-level
security, on kaquan's own schema:

* ``baseline_grant:hand_written_app`` — ``POST /api/v1/grants`` doing the 15 statements of kaquan's grant
  (issue 13, derived from kaquan's statement log of one grant, ``bench/statement_log.py``): BEGIN, the
  tenant's ``set_config``, the idempotency claim (kaquan's upsert), the product, the member's select and
  insert, the blocklist check, the ``SKIP LOCKED`` pick (kaquan's statement from
  ``core/inventory/allocation.py``), the audit insert (the three events kaquan records — member created,
  codes allocated, grant created — in one multi-row statement), the ``grant.created`` event, the grant, its
  item, the webhook fan-out row (kaquan's conditional ``INSERT … SELECT … WHERE EXISTS``), the idempotency
  answer (the response encrypted under the tenant's data key, as kaquan stores it) and COMMIT.
* ``baseline_grant:minimal_app`` — ``POST /api/v1/grants`` doing the least a grant can be: BEGIN, the pick,
  the grant, the item, COMMIT. Its connections carry the tenant as a session setting (given when they
  connect), so row-level security still applies without a ``set_config`` per transaction.

Both check the bearer token against the one they were given (kaquan's principal cache makes its check a
dictionary hit too) and answer 201 with the grant as JSON. Configuration, from the environment (the bench
sets it): ``BASELINE_DSN`` (app role), ``BASELINE_TENANT_ID``, ``BASELINE_CLIENT_PK`` (an API client of the
tenant, written on the grant as kaquan does), ``BASELINE_TOKEN``, ``BASELINE_DATA_KEY`` (the tenant's data
key, hex), ``BASELINE_POOL_SIZE`` and ``BASELINE_MAX_OVERFLOW`` (the pool holds up to their sum, as
SQLAlchemy's does), ``BASELINE_STATEMENT_CACHE`` (asyncpg's prepared statement cache, default 100).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from litestar import Litestar, Request, Response, get, post
from uuid_utils.compat import uuid7

UTC = dt.UTC
READABLE = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
JSON_TYPE = "application/json"

SET_CONTEXT = "select set_config('app.tenant_id', $1, true), set_config('app.bypass_rls', $2, true)"

CLAIM = """
INSERT INTO idempotency_keys (tenant_id, id, principal, key, method, path, request_hash, status,
                              response_headers, expires_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', '[]'::json, $8, $9)
ON CONFLICT (tenant_id, principal, key) DO UPDATE SET
  id = excluded.id, method = excluded.method, path = excluded.path, request_hash = excluded.request_hash,
  status = excluded.status, response_status = NULL, response_headers = excluded.response_headers,
  response_body = NULL, expires_at = excluded.expires_at, created_at = excluded.created_at
WHERE idempotency_keys.expires_at <= $9
RETURNING idempotency_keys.id
"""

STORED_ANSWER = """
SELECT status, response_status, response_body, id FROM idempotency_keys
WHERE tenant_id = $1 AND principal = $2 AND key = $3
"""

PRODUCT = """
SELECT status, kind, validity_kind, validity_days, validity_date FROM products
WHERE tenant_id = $1 AND id = $2
"""

MEMBER = "SELECT id, status FROM members WHERE tenant_id = $1 AND external_id = $2"

MEMBER_INSERT = """
INSERT INTO members (tenant_id, id, external_id, email, name, tags, source, status, created_at)
VALUES ($1, $2, $3, NULL, NULL, '[]'::json, 'grant', 'active', $4)
ON CONFLICT DO NOTHING RETURNING id
"""

BLOCKLIST = """
SELECT kind, value FROM risk_blocklist
WHERE tenant_id = $1 AND kind = 'ip' AND (value = $2 OR value LIKE '%' || '/' || '%')
"""

# kaquan's pick-and-mark statement (core/inventory/allocation.py, PostgreSQL, first pass), parameters in the
# same places: $1 new state, $2 purpose, $3 now, $4 tenant, $5 product, $6 state picked from, $7 how many.
PICK = """
UPDATE codes SET state = $1, reservation_id = NULL, reserved_until = NULL, purpose = $2, state_changed_at = $3
WHERE codes.tenant_id = $4 AND codes.id = ANY (array((
  SELECT codes.id FROM codes
  WHERE codes.tenant_id = $4 AND codes.product_id = $5 AND codes.state = $6
    AND (codes.expires_at IS NULL OR codes.expires_at > $3)
  ORDER BY codes.expires_at ASC NULLS LAST, codes.id LIMIT $7 FOR UPDATE SKIP LOCKED)))
RETURNING codes.id, codes.batch_id, codes.last4, codes.expires_at
"""

AUDIT = """
INSERT INTO audit_events (tenant_id, id, occurred_at, actor_type, actor_id, action, object_type, object_id,
                          data, created_at)
SELECT $1, u.id, $2, 'client', $3, u.action, u.object_type, u.object_id, u.data::json, $2
FROM unnest($4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[])
  AS u(id, action, object_type, object_id, data)
"""

EVENT = """
INSERT INTO events (tenant_id, id, type, data, object_id, created_at)
VALUES ($1, $2, 'grant.created', $3::json, $4, $5)
"""

GRANT = """
INSERT INTO grants (tenant_id, id, ref, product_id, quantity, member_id, channel, campaign_ref, source,
                    client_id, status, created_at)
VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, 'api', $8, 'created', $9)
"""

ITEMS = """
INSERT INTO grant_items (tenant_id, id, grant_id, code_id, member_id, status, expires_at, created_at)
SELECT $1, u.id, $2, u.code_id, $3, 'held', u.expires_at, $4
FROM unnest($5::uuid[], $6::uuid[], $7::timestamptz[]) AS u(id, code_id, expires_at)
"""

FAN_OUT = """
INSERT INTO outbox (tenant_id, id, actor, payload, business_key, status, attempts, available_at, created_at)
SELECT $1, $2, 'fan_out_webhooks', $3::json, $4, 'pending', 0, $5, $5
WHERE EXISTS (SELECT * FROM webhook_subscriptions
              WHERE webhook_subscriptions.tenant_id = $1 AND webhook_subscriptions.active IS true)
"""

ANSWER = """
UPDATE idempotency_keys SET status = 'complete', response_status = $1, response_headers = $2::json,
  response_body = $3
WHERE tenant_id = $4 AND id = $5
"""

# The minimal grant: the pick, the grant and its item; the tenant comes from the connection's settings.
MINIMAL_GRANT = """
INSERT INTO grants (tenant_id, id, ref, product_id, quantity, member_id, source, status, created_at)
VALUES ($1, $2, $3, $4, $5, NULL, 'api', 'created', $6)
"""

MINIMAL_ITEM = """
INSERT INTO grant_items (tenant_id, id, grant_id, code_id, status, expires_at, created_at)
VALUES ($1, $2, $3, $4, 'held', $5, $6)
"""


class GrantIn(msgspec.Struct, forbid_unknown_fields=False):
    product_id: uuid.UUID
    quantity: int = 1
    external_id: str | None = None
    channel: str | None = None
    campaign_ref: str | None = None


class Refused(Exception):
    """An answer other than 201 (the transaction is rolled back)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Config:
    dsn: str
    tenant_id: uuid.UUID
    client_pk: uuid.UUID | None
    token: str
    data_key: bytes
    pool_min: int
    pool_max: int
    statement_cache: int

    @classmethod
    def from_env(cls) -> Config:
        size = int(os.environ.get("BASELINE_POOL_SIZE", "10"))
        overflow = int(os.environ.get("BASELINE_MAX_OVERFLOW", "20"))
        client = os.environ.get("BASELINE_CLIENT_PK")
        return cls(
            dsn=os.environ["BASELINE_DSN"],
            tenant_id=uuid.UUID(os.environ["BASELINE_TENANT_ID"]),
            client_pk=uuid.UUID(client) if client else None,
            token=os.environ["BASELINE_TOKEN"],
            data_key=bytes.fromhex(os.environ.get("BASELINE_DATA_KEY", "00" * 32)),
            pool_min=size,
            pool_max=size + overflow,
            statement_cache=int(os.environ.get("BASELINE_STATEMENT_CACHE", "100")),
        )


def readable_ref(prefix: str, length: int = 10) -> str:
    return f"{prefix}-" + "".join(secrets.choice(READABLE) for _ in range(length))


def problem(status: int, code: str) -> Response[bytes]:
    body = msgspec.json.encode({"status": status, "code": code})
    return Response(body, status_code=status, media_type="application/problem+json")


def item_expiry(product: Any, code_expiry: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """kaquan's rule: the code's expiry, shortened by a days-after-issue or fixed-date validity."""
    if product["validity_kind"] == "days_after_issue" and product["validity_days"]:
        rule = now + dt.timedelta(days=product["validity_days"])
        return min(rule, code_expiry) if code_expiry else rule
    if product["validity_kind"] == "fixed_date" and product["validity_date"]:
        fixed: dt.datetime = product["validity_date"]
        return min(fixed, code_expiry) if code_expiry else fixed
    return code_expiry


def grant_json(
    grant_id: uuid.UUID,
    ref: str,
    data: GrantIn,
    member: dict[str, Any] | None,
    items: list[dict[str, Any]],
    now: dt.datetime,
) -> bytes:
    """The answer, shaped as kaquan's ``GrantOut``."""
    return msgspec.json.encode(
        {
            "id": grant_id,
            "ref": ref,
            "status": "created",
            "product_id": data.product_id,
            "quantity": data.quantity,
            "member": member,
            "channel": None,
            "contact_masked": None,
            "campaign_ref": data.campaign_ref,
            "source": "api",
            "created_at": now,
            "delivered_at": None,
            "delivery_detail": None,
            "voided_at": None,
            "void_reason": None,
            "codes": items,
            "revealed": False,
        }
    )


class HandWritten:
    """The 15-statement grant."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tenant = config.tenant_id
        self.principal = f"client:{config.client_pk}"
        self.aead = AESGCM(config.data_key)
        self.pool: Any = None

    async def start(self) -> None:
        c = self.config
        self.pool = await asyncpg.create_pool(
            c.dsn, min_size=c.pool_min, max_size=c.pool_max, statement_cache_size=c.statement_cache
        )

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def grant(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        if request.headers.get("authorization") != f"Bearer {self.config.token}":
            return problem(401, "unauthorized")
        key = request.headers.get("idempotency-key", "")
        if not key.strip():
            return problem(400, "idempotency_key_required")
        body = await request.body()
        try:
            data = msgspec.json.decode(body, type=GrantIn)
        except msgspec.ValidationError:
            return problem(422, "invalid")
        fingerprint = hashlib.sha256(b"POST " + request.url.path.encode() + b"\n" + body).hexdigest()
        ip = request.client.host if request.client else ""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                answer = await self._grant(conn, data, key, fingerprint, request.url.path, ip)
        except Refused as refused:
            return problem(refused.status, refused.code)
        return Response(answer, status_code=201, media_type=JSON_TYPE)

    async def _grant(self, conn: Any, data: GrantIn, key: str, fingerprint: str, path: str, ip: str) -> bytes:
        tenant, now = self.tenant, dt.datetime.now(UTC)
        await conn.execute(SET_CONTEXT, str(tenant), "")
        record_id = uuid7()
        claimed = await conn.fetchval(
            CLAIM,
            tenant,
            record_id,
            self.principal,
            key,
            "POST",
            path,
            fingerprint,
            now + dt.timedelta(hours=24),
            now,
        )
        if claimed is None:
            return await self._stored(conn, key, fingerprint)
        product = await conn.fetchrow(PRODUCT, tenant, data.product_id)
        if product is None:
            raise Refused(404, "product_not_found")
        if product["status"] != "active" or product["kind"] != "code":
            raise Refused(409, "product_inactive")
        member_id, created = await self._member(conn, data.external_id or "", now)
        blocked = await conn.fetch(BLOCKLIST, tenant, ip)
        if any(row["value"] == ip for row in blocked):
            raise Refused(429, "risk_refused")
        grant_id, ref = uuid7(), readable_ref("G")
        codes = await conn.fetch(
            PICK, "issued", f"grant:{ref}", now, tenant, data.product_id, "available", data.quantity
        )
        if len(codes) < data.quantity:
            raise Refused(409, "out_of_stock")
        items = [(uuid7(), c["id"], item_expiry(product, c["expires_at"], now)) for c in codes]
        await self._audit(conn, data, member_id, created, grant_id, ref, items, now)
        answer = grant_json(
            grant_id,
            ref,
            data,
            {
                "id": member_id,
                "external_id": data.external_id,
                "phone_masked": None,
                "email": None,
                "name": None,
            },
            [
                {
                    "item_id": i,
                    "code_id": c["id"],
                    "masked": "•••• " + c["last4"],
                    "last4": c["last4"],
                    "status": "held",
                    "expires_at": e,
                }
                for (i, _, e), c in zip(items, codes, strict=True)
            ],
            now,
        )
        sealed = self._seal(answer, record_id)
        await conn.execute(ANSWER, 201, '[["content-type", "application/json"]]', sealed, tenant, record_id)
        return answer

    async def _member(self, conn: Any, external_id: str, now: dt.datetime) -> tuple[uuid.UUID, bool]:
        row = await conn.fetchrow(MEMBER, self.tenant, external_id)
        if row is not None:
            if row["status"] != "active":
                raise Refused(409, "member_blocked")
            return row["id"], False
        member_id = uuid7()
        if await conn.fetchval(MEMBER_INSERT, self.tenant, member_id, external_id, now) is None:
            row = await conn.fetchrow(MEMBER, self.tenant, external_id)  # created concurrently
            return row["id"], False
        return member_id, True

    async def _audit(
        self,
        conn: Any,
        data: GrantIn,
        member_id: uuid.UUID,
        created: bool,
        grant_id: uuid.UUID,
        ref: str,
        items: list[tuple[uuid.UUID, uuid.UUID, dt.datetime | None]],
        now: dt.datetime,
    ) -> None:
        """The audit events (one statement), the event, the grant, its items and the fan-out row."""
        tenant, codes = self.tenant, [str(code_id) for _, code_id, _ in items]
        facts = {
            "ref": ref,
            "product_id": str(data.product_id),
            "quantity": data.quantity,
            "member_id": str(member_id),
            "channel": None,
            "campaign_ref": data.campaign_ref,
            "source": "api",
            "codes": codes,
        }
        audit: list[tuple[uuid.UUID, str, str, str, dict[str, Any]]] = []
        if created:
            audit.append(
                (
                    uuid7(),
                    "member.created",
                    "member",
                    str(member_id),
                    {"source": "grant", "external_id": data.external_id, "phone": None, "tags": []},
                )
            )
        audit.append(
            (
                uuid7(),
                "codes.allocated",
                "product",
                str(data.product_id),
                {
                    "purpose": f"grant:{ref}",
                    "quantity": data.quantity,
                    "codes": codes,
                    "reservation_id": None,
                },
            )
        )
        audit.append((uuid7(), "grant.created", "grant", str(grant_id), facts))
        columns = list(zip(*audit, strict=True))
        await conn.execute(
            AUDIT,
            tenant,
            now,
            str(self.config.client_pk),
            list(columns[0]),
            list(columns[1]),
            list(columns[2]),
            list(columns[3]),
            [msgspec.json.encode(d).decode() for d in columns[4]],
        )
        event_id = uuid7()
        await conn.execute(EVENT, tenant, event_id, msgspec.json.encode(facts).decode(), str(grant_id), now)
        await conn.execute(
            GRANT,
            tenant,
            grant_id,
            ref,
            data.product_id,
            data.quantity,
            member_id,
            (data.campaign_ref or "").strip() or None,
            self.config.client_pk,
            now,
        )
        await conn.execute(
            ITEMS,
            tenant,
            grant_id,
            member_id,
            now,
            [i for i, _, _ in items],
            [c for _, c, _ in items],
            [e for _, _, e in items],
        )
        await conn.execute(
            FAN_OUT,
            tenant,
            uuid7(),
            msgspec.json.encode({"event_id": str(event_id)}).decode(),
            f"webhooks:{event_id}",
            now,
        )

    def _seal(self, body: bytes, record_id: uuid.UUID) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.aead.encrypt(nonce, body, b"idempotency:" + record_id.bytes)

    async def _stored(self, conn: Any, key: str, fingerprint: str) -> bytes:
        """A repeated key: the stored answer (the bench never repeats one; here for completeness)."""
        row = await conn.fetchrow(STORED_ANSWER, self.tenant, self.principal, key)
        if row is None or row["status"] != "complete" or row["response_body"] is None:
            raise Refused(409, "idempotency_key_in_use")
        blob = row["response_body"]
        return bytes(self.aead.decrypt(blob[:12], blob[12:], b"idempotency:" + row["id"].bytes))


class Minimal:
    """BEGIN, the pick, the grant, the item, COMMIT."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.pool: Any = None

    async def start(self) -> None:
        c = self.config
        self.pool = await asyncpg.create_pool(
            c.dsn,
            min_size=c.pool_min,
            max_size=c.pool_max,
            statement_cache_size=c.statement_cache,
            server_settings={"app.tenant_id": str(c.tenant_id)},
        )

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def grant(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        if request.headers.get("authorization") != f"Bearer {self.config.token}":
            return problem(401, "unauthorized")
        data = msgspec.json.decode(await request.body(), type=GrantIn)
        tenant, now = self.config.tenant_id, dt.datetime.now(UTC)
        grant_id, ref = uuid7(), readable_ref("G")
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                codes = await conn.fetch(
                    PICK, "issued", f"grant:{ref}", now, tenant, data.product_id, "available", data.quantity
                )
                if len(codes) < data.quantity:
                    raise Refused(409, "out_of_stock")
                await conn.execute(MINIMAL_GRANT, tenant, grant_id, ref, data.product_id, data.quantity, now)
                for c in codes:
                    await conn.execute(MINIMAL_ITEM, tenant, uuid7(), grant_id, c["id"], c["expires_at"], now)
        except Refused as refused:
            return problem(refused.status, refused.code)
        body = msgspec.json.encode({"id": grant_id, "ref": ref, "codes": [c["id"] for c in codes]})
        return Response(body, status_code=201, media_type=JSON_TYPE)


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def _app(server: HandWritten | Minimal) -> Litestar:
    @post("/api/v1/grants", status_code=201)
    async def grant(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await server.grant(request)

    return Litestar(
        [grant, health], on_startup=[server.start], on_shutdown=[server.stop], logging_config=None
    )


def hand_written_app() -> Litestar:
    """uvicorn ``--factory`` entry: the 15-statement grant."""
    return _app(HandWritten(Config.from_env()))


def minimal_app() -> Litestar:
    """uvicorn ``--factory`` entry: the minimal grant (pick, grant, item)."""
    return _app(Minimal(Config.from_env()))
