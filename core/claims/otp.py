"""One-time phone codes (6 digits, 5 minutes, 5 attempts then a 15-minute lock) and member SMS delivery.

Besides the per-code lock, every wrong code counts as a failed ``claim`` attempt of the requester (IP,
device) in the risk engine: a guesser spreading attempts over many links or phones from one IP or device
is locked out by the tenant's failure velocity (``risk_refused``, reason ``locked_out``), and a locked-out
requester can neither check nor ask for codes.

A code is stored only as a keyed digest (HMAC under the tenant key, bound to the challenge id). The SMS
carrying it goes through the outbox: the payload holds the recipient and the text sealed under the
tenant's data key (AAD ``member-sms``), so neither the phone nor the code rests in plaintext in the
database or the broker. :func:`send_member_sms` opens it just before handing it to the routed notifier.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.claims.models import OtpChallenge
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.context import require_tenant
from core.db.ids import new_id
from core.errors import DomainError
from core.jobs.context import current_env, current_message
from core.jobs.idempotency import run_once
from core.jobs.outbox import enqueue
from core.jobs.registry import job
from core.kernel import Kernel
from core.members.services import PHONE_AAD, digest_with, mask_phone, seal_phone
from core.normalize import typed
from core.notifications.branding import branding, sms_text
from core.risk import gate
from core.risk.gate import RiskSubject, record_failure
from core.settings import Settings
from plugins import Notification

log = structlog.get_logger("kaquan.claims")

OTP_TTL = dt.timedelta(minutes=5)
OTP_MAX_ATTEMPTS = 5
OTP_LOCK = dt.timedelta(minutes=15)
OTP_RESEND_AFTER = dt.timedelta(seconds=60)
SMS_ACTOR = "send_member_sms"
SMS_AAD = b"member-sms"


class OtpInvalid(DomainError):
    status, code = 422, "otp_invalid"


class OtpExpired(DomainError):
    status, code = 422, "otp_expired"


class OtpLocked(DomainError):
    status, code = 423, "otp_locked"


class OtpTooSoon(DomainError):
    status, code = 429, "otp_too_soon"


@dataclass(frozen=True)
class SentCode:
    """What the page may show after a code was sent."""

    phone_masked: str
    expires_at: dt.datetime


def _code_digest(cipher: TenantCipher, challenge: OtpChallenge, code: str) -> str:
    return cipher.digest(b"otp:" + challenge.id.bytes + b":" + code.encode("ascii"))


def locked_until(challenge: OtpChallenge | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the lock of ``challenge`` ends, or None when it is not locked."""
    if challenge is None or challenge.locked_until is None:
        return None
    return challenge.locked_until if challenge.locked_until > (now or utcnow()) else None


def resend_wait(challenge: OtpChallenge | None, now: dt.datetime | None = None) -> int:
    """Seconds until a new code may be sent for ``challenge`` (0: now)."""
    if challenge is None or challenge.last_sent_at is None:
        return 0
    left = (challenge.last_sent_at + OTP_RESEND_AFTER - (now or utcnow())).total_seconds()
    return max(0, int(left + 0.999))


