"""Data contracts between kaquan and connectors (msgspec Structs): the partner-facing vocabulary.

Everything here is plain data; a connector receives and returns these and never sees a database.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi

ConnectorKind = Literal["notifier", "sales_channel", "supplier"]
CONNECTOR_KINDS: tuple[str, ...] = ("notifier", "sales_channel", "supplier")

#: A connector id: lower-case letters, digits and underscores, starting with a letter (2–64 chars).
CONNECTOR_ID = re.compile(r"^[a-z][a-z0-9_]{1,63}$")

#: Notification channels the host knows; a notifier lists the ones it delivers in ``capabilities``.
NOTIFICATION_CHANNELS: tuple[str, ...] = ("email", "sms", "webhook", "wechat", "log")

#: Mark a config field as a secret (API key, password): stored encrypted, never shown or logged.
Secret = Annotated[
    str, msgspec.Meta(extra={"secret": True}, extra_json_schema={"writeOnly": True, "x-kaquan-secret": True})
]


class ConnectorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a connector declares about itself.

    ``config`` is the msgspec Struct type of its settings (fields typed :data:`Secret` are secrets);
    ``capabilities`` says what it can do (for a notifier: the channels it delivers, e.g. ``{"email"}``).
    """

    id: str
    kind: ConnectorKind
    display_name: str
    config: type[msgspec.Struct]
    capabilities: frozenset[str] = frozenset()
    display_name_zh: str = ""
    description: str = ""
    description_zh: str = ""  # shown in the Chinese console (``description`` otherwise)
    version: str = "1"


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """A rendered message to deliver to one recipient.

    ``reference`` is the host's idempotency key for this delivery: stable across every retry and
    redelivery of one delivery (a retry after a crash re-sends with the same key), unique per delivery.
    Pass it to providers that dedupe.
    ``body`` may contain a credential (an invite link): deliver it, never log it.
    ``template`` names the message (``invite``, ``grant_codes``, ``claim_otp`` …) and ``params`` carries its
    values as strings, for providers that send only approved templates with a signature (Chinese SMS
    services, WeChat template messages): such a connector maps ``template`` to its provider's template id
    in its config and sends ``params``; others send ``subject`` and ``body``, which are already rendered.
    """

    channel: str
    to: str
    subject: str
    body: str
    locale: str = "zh-CN"
    template: str = ""
    reference: str = ""
    params: dict[str, str] = msgspec.field(default_factory=dict)


DeliveryStatus = Literal["sent", "queued", "rejected", "failed"]


class DeliveryResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one delivery.

    - ``sent`` / ``queued``: accepted by the provider;
    - ``rejected``: will never succeed (bad recipient, unsupported channel): the host does not retry;
    - ``failed``: did not go out; the host retries when ``retryable`` is true.
    """

    status: DeliveryStatus
    provider_message_id: str | None = None
    detail: str = ""
    retryable: bool = False

    @property
    def accepted(self) -> bool:
        return self.status in ("sent", "queued")


def secret_fields(config_type: type[msgspec.Struct]) -> frozenset[str]:
    """Names of the fields of a config Struct that are marked :data:`Secret`."""
    info = mi.type_info(config_type)
    if not isinstance(info, mi.StructType):
        raise TypeError(f"{config_type!r} is not a msgspec Struct")
    names = set()
    for f in info.fields:
        if isinstance(f.type, mi.Metadata) and (f.type.extra or {}).get("secret"):
            names.add(f.name)
    return frozenset(names)


def config_schema(config_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON schema of a config Struct (secrets carry ``writeOnly`` and ``x-kaquan-secret``)."""
    return msgspec.json.schema(config_type)


def redact_config(config: msgspec.Struct) -> dict[str, Any]:
    """The config as builtins with every secret replaced by ``"***"`` (safe to show or log)."""
    secrets = secret_fields(type(config))
    data: dict[str, Any] = msgspec.to_builtins(config)
    return {k: ("***" if k in secrets and v else v) for k, v in data.items()}


def mask_recipient(to: str) -> str:
    """A recipient safe for logs: ``a***@example.com``, ``138****5678``."""
    to = to.strip()
    if "@" in to:
        local, _, domain = to.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if len(to) >= 7:
        return f"{to[:3]}****{to[-4:]}"
    return "***"
