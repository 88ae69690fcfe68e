"""A hand-written redemption server: what redeeming a single-use code costs without kaquan's layers.

uvicorn factory ``baseline_redeem:hand_written_app``: an ASGI app built with Litestar whose
``POST /api/v1/redemptions`` talks to PostgreSQL through a plain asyncpg pool, as the app role with row-level
security, doing the statements of kaquan's redemption of a single-use number + PIN code (derived from
kaquan's statement log of one redemption, ``bench/statement_log.py``):

BEGIN, the tenant's ``set_config``, the blocklist check (device and IP), the lockout check (client, IP and
device keys), the lookup (kaquan's statement: code, product, holder, lapsed units, rollback window, by the
code's HMAC digest), the conditional ``UPDATE codes`` (``issued`` → ``redeemed``), the redemption row, the
audit event, the ``code.redeemed`` event, the webhook fan-out row (``WHERE EXISTS``), the channel order code
update (a code a channel sold is marked redeemed, as kaquan's channel-orders extension does) and COMMIT.

The PIN is checked as kaquan checks it: the code's ciphertext opened with the tenant's data key (AES-GCM,
the digest as associated data) and the PIN compared in constant time. The digest is computed for the
canonical form of the code only (kaquan also tries a second, older layout in the same statement).
Configuration: the ``BASELINE_*`` variables of ``bench/baseline_grant.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import unicodedata
from typing import Any

import asyncpg
import msgspec
from baseline_grant import JSON_TYPE, SET_CONTEXT, UTC, Config, Refused, health, problem
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar import Litestar, Request, Response, post
from uuid_utils.compat import uuid7

BLOCKLIST = """
SELECT kind, value FROM risk_blocklist
WHERE tenant_id = $1 AND (kind = 'device' AND value = $2 OR kind = 'ip' AND (value = $3 OR value LIKE '%' || '/' || '%'))
"""

LOCKOUT = """
SELECT dimension, locked_until FROM risk_lockouts
WHERE tenant_id = $1 AND action = 'redeem' AND lifted_at IS NULL AND locked_until > $2
  AND (dimension = 'client' AND subject_key = $3 OR dimension = 'ip' AND subject_key = $4
       OR dimension = 'device' AND subject_key = $5)
ORDER BY locked_until DESC LIMIT 1
"""

# kaquan's lookup (core/redemption/lookup.py, with the rollback window), statuses as parameters as there.
LOOKUP = """
SELECT codes.id, codes.product_id, codes.digest, codes.secret, codes.last4, codes.has_pin, codes.state,
       codes.expires_at, codes.uses_left, products.kind, products.name_zh, products.currency, products.face_value,
       products.max_uses, holder.id AS holder_id, holder.member_id AS holder_member_id,
       holder.grant_id AS holder_grant_id,
       EXISTS (SELECT grant_items.id FROM grant_items
               WHERE grant_items.code_id = codes.id
                 AND (grant_items.status = $3 OR grant_items.status = $4 AND grant_items.expires_at <= $2)
                 AND grant_items.tenant_id = $1) AS holder_lapsed,
       (SELECT redemption_settings.rollback_window_minutes FROM redemption_settings
        WHERE redemption_settings.tenant_id = $1) AS rollback_window
FROM codes
JOIN products ON products.tenant_id = codes.tenant_id AND products.id = codes.product_id AND products.tenant_id = $1
LEFT OUTER JOIN grant_items AS holder ON holder.tenant_id = codes.tenant_id AND holder.id = (
    SELECT grant_items.id FROM grant_items
    WHERE grant_items.code_id = codes.id AND grant_items.status = $4
      AND (grant_items.expires_at IS NULL OR grant_items.expires_at > $2) AND grant_items.tenant_id = $1
    ORDER BY grant_items.id LIMIT 1) AND holder.tenant_id = $1
WHERE codes.digest = $5 AND codes.tenant_id = $1
"""

CONSUME = """
UPDATE codes SET state = 'redeemed', state_changed_at = $1
WHERE codes.id = $2 AND codes.state = 'issued' AND (codes.expires_at IS NULL OR codes.expires_at > $1)
  AND codes.tenant_id = $3
