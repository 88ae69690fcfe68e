"""Structs in and out of the connector-account services (shared by the API, the console and the jobs).

Secrets never leave: an account's answer carries its public settings, the *names* of the secret settings
that are set (``secrets_set``), whether it is authorised (OAuth2) and when its token expires — never a
secret value nor a token.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

AccountName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
ConnectorId = Annotated[str, msgspec.Meta(min_length=2, max_length=64)]
Reason = Annotated[str, msgspec.Meta(max_length=500)]


class ConnectorOut(msgspec.Struct, kw_only=True):
    """A connector the tenant's plan allows: what it is and the settings its accounts need.

    ``config_schema`` is the JSON schema of its config Struct; secret fields carry ``writeOnly`` and
    ``x-kaquan-secret`` and are listed in ``secret_fields``. ``oauth`` says an account is authorised by
    the shop owner through the OAuth2 redirect flow after it is connected.
    """

    id: str
    kind: str
    display_name: str
    display_name_zh: str
    description: str
    description_zh: str
    version: str
    capabilities: list[str]
    config_schema: dict[str, Any]
    secret_fields: list[str]
    oauth: bool


class AccountConnect(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Connect an account of ``connector_id`` named ``name`` with its settings (``config``, by field name;
    secrets included — they are stored encrypted and never returned)."""

    connector_id: ConnectorId
    name: AccountName
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class AccountUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A partial change: a new ``name``, and/or settings in ``config`` (only the fields given change; a
    secret left out or given as ``""`` keeps its stored value)."""

    name: AccountName | UnsetType = UNSET
    config: dict[str, Any] | UnsetType = UNSET


class AccountPause(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Why the account is paused (shown on the account)."""

    reason: Reason = ""


class HealthOut(msgspec.Struct, kw_only=True):
    """The account's health from the outcome of its recent calls.

    ``state``: ``ok`` (last call succeeded), ``failing`` (the last call failed), ``unknown`` (never
    called), ``paused`` or ``disconnected``.
    """

    account_id: uuid.UUID
    state: str
    status: str
    status_reason: str
    last_ok_at: dt.datetime | None
    last_error_at: dt.datetime | None
    last_error: str
    consecutive_failures: int
    token_expires_at: dt.datetime | None


class AccountOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    connector_id: str
    kind: str
    name: str
    status: str
    status_reason: str
    config: dict[str, Any]
    secrets_set: list[str]
    oauth: bool
    authorised: bool
    authorised_at: dt.datetime | None
    health: HealthOut
    created_at: dt.datetime
    updated_at: dt.datetime | None


class AccountPage(msgspec.Struct):
    items: list[AccountOut]
    next_cursor: uuid.UUID | None


class CheckOut(msgspec.Struct, kw_only=True):
    """The connection test: ``tested`` is false when the connector offers no test (notifiers may not)."""

    account_id: uuid.UUID
    ok: bool
    tested: bool
    detail: str
    checked_at: dt.datetime


class AuthorizationStart(msgspec.Struct, kw_only=True):
    """Where to send the shop owner to authorise the account (valid once, until the flow completes)."""

    account_id: uuid.UUID
    authorize_url: str
    redirect_uri: str