def _locked_error(until: dt.datetime) -> OtpLocked:
    minutes = max(1, int((until - utcnow()).total_seconds() + 59) // 60)
    return OtpLocked(
        f"Too many wrong codes; try again in {minutes} minutes",
        f"验证码错误次数过多，请 {minutes} 分钟后再试",
        headers={"Retry-After": str(minutes * 60)},
        extra={"locked_until": until.isoformat()},
    )


async def refuse_if_locked_out(session: AsyncSession, settings: Settings, requester: RiskSubject) -> None:
    """``risk_refused`` (reason ``locked_out``) while the requester's IP or device is locked out of ``claim``.

    Only the lockout is checked here: the ``claim`` limits count claims, not code checks.
    """
    await gate.refuse_if_locked_out(session, settings, "claim", requester)


async def get_challenge(
    session: AsyncSession, purpose: str, subject: str, *, lock: bool = False
) -> OtpChallenge | None:
    q = select(OtpChallenge).where(OtpChallenge.purpose == purpose, OtpChallenge.subject == subject)
    if lock:
        q = q.with_for_update()
    return (await session.execute(q)).scalar_one_or_none()


async def _challenge_for_send(
    session: AsyncSession, purpose: str, subject: str, cipher: TenantCipher, phone: str
) -> OtpChallenge:
    existing = await get_challenge(session, purpose, subject, lock=True)
    if existing is not None:
        return existing
    digest, _, secret = seal_phone(cipher, phone)
    fresh = OtpChallenge(
        id=new_id(),
        purpose=purpose,
        subject=subject,
        phone_digest=digest,
        phone_secret=secret,
        attempts=0,
        send_count=0,
    )
    try:
        async with session.begin_nested():
            session.add(fresh)
            await session.flush()
        return fresh
    except IntegrityError:  # a concurrent first send created it
        found = await get_challenge(session, purpose, subject, lock=True)
        assert found is not None
        return found


async def send_code(
    session: AsyncSession,
    kernel: Kernel,
    purpose: str,
    subject: str,
    phone_e164: str,
    *,
    sender: str,
    requester: RiskSubject | None = None,
) -> SentCode:
    """Create a fresh code for ``subject`` and queue it by SMS to ``phone_e164`` (already normalised).

    Refuses while the requester is locked out (``risk_refused``), when the phone, device or IP is on the
    tenant's blocklist (``risk_refused``, reason ``blocked_*``: no SMS is sent), while the subject is locked
    (``otp_locked``) or within a minute of the last code (``otp_too_soon``) while that code is unused.
    Wrong attempts are kept across resends.
    """
    if requester is not None:
        await refuse_if_locked_out(session, kernel.settings, requester)
    cipher = await kernel.keys.cipher(session)
    # a blocklisted phone (or device, IP) gets no SMS at all: refused and recorded before anything is sent
    blocked = RiskSubject(
        phone_digest=digest_with(cipher, phone_e164),
        ip=requester.ip if requester else None,
        device_id=requester.device_id if requester else None,
    )
    await gate.refuse_if_blocked(session, kernel.settings, "claim", blocked)
    challenge = await _challenge_for_send(session, purpose, subject, cipher, phone_e164)
    now = utcnow()
    until = locked_until(challenge, now)
    if until is not None:
        raise _locked_error(until)
    pending = (
        challenge.code_digest is not None and challenge.expires_at is not None and now < challenge.expires_at
    )
    if pending and challenge.last_sent_at is not None and now - challenge.last_sent_at < OTP_RESEND_AFTER:
        wait = int((OTP_RESEND_AFTER - (now - challenge.last_sent_at)).total_seconds()) + 1
        raise OtpTooSoon(
            f"A code was just sent; wait {wait} seconds before asking again",
            f"验证码已发送，请 {wait} 秒后再获取",
            headers={"Retry-After": str(wait)},
            extra={"retry_after": wait},
        )
    if challenge.locked_until is not None:  # a lock that has run out starts a fresh count
        challenge.locked_until, challenge.attempts = None, 0
    digest, masked, secret = seal_phone(cipher, phone_e164)
    challenge.phone_digest, challenge.phone_secret = digest, secret
    code = f"{secrets.randbelow(1_000_000):06d}"
    challenge.code_digest = _code_digest(cipher, challenge, code)
    challenge.expires_at = now + OTP_TTL
    challenge.last_sent_at = now
    challenge.send_count += 1
    minutes = int(OTP_TTL.total_seconds() // 60)
    brand = await branding(session, sender)
    body = sms_text(brand, "claim_otp", {"code": code, "minutes": minutes})
    queue_sms(
        session,
        cipher,
        phone_e164,
        body,
        template="claim_otp",
        params={"sender": brand.signature, "code": code, "minutes": str(minutes)},
        business_key=f"{SMS_ACTOR}:otp:{challenge.id}:{challenge.send_count}",
    )
    record(
        session,
        "claim.otp_sent",
        "otp_challenge",
        challenge.id,
        {"purpose": purpose, "subject": subject, "phone": masked},
    )
    return SentCode(masked, challenge.expires_at)


async def check_code(
    session: AsyncSession,
    kernel: Kernel,
    purpose: str,
    subject: str,
    code: str,
    *,
    requester: RiskSubject | None = None,
) -> str:
    """The confirmed phone (E.164) when ``code`` is the subject's current code; the code is then used up.

    A wrong code counts an attempt (flushed, so the caller must commit even when it shows the error);
    the fifth locks the subject for 15 minutes. It also counts as a failed ``claim`` of ``requester`` in
    the risk engine (its own transaction: it survives the caller's rollback); a locked-out requester is
    refused before the code is looked at.
    """
    if requester is not None:
        await refuse_if_locked_out(session, kernel.settings, requester)
    challenge = await get_challenge(session, purpose, subject, lock=True)
    now = utcnow()
    until = locked_until(challenge, now)
    if until is not None:
        raise _locked_error(until)
    if challenge is None or challenge.code_digest is None or challenge.expires_at is None:
        raise OtpExpired("No valid code; ask for a new one", "验证码无效，请重新获取")
    if now >= challenge.expires_at:
        challenge.code_digest = None
        await session.flush()
        raise OtpExpired("The code has expired; ask for a new one", "验证码已过期，请重新获取")
    cipher = await kernel.keys.cipher(session)
    given = typed(code or "")  # full-width digits and spaces as typed on a phone
    if not (len(given) == 6 and given.isascii() and given.isdigit()) or not hmac.compare_digest(
        challenge.code_digest, _code_digest(cipher, challenge, given)
    ):
        challenge.attempts += 1
        error: DomainError
        if challenge.attempts >= OTP_MAX_ATTEMPTS:
            challenge.locked_until = now + OTP_LOCK
            challenge.code_digest = None
            record(
                session,
                "claim.otp_locked",
                "otp_challenge",
                challenge.id,
                {"purpose": purpose, "subject": subject, "until": challenge.locked_until.isoformat()},
            )
            error = _locked_error(challenge.locked_until)
        else:
            left = OTP_MAX_ATTEMPTS - challenge.attempts
            error = OtpInvalid(
                f"Wrong code; {left} attempts left",
                f"验证码错误，还可尝试 {left} 次",
                extra={"attempts_left": left},
            )
        # Flush first: on SQLite the failure is then written right after the caller's transaction (a
        # stale read snapshot could not take the write lock once the failure had been committed).
        await session.flush()
        if requester is not None:
            await record_failure(session, kernel.settings, "claim", requester)
        raise error
    challenge.code_digest = None
    challenge.attempts = 0
    await session.flush()
    return phone_of(cipher, challenge)


def phone_of(cipher: TenantCipher, challenge: OtpChallenge) -> str:
    """The phone (E.164) a challenge's code went to."""
    aad = PHONE_AAD + challenge.phone_digest.encode()
    return cipher.decrypt(challenge.phone_secret, aad=aad).decode("ascii")


def masked_phone_of(cipher: TenantCipher, challenge: OtpChallenge) -> str:
    return mask_phone(phone_of(cipher, challenge))


def queue_sms(
    session: AsyncSession,
    cipher: TenantCipher,
    phone_e164: str,
    body: str,
    *,
    template: str,
    params: dict[str, str],
    business_key: str,
) -> None:
    """Queue an SMS to a member through the outbox, recipient, text and template parameters sealed under
    the tenant's key (the parameters carry the code or link too)."""
    sealed = cipher.encrypt(
        msgspec.msgpack.encode({"to": phone_e164, "body": body, "params": params}), aad=SMS_AAD
    )
    enqueue(
        session,
        SMS_ACTOR,
        {"template": template, "to_masked": mask_phone(phone_e164), "sealed": sealed.hex()},
        business_key=business_key,
    )


def open_sms(cipher: TenantCipher, payload: dict[str, Any]) -> tuple[str, str]:
    """(recipient, text) of a queued member SMS."""
    to, body, _params = open_sms_message(cipher, payload)
    return to, body


def open_sms_message(cipher: TenantCipher, payload: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """(recipient, text, template parameters) of a queued member SMS."""
    opened = msgspec.msgpack.decode(cipher.decrypt(bytes.fromhex(payload["sealed"]), aad=SMS_AAD))
    params = {str(k): str(v) for k, v in (opened.get("params") or {}).items()}
    return str(opened["to"]), str(opened["body"]), params


class MemberSmsFailed(RuntimeError):
    """The notifier could not deliver a member SMS now; the job is retried with backoff."""


@job(SMS_ACTOR, queue="notifications", max_retries=5, min_backoff_ms=5_000)
async def send_member_sms(template: str, sealed: str, to_masked: str = "") -> None:
    """Deliver one member SMS (a one-time code or a claim link) once, through the notifier for ``sms``."""
    from core.notifications.delivery import send

    env = current_env()
    message = current_message()
    tenant_id = require_tenant()
    key = message.idempotency_key if message else f"{SMS_ACTOR}:{template}:{sealed[:32]}"
    async with env.db().transaction() as session:
        if not await run_once(session, key, SMS_ACTOR):
            return
        to, body, params = open_sms_message(await env.keys.cipher(session), {"sealed": sealed})
        notification = Notification(
            channel="sms", to=to, subject="", body=body, template=template, reference=key, params=params
        )
        sent = await send(env, tenant_id, notification, session=session)
        sent.raise_for_retry(MemberSmsFailed)
        sent.log(log, "member_sms")
