"""What each row code of a bulk grant means, in English and Chinese — the one source for every surface.

The validation report (API), the console's check table and the result file a shop owner downloads all
show a row's problem or failure through :func:`row_message`, so they say the same thing in the same words.
Codes stay stable (programs read them); messages are for people.
"""

from __future__ import annotations

from core.errors import DomainError

#: code → (English, Chinese). Validation problems first (see :data:`core.bulk_grants.parsing.PROBLEMS`),
#: then what can go wrong when a row is granted.
ROW_MESSAGES: dict[str, tuple[str, str]] = {
    "missing_contact": ("No phone or e-mail", "缺少手机号或邮箱"),
    "bad_phone": ("Not a mainland mobile number", "不是有效的中国大陆手机号"),
    "bad_email": ("Not an e-mail address", "邮箱格式不正确"),
    "missing_sku": ("No product code", "缺少商品编码"),
    "unknown_sku": ("Unknown product code", "商品编码不存在"),
    "product_inactive": ("Product not on sale", "商品未上架"),
    "bad_quantity": ("Quantity not 1–100", "数量不在 1–100 之间"),
    "duplicate_in_file": ("Same person and product earlier in the file", "文件中前面已有同一人同一商品"),
    "out_of_stock": ("Out of stock", "库存不足"),
    "risk_refused": ("Refused by a risk rule (limit or blocklist)", "被风控规则拒绝（超出限额或在黑名单中）"),
    "member_blocked": ("This member is blocked", "该会员已被停用"),
    "member_busy": (
        "The member was being changed at the same time; run it again",
        "会员正被并发修改，请重试",
    ),
    "invalid_phone": ("Not a mainland mobile number", "不是有效的中国大陆手机号"),
    "invalid_email": ("Not an e-mail address", "邮箱格式不正确"),
    "recipient_required": ("No phone or e-mail", "缺少手机号或邮箱"),
    "sms_needs_phone": ("SMS delivery needs a phone number", "短信发放需要手机号"),
    "email_needs_address": ("E-mail delivery needs an e-mail address", "邮件发放需要邮箱"),
    "product_not_found": ("Product not found", "权益商品不存在"),
    "product_not_allocatable": ("This product has no codes of its own", "该商品没有自身的卡密"),
    "bundle_empty": ("This bundle has no items", "该组合权益包没有商品"),
    "grant_failed": (
        "Not granted because of an internal error; run it again",
        "因系统内部错误未能发放，请重试",
    ),
}
_UNKNOWN = ("Not granted", "未能发放")


def is_zh(locale: str) -> bool:
    return not locale.lower().startswith("en")


def row_message(code: str, locale: str = "zh-CN") -> str:
    """The message of a row code in ``locale`` (Chinese unless English is asked for)."""
    en, zh = ROW_MESSAGES.get(code, _UNKNOWN)
    return zh if is_zh(locale) else en


def row_messages(locale: str) -> dict[str, str]:
    """Every row code's message in ``locale`` (for templates)."""
    return {code: row_message(code, locale) for code in ROW_MESSAGES}


def failure_code(exc: DomainError) -> str:
    """The stable row code of a grant that failed: the error's code, made specific where it is generic."""
    if exc.code == "validation_failed" and exc.errors:
        field = exc.errors[0].field
        if field == "phone":
            return "sms_needs_phone"
        if field == "email":
            return "email_needs_address"
    return exc.code[:60]