RETURNING codes.id
"""

REDEMPTION = """
INSERT INTO redemptions (tenant_id, id, code_id, product_id, kind, code_last4, grant_item_id, member_id, store,
                         terminal, reference, amount, currency, balance_after, use_number, user_id, client_id,
                         status, created_at)
VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $8, $9, NULL, $10, NULL, NULL, NULL, $11, 'redeemed', $12)
"""

AUDIT = """
INSERT INTO audit_events (tenant_id, id, occurred_at, actor_type, actor_id, action, object_type, object_id,
                          data, created_at)
VALUES ($1, $2, $3, 'client', $4, 'code.redeemed', 'code', $5, $6::json, $3)
"""

EVENT = """
INSERT INTO events (tenant_id, id, type, data, object_id, created_at)
VALUES ($1, $2, 'code.redeemed', $3::json, $4, $5)
"""

FAN_OUT = """
INSERT INTO outbox (tenant_id, id, actor, payload, business_key, status, attempts, available_at, created_at)
SELECT $1, $2, 'fan_out_webhooks', $3::json, $4, 'pending', 0, $5, $5
WHERE EXISTS (SELECT * FROM webhook_subscriptions
              WHERE webhook_subscriptions.tenant_id = $1 AND webhook_subscriptions.active IS true)
"""

CHANNEL_CODE = """
UPDATE channel_order_codes SET state = 'redeemed', redeemed_at = $1, redeemed_via = 'kaquan', state_changed_at = $1
WHERE channel_order_codes.code_id = $2 AND channel_order_codes.state IN ('issued', 'delivered')
  AND channel_order_codes.tenant_id = $3
RETURNING channel_order_codes.id
"""

# as core.normalize: whitespace, soft hyphen and zero-width characters; hyphens, dashes and minus signs
_SEPARATORS = re.compile(
    "[\\s\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"
    "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d]+"
)


class RedeemIn(msgspec.Struct, forbid_unknown_fields=False):
    code: str
    pin: str | None = None
    store: str = ""
    terminal: str = ""
    reference: str | None = None


def typed(text: str) -> str:
    """The canonical form of a typed code: NFKC, no spaces or dashes (as ``core.normalize.typed``)."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))


def subject_key(dimension: str, value: str) -> str:
    return hashlib.sha256(f"{dimension}\x1f{value}".encode()).hexdigest()


