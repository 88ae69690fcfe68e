"""Message templates (zh-CN and English), rendered to a subject and a plain-text body."""

from __future__ import annotations

from typing import Any

from core.errors import ValidationFailed

# The role words of the console (admin_ui/labels.py ROLE_LABELS and its zh_CN catalog): one word a role.
ROLE_NAMES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "owner": "所有者",
        "admin": "管理员",
        "operator": "运营",
        "finance": "财务",
        "viewer": "只读",
        "clerk": "核销员",
    },
    "en": {
        "owner": "owner",
        "admin": "administrator",
        "operator": "operator",
        "finance": "finance",
        "viewer": "viewer",
        "clerk": "clerk",
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
    "grant_codes": {
        "zh-CN": (
            "「{tenant_name}」送您的{product_name}",
            "您好{greeting}：\n\n「{tenant_name}」送您 {product_name}：\n\n{codes}\n\n"
            "有效期：{validity}\n使用说明：{usage_rules}\n\n请妥善保管，勿将卡密告诉他人。\n",
        ),
        "en": (
            "Your {product_name} from {tenant_name}",
            "Hello{greeting},\n\n{tenant_name} sent you {product_name}:\n\n{codes}\n\n"
            "Valid: {validity}\nHow to use: {usage_rules}\n\nKeep these codes private.\n",
        ),
    },
    "expiry_reminder": {
        "zh-CN": (
            "您在「{tenant_name}」的 {count} 张券即将到期",
            "您好{greeting}：\n\n您在「{tenant_name}」领取的 {count} 张券将于 {expires_on} 起陆续到期，尚未使用：\n"
            "{products}\n\n请在到期前使用，过期后将无法使用。\n",
        ),
        "en": (
            "{count} of your codes from {tenant_name} expire soon",
            "Hello{greeting},\n\n{count} unused code(s) you received from {tenant_name} start to expire on "
            "{expires_on}:\n{products}\n\nUse them before they expire.\n",
        ),
    },
}

TEMPLATES["connector_paused"] = {
    "zh-CN": (
        "「{tenant_name}」的连接账户「{account_name}」已暂停",
        "您好：\n\n「{tenant_name}」的连接账户「{account_name}」（{connector_id}）已暂停：{reason}\n"
        "在重新授权或恢复之前，kaquan 不会再调用它。请在控制台查看：\n\n{link}\n",
    ),
    "en": (
        "The connector account {account_name} of {tenant_name} is paused",
        "Hello,\n\nThe connector account {account_name} ({connector_id}) of {tenant_name} is paused: {reason}\n"
        "kaquan will not call it until it is authorised again or resumed. See it in the console:\n\n{link}\n",
    ),
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "invite": ("link", "tenant_name"),
    "grant_codes": ("codes", "product_name", "tenant_name"),
    "expiry_reminder": ("count", "expires_on", "products", "tenant_name"),
    "connector_paused": ("account_name", "connector_id", "reason", "link", "tenant_name"),
}


def template_params(params: dict[str, Any]) -> dict[str, str]:
    """A template's parameters as the strings ``Notification.params`` carries (for notifiers that send only
    approved templates with their parameters, such as Chinese SMS services and WeChat template messages)."""
    return {str(k): str(v) for k, v in params.items() if v is not None}


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
