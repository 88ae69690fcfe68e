"""The tenant's face to its members: the display name and logo on the H5 pages, and the SMS signature and
texts (one-time code, a transferred code's claim link, expiry reminder) its notifier accounts send.

Every setting has a default, so a tenant that never opens the settings page sends what it sent before:
the signature is the tenant's name, the texts are :data:`SMS_TEMPLATES`' defaults. A template may use
only its own placeholders (``{code}``); an unknown one, a missing required one, a format spec or a text
over :data:`MAX_TEMPLATE_LENGTH` characters is refused with a field error naming the template.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.db.base import utcnow
from core.db.ids import new_id
from core.errors import FieldError, ValidationFailed
from core.notifications.models import TenantBranding

MAX_DISPLAY_NAME = 40
MIN_SIGNATURE, MAX_SIGNATURE = 2, 12
MAX_TEMPLATE_LENGTH = 200
MAX_LOGO_BYTES = 200 * 1024
LOGO_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/webp": b"RIFF"}


@dataclass(frozen=True)
class SmsTemplate:
    """One SMS text the tenant may edit: its label, default, placeholders and the ones it must keep."""

    label: str
    default: str
    placeholders: tuple[str, ...]
    required: tuple[str, ...]


SMS_TEMPLATES: dict[str, SmsTemplate] = {
    "claim_otp": SmsTemplate(
        "验证码短信",
        "您的验证码为 {code}，{minutes} 分钟内有效。请勿将验证码告诉他人。",
        ("code", "minutes"),
        ("code",),
    ),
    "claim_transfer": SmsTemplate(
        "转赠领取短信",
        "{giver} 转赠给您一张「{product_name}」，请在 {days} 天内打开链接领取：{link}",
        ("giver", "product_name", "days", "link"),
        ("link",),
    ),
    "expiry_reminder": SmsTemplate(
        "到期提醒短信",
        "您好{greeting}，您有 {count} 张券将于 {expires_on} 起陆续到期，尚未使用：{products}。请在到期前使用。",
        ("greeting", "count", "expires_on", "products"),
        (),
    ),
}


@dataclass(frozen=True)
class Branding:
    """What pages and messages use: every value resolved against its default."""

    display_name: str
    signature: str
    templates: dict[str, str]
    logo_digest: str | None
    custom_name: str = ""
    custom_signature: str = ""


async def _row(session: AsyncSession, *, lock: bool = False) -> TenantBranding | None:
    q = select(TenantBranding)
    if lock:
        q = q.with_for_update()
    return (await session.execute(q)).scalar_one_or_none()


async def branding(session: AsyncSession, tenant_name: str) -> Branding:
    """The current tenant's branding, defaults filled in (``tenant_name`` is the registered name)."""
    row = await _row(session)
    saved = dict(row.sms_templates or {}) if row else {}
    return Branding(
        display_name=(row.display_name if row and row.display_name else tenant_name),
        signature=(row.sms_signature if row and row.sms_signature else tenant_name),
        templates={k: saved.get(k) or t.default for k, t in SMS_TEMPLATES.items()},
        logo_digest=row.logo_digest if row else None,
        custom_name=row.display_name if row else "",
        custom_signature=row.sms_signature if row else "",
    )


def sms_text(brand: Branding, template: str, params: dict[str, Any]) -> str:
    """``【签名】`` and the tenant's text of ``template`` with ``params`` filled in."""
    text = brand.templates.get(template) or SMS_TEMPLATES[template].default
    values = {k: str(params.get(k, "")) for k in SMS_TEMPLATES[template].placeholders}
    return f"【{brand.signature}】" + text.format_map(values)


def _field_error(field: str, en: str, zh: str) -> ValidationFailed:
    return ValidationFailed(en, zh, errors=[FieldError(field=field, message=en, code="invalid")])


def check_template(key: str, text: str) -> str:
    """``text`` when it is a valid body for ``key``; a field error (``template_<key>``) otherwise."""
    spec = SMS_TEMPLATES[key]
    field = f"template_{key}"
    text = text.strip()
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise _field_error(
            field,
            f"{key}: at most {MAX_TEMPLATE_LENGTH} characters",
            f"「{spec.label}」最多 {MAX_TEMPLATE_LENGTH} 个字",
        )
    allowed = "、".join("{" + p + "}" for p in spec.placeholders)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        raise _field_error(
            field, f"{key}: unbalanced braces", f"「{spec.label}」中的花括号不成对，可用的占位符：{allowed}"
        ) from None
    used: set[str] = set()
    for _literal, name, fmt, conv in parts:
        if name is None:
            continue
        if name not in spec.placeholders or fmt or conv:
            raise _field_error(
                field,
                f"{key}: unknown placeholder {{{name}}}; allowed: {', '.join(spec.placeholders)}",
                f"「{spec.label}」中有未知的占位符 {{{name}}}，可用的占位符：{allowed}",
            )
        used.add(name)
    missing = [p for p in spec.required if p not in used]
    if missing:
        need = "、".join("{" + p + "}" for p in missing)
        raise _field_error(
            field, f"{key}: must contain {', '.join(missing)}", f"「{spec.label}」必须包含 {need}"
        )
    return text


