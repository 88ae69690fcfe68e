"""Domain errors that every surface (API, console, CLI, jobs) turns into a clear message.

Each error has a stable ``code``, an HTTP status, and a human detail in zh-CN and English.
The API renders them as RFC 9457 problem+json; the console and CLI show the detail.
"""

from __future__ import annotations

from typing import Any

import msgspec


class FieldError(msgspec.Struct, omit_defaults=True):
    field: str
    message: str
    code: str = "invalid"


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        en: str,
        zh: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(en)
        self.en = en
        self.zh = zh or en
        if code:
            self.code = code
        if status:
            self.status = status
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra or {}

    def detail(self, locale: str) -> str:
        return self.zh if locale.lower().startswith("zh") else self.en


class ValidationFailed(DomainError):
    status, code = 422, "validation_failed"


class NotFound(DomainError):
    status, code = 404, "not_found"


class Conflict(DomainError):
    status, code = 409, "conflict"


class Unauthorized(DomainError):
    status, code = 401, "unauthorized"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class QuotaExceeded(DomainError):
    status, code = 403, "quota_exceeded"


class TenantSuspended(DomainError):
    status, code = 403, "tenant_suspended"


class RateLimited(DomainError):
    status, code = 429, "rate_limited"


class Locked(DomainError):
    status, code = 423, "account_locked"
