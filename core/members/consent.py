"""Consent to the tenant's privacy policy, asked before a member's phone number is collected (claim link,
campaign, phone login), as PIPL requires for personal information in China.

A page sends the policy version it showed (the checkbox's value); :func:`require_consent` refuses a
request without it (``consent_required``, a field error on ``consent``), and :func:`record_consent` keeps
who agreed to which version, when and where (``member_consents``, tenant-scoped, never updated).

The policy text is a generic template naming the tenant (:data:`POLICY_SECTIONS`); tenants cannot edit it
yet. Changing it means a new :data:`PRIVACY_VERSION`.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from core.audit.services import record
from core.crypto.envelope import TenantCipher
from core.db.base import utcnow
from core.db.ids import new_id
from core.errors import FieldError, ValidationFailed
from core.members.models import CONSENT_SOURCES, MemberConsent
from core.members.services import digest_with, mask_phone

PRIVACY_VERSION = "2025-01"

#: The generic policy (title, paragraphs); ``{tenant}`` is the tenant's name.
POLICY_SECTIONS: tuple[tuple[str, str], ...] = (
    (
        "我们收集哪些信息",
        "为向您发放、展示和核销券码，{tenant}会收集您的手机号码，以及您领取、转赠和使用券码的记录。"
        "为防止刷券和盗用，我们会记录访问时的 IP 地址和设备标识。",
    ),
    (
        "我们如何使用这些信息",
        "手机号仅用于发送验证码、领取链接和到期提醒，以及识别您的券码。"
        "我们不会将您的手机号用于与券码无关的营销，也不会出售给任何第三方。",
    ),
    (
        "信息的保存与保护",
        "手机号以加密形式保存，页面中仅显示部分号码。券码在您的账户中加密保存，查看记录会被留存以便核查。",
    ),
    (
        "委托处理",
        "{tenant}使用 kaquan 卡券系统及短信服务商处理上述信息，受托方仅按{tenant}的指示处理，不得另作他用。",
    ),
    (
        "您的权利",
        "您可以联系{tenant}查询、更正或删除您的个人信息，或撤回本同意；撤回后将无法继续领取和查看券码。",
    ),
)


class ConsentRequired(ValidationFailed):
    code = "consent_required"


def require_consent(given: str | None) -> str:
    """The policy version the visitor agreed to; ``consent_required`` when the box was not ticked."""
    if (given or "").strip() != PRIVACY_VERSION:
        raise ConsentRequired(
            "Please read and accept the privacy policy first",
            "请先阅读并勾选同意《隐私政策》",
            errors=[
                FieldError(field="consent", message="the privacy policy must be accepted", code="required")
            ],
        )
    return PRIVACY_VERSION


def record_consent(
    session: AsyncSession,
    cipher: TenantCipher,
    phone_e164: str,
    source: str,
    version: str,
    *,
    member_id: uuid.UUID | None = None,
    ip: str | None = None,
) -> MemberConsent:
    """Keep a consent (added to the session; audited with the masked phone)."""
    if source not in CONSENT_SOURCES:
        raise ValueError(f"unknown consent source {source!r}")
    consent = MemberConsent(
        id=new_id(),
        member_id=member_id,
        phone_digest=digest_with(cipher, phone_e164),
        phone_masked=mask_phone(phone_e164),
        policy_version=version,
        source=source,
        ip=(ip or None) and ip[:64],
        consented_at=utcnow(),
    )
    session.add(consent)
    record(
        session,
        "member.consented",
        "member_consent",
        consent.id,
        {"source": source, "version": version, "phone": consent.phone_masked},
    )
    return consent