class HandWrittenRedemption:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.tenant = config.tenant_id
        self.aead = AESGCM(config.data_key)
        self.digest_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=config.tenant_id.bytes, info=b"kaquan-digest"
        ).derive(config.data_key)
        self.pool: Any = None

    async def start(self) -> None:
        c = self.config
        self.pool = await asyncpg.create_pool(
            c.dsn, min_size=c.pool_min, max_size=c.pool_max, statement_cache_size=c.statement_cache
        )

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def redeem(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        if request.headers.get("authorization") != f"Bearer {self.config.token}":
            return problem(401, "unauthorized")
        try:
            data = msgspec.json.decode(await request.body(), type=RedeemIn)
        except msgspec.ValidationError:
            return problem(422, "invalid")
        ip = request.client.host if request.client else ""
        code = typed(data.code)
        digest = hmac.new(self.digest_key, code.encode(), hashlib.sha256).hexdigest()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                answer = await self._redeem(conn, data, digest, ip)
        except Refused as refused:
            return problem(refused.status, refused.code)
        return Response(answer, status_code=201, media_type=JSON_TYPE)

    async def _redeem(self, conn: Any, data: RedeemIn, digest: str, ip: str) -> bytes:
        tenant, now, device = self.tenant, dt.datetime.now(UTC), data.terminal.strip()
        await conn.execute(SET_CONTEXT, str(tenant), "")
        if [
            r
            for r in await conn.fetch(BLOCKLIST, tenant, device, ip)
            if r["kind"] == "device" or r["value"] == ip
        ]:
            raise Refused(429, "risk_refused")
        client = str(self.config.client_pk)
        if await conn.fetchrow(
            LOCKOUT,
            tenant,
            now,
            subject_key("client", client),
            subject_key("ip", ip),
            subject_key("device", device),
        ):
            raise Refused(429, "locked_out")
        row = await conn.fetchrow(LOOKUP, tenant, now, "expired", "held", digest)
        if row is None:
            raise Refused(404, "code_not_found")
        self._check(row, data, now)
        if await conn.fetchval(CONSUME, now, row["id"], tenant) is None:
            raise Refused(409, "already_redeemed")
        red_id = uuid7()
        store, terminal, reference = data.store.strip(), device, (data.reference or "").strip() or None
        await conn.execute(
            REDEMPTION,
            tenant,
            red_id,
            row["id"],
            row["product_id"],
            row["kind"],
            row["last4"],
            store,
            terminal,
            reference,
            row["currency"],
            self.config.client_pk,
            now,
        )
        facts = {
            "redemption_id": str(red_id),
            "code_id": str(row["id"]),
            "last4": row["last4"],
            "product_id": str(row["product_id"]),
            "kind": row["kind"],
            "store": store,
            "terminal": terminal,
            "reference": reference,
            "amount": None,
            "currency": row["currency"],
            "balance_after": None,
            "use_number": None,
            "member_id": None,
            "grant_item_id": None,
        }
        text = msgspec.json.encode(facts).decode()
        await conn.execute(AUDIT, tenant, uuid7(), now, client, str(row["id"]), text)
        event_id = uuid7()
        await conn.execute(EVENT, tenant, event_id, text, str(row["id"]), now)
        await conn.execute(
            FAN_OUT,
            tenant,
            uuid7(),
            msgspec.json.encode({"event_id": str(event_id)}).decode(),
            f"webhooks:{event_id}",
            now,
        )
        await conn.fetch(CHANNEL_CODE, now, row["id"], tenant)
        window = row["rollback_window"] if row["rollback_window"] is not None else 30
        return msgspec.json.encode(
            {
                "id": red_id,
                "code_id": row["id"],
                "masked": "•••• " + row["last4"],
                "product_id": row["product_id"],
                "kind": row["kind"],
                "status": "redeemed",
                "store": store,
                "terminal": terminal,
                "reference": reference,
                "amount": None,
                "currency": row["currency"],
                "balance_after": None,
                "use_number": None,
                "member_id": None,
                "grant_item_id": None,
                "user_id": None,
                "client_id": self.config.client_pk,
                "redeemed_at": now,
                "rollback_until": now + dt.timedelta(minutes=window),
                "rolled_back_at": None,
                "rollback_reason": None,
            }
        )

    def _check(self, row: Any, data: RedeemIn, now: dt.datetime) -> None:
        """The PIN (the code opened with the tenant's key), the kind, the state and the expiry."""
        if row["has_pin"]:
            secret = row["secret"]
            plain = self.aead.decrypt(secret[:12], secret[12:], row["digest"].encode())
            _number, pin = msgspec.msgpack.decode(plain)
            given = typed(data.pin or "").encode()
            if not data.pin or not hmac.compare_digest(given, typed(pin or "").encode()):
                raise Refused(422, "pin_mismatch")
        if row["kind"] != "code":
            raise Refused(404, "code_not_found")
        if row["state"] != "issued":
            raise Refused(409, "already_redeemed" if row["state"] == "redeemed" else "not_issued")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise Refused(409, "expired")


def hand_written_app() -> Litestar:
    """uvicorn ``--factory`` entry: the hand-written redemption."""
    server = HandWrittenRedemption(Config.from_env())

    @post("/api/v1/redemptions", status_code=201)
    async def redeem(request: Request[Any, Any, Any]) -> Response[bytes]:
        return await server.redeem(request)

    return Litestar(
        [redeem, health], on_startup=[server.start], on_shutdown=[server.stop], logging_config=None
    )