def check_signature(text: str) -> str:
    """A signature of 2–12 characters without brackets (the 【】 are added when sending); empty: the default."""
    text = text.strip().strip("【】[]")
    if not text:
        return ""
    if not MIN_SIGNATURE <= len(text) <= MAX_SIGNATURE or any(c in text for c in "【】[]{}"):
        raise _field_error(
            "sms_signature",
            f"The signature has {MIN_SIGNATURE}-{MAX_SIGNATURE} characters, without brackets",
            f"短信签名为 {MIN_SIGNATURE}–{MAX_SIGNATURE} 个字，不含括号",
        )
    return text


async def _writable(session: AsyncSession) -> TenantBranding:
    row = await _row(session, lock=True)
    if row is None:
        row = TenantBranding(id=new_id(), display_name="", sms_signature="", sms_templates={})
        session.add(row)
    return row


async def save_branding(
    session: AsyncSession, display_name: str, signature: str, templates: dict[str, str]
) -> None:
    """Save the display name, SMS signature and texts; a text equal to its default (or empty) is not kept.
    All are checked before anything is written."""
    name = display_name.strip()
    if len(name) > MAX_DISPLAY_NAME:
        raise _field_error(
            "display_name", f"At most {MAX_DISPLAY_NAME} characters", f"店铺名称最多 {MAX_DISPLAY_NAME} 个字"
        )
    sig = check_signature(signature)
    kept: dict[str, str] = {}
    for key, spec in SMS_TEMPLATES.items():
        given = (templates.get(key) or "").strip()
        text = check_template(key, given) if given else ""  # empty: the default
        if text and text != spec.default:
            kept[key] = text
    row = await _writable(session)
    row.display_name, row.sms_signature, row.sms_templates = name, sig, kept
    row.updated_at = utcnow()
    await session.flush()
    record(
        session,
        "branding.updated",
        "tenant_branding",
        row.id,
        {"display_name": name, "sms_signature": sig, "templates": sorted(kept)},
    )


def logo_type(data: bytes, declared: str | None) -> str:
    """The image type of an upload (PNG, JPEG or WebP, by its bytes); a field error otherwise."""
    if not data:
        raise _field_error("logo", "Choose an image file", "请选择图片文件")
    if len(data) > MAX_LOGO_BYTES:
        raise _field_error(
            "logo",
            f"The logo is {len(data) // 1024} KB; at most {MAX_LOGO_BYTES // 1024} KB",
            f"图片大小为 {len(data) // 1024} KB，不能超过 {MAX_LOGO_BYTES // 1024} KB",
        )
    for kind, magic in LOGO_TYPES.items():
        if data.startswith(magic) and (kind != "image/webp" or data[8:12] == b"WEBP"):
            return kind
    raise _field_error(
        "logo",
        f"Only PNG, JPEG or WebP images (got {declared or 'unknown'})",
        "仅支持 PNG、JPEG 或 WebP 格式的图片",
    )


async def save_logo(session: AsyncSession, data: bytes, declared: str | None = None) -> str:
    """Store the logo (checked: type by content, size ≤ 200 KB); returns its digest (the cache key)."""
    kind = logo_type(data, declared)
    row = await _writable(session)
    row.logo, row.logo_type = data, kind
    row.logo_digest = hashlib.sha256(data).hexdigest()
    row.updated_at = utcnow()
    await session.flush()
    record(session, "branding.logo_set", "tenant_branding", row.id, {"type": kind, "bytes": len(data)})
    return row.logo_digest


async def remove_logo(session: AsyncSession) -> None:
    row = await _row(session, lock=True)
    if row is None or row.logo is None:
        return
    row.logo = row.logo_type = row.logo_digest = None
    row.updated_at = utcnow()
    await session.flush()
    record(session, "branding.logo_removed", "tenant_branding", row.id, {})


async def logo(session: AsyncSession) -> tuple[bytes, str, str] | None:
    """(bytes, content type, digest) of the current tenant's logo, or None."""
    row = await _row(session)
    if row is None or row.logo is None or row.logo_type is None or row.logo_digest is None:
        return None
    return row.logo, row.logo_type, row.logo_digest
