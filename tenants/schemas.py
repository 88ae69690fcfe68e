"""Structs in and out of the tenants services (shared by API, console and CLI)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$"
"""A tenant slug: 3–40 lowercase letters, digits and hyphens, starting and ending with a letter or digit
(checked by :func:`tenants.onboarding.check_slug`, which says so in the error)."""
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Role = Annotated[str, msgspec.Meta(pattern=r"^(owner|admin|operator|finance|viewer|clerk)$")]


class PlanCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
    name: Name
    name_zh: Annotated[str, msgspec.Meta(max_length=120)] | None = None
    max_users: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5
    max_api_clients: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 2
    requests_per_minute: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 600
    max_stored_codes: Annotated[int, msgspec.Meta(ge=0)] = 100_000
    allowed_connectors: list[str] = msgspec.field(default_factory=list)


class PlanOut(msgspec.Struct):
    id: uuid.UUID
    code: str
    name: str
    max_users: int
    max_api_clients: int
    requests_per_minute: int
    max_stored_codes: int
    allowed_connectors: list[str]
    name_zh: str | None = None
    """The display name in Chinese (``name`` is the English one)."""

    def display_name(self, locale: str) -> str:
        """The name to show in ``locale`` (the Chinese one when set and the locale is Chinese)."""
        return self.name_zh if locale.startswith("zh") and self.name_zh else self.name


class PlanNames(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The plan's display names, as the operator edits them."""

    name: Name
    name_zh: Annotated[str, msgspec.Meta(max_length=120)] = ""


class TenantCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    slug: Annotated[str, msgspec.Meta(max_length=200)]
    owner_email: Email
    plan: str = "starter"
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    locale: Annotated[str, msgspec.Meta(pattern=r"^(zh-CN|en)$")] = "zh-CN"


class TenantOut(msgspec.Struct):
    id: uuid.UUID
    slug: str
    name: str
    plan: str
    status: str
    timezone: str
    currency: str
    locale: str
    owner_email: str
    status_reason: str | None
    created_at: dt.datetime


class TenantCreated(msgspec.Struct):
    tenant: TenantOut
    owner_invite_url: str
    """Shown once: the owner sets a password through it."""


class StatusChange(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


class UserInvite(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: Email
    role: Role
    name: Annotated[str, msgspec.Meta(max_length=120)] = ""


class UserOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    role: str
    status: str
    created_at: dt.datetime
    last_login_at: dt.datetime | None


class UserInvited(msgspec.Struct):
    user: UserOut
    invite_url: str


class ApiClientCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    scopes: list[str]


class ApiClientOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    client_id: str
    scopes: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class ApiClientCreated(msgspec.Struct):
    client: ApiClientOut
    client_secret: str
    """Shown once; only a digest is stored."""


class Principal(msgspec.Struct, frozen=True):
    """Who a request acts as, after authentication."""

    kind: str  # "client" | "user" | "operator"
    subject_id: str
    tenant_id: uuid.UUID | None = None
    scopes: frozenset[str] = frozenset()
    role: str | None = None
    client_pk: uuid.UUID | None = None
    rate_limit: int | None = None
    """Requests per minute the tenant's plan allows (API clients only)."""
