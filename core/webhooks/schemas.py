"""Structs in and out of the webhook services (shared by the API and the console).

The signing secret appears in exactly two answers: :class:`WebhookCreated` (on creation) and
:class:`SecretRotated`; every other read shows the subscription without it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

Url = Annotated[str, msgspec.Meta(max_length=2000)]
Description = Annotated[str, msgspec.Meta(max_length=500)]
EventList = Annotated[list[str], msgspec.Meta(max_length=50)]


class WebhookCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new subscription: ``events`` are types from ``GET /api/v1/events`` or ``["*"]`` for all."""

    url: Url
    events: EventList
    description: Description = ""
    active: bool = True


class WebhookUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A partial change: only the fields present are changed."""

    url: Url | UnsetType = UNSET
    events: EventList | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class WebhookOut(msgspec.Struct):
    id: uuid.UUID
    url: str
    events: list[str]
    active: bool
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime | None


class WebhookCreated(msgspec.Struct):
    """The new subscription and its signing secret, shown this once."""

    subscription: WebhookOut
    secret: str


class SecretRotated(msgspec.Struct):
    """The subscription's new signing secret, shown this once; the old one stops working at once."""

    id: uuid.UUID
    secret: str


class WebhookPage(msgspec.Struct):
    items: list[WebhookOut]
    next_cursor: uuid.UUID | None


class DeliveryOut(msgspec.Struct):
    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    response_snippet: str | None
    next_attempt_at: dt.datetime | None
    last_attempt_at: dt.datetime | None
    completed_at: dt.datetime | None
    created_at: dt.datetime


class DeliveryPage(msgspec.Struct):
    items: list[DeliveryOut]
    next_cursor: uuid.UUID | None


class WebhookTestResult(msgspec.Struct, kw_only=True):
    """What one test send (``webhook.test``) did: the receiver's HTTP status, or the error, and how long the
    request took. The attempt is in the delivery log as ``delivery_id``."""

    delivery_id: uuid.UUID
    event_id: uuid.UUID
    success: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    response_snippet: str | None
