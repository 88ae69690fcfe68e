"""Message templates (zh-CN and English), rendered to a subject and a plain-text body."""

from __future__ import annotations

from typing import Any

from core.errors import ValidationFailed

ROLE_NAMES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "owner": "所有者",
        "admin": "管理员",
        "operator": "操作员",
        "finance": "财务",
        "viewer": "只读成员",
    },
    "en": {
        "owner": "owner",
        "admin": "administrator",
        "operator": "operator",
        "finance": "finance",
        "viewer": "viewer",
    },
}

TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    "invite": {
        "zh-CN": (
            "邀请您加入 kaquan 上的「{tenant_name}」",
            "您好：\n\n您已被邀请以「{role_name}」身份加入 kaquan 上的「{tenant_name}」。\n"
            "请通过以下链接设置密码（7 天内有效，仅可使用一次）：\n\n{link}\n\n"
            "如果您并未期待此邮件，请忽略。\n",
        ),
        "en": (
            "You are invited to {tenant_name} on kaquan",
            "Hello,\n\nYou have been invited to join {tenant_name} on kaquan as {role_name}.\n"
            "Set your password with this link (valid for 7 days, single use):\n\n{link}\n\n"
            "If you did not expect this message, ignore it.\n",
        ),
    },
}

REQUIRED: dict[str, tuple[str, ...]] = {"invite": ("link", "tenant_name")}


def normalize_locale(locale: str | None) -> str:
    """``zh-CN`` for any Chinese locale (the default), else ``en``."""
    return "en" if (locale or "").lower().startswith("en") else "zh-CN"


def render(template: str, locale: str | None, params: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of ``template`` in ``locale``; raises if the template or a parameter is missing."""
    lang = normalize_locale(locale)
    variants = TEMPLATES.get(template)
    if variants is None:
        raise ValidationFailed(f"Unknown notification template {template!r}", f"未知的通知模板 {template!r}")
    missing = [p for p in REQUIRED.get(template, ()) if not params.get(p)]
    if missing:
        raise ValidationFailed(
            f"Template {template!r} needs {', '.join(missing)}",
            f"模板 {template!r} 缺少参数：{', '.join(missing)}",
        )
    values = {k: str(v) for k, v in params.items()}
    role = values.get("role", "")
    values.setdefault("role_name", ROLE_NAMES[lang].get(role, role))
    subject, body = variants[lang]
    return subject.format_map(values), body.format_map(values)
