"""What the built-in HTTP channel connectors share (SDK-level code only: it imports nothing of kaquan's core).

- HMAC-SHA256 signing and constant-time verification;
- one JSON request to a channel, its failure sorted into *retryable* (transport errors, timeouts, 408, 425,
  429, 5xx, a 2xx body that is not a JSON object) and *permanent* (any other 4xx);
- turning such a failure into the SDK's result types, or into :class:`ChannelUnavailable` for the methods
  whose contract has no failure status (``pull_orders``, ``fetch_statement``);
- reading times, integers and strings out of a channel's JSON without trusting it.

Nothing here logs a secret, a request body (it carries codes) or a URL with credentials: details name only
the HTTP status or the channel's error code and message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from plugins import BadCallback, CallResult, StockItem, StockItemResult

#: HTTP statuses after which the same request may succeed.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
#: How far a callback's timestamp may be from our clock (seconds) before it is refused as stale or forged.
DEFAULT_TOLERANCE = 900


class ChannelUnavailable(RuntimeError):
    """A read from the channel (an order page, a statement page) failed; nothing was consumed.

    The caller keeps its cursor and asks again later; ``retryable`` is false only for a refusal that will not
    change by itself (bad credentials, an unknown shop). The message carries no secret.
    """

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


def sign(secret: str, message: str | bytes) -> str:
    """Hex HMAC-SHA256 of ``message`` under ``secret``."""
    data = message.encode() if isinstance(message, str) else message
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def verify(secret: str, message: str | bytes, signature: str) -> bool:
    """Whether ``signature`` is the HMAC-SHA256 of ``message`` under ``secret`` (constant time)."""
    if not secret or not signature:
        return False
    return hmac.compare_digest(sign(secret, message), signature.strip().lower())


def check_fresh(timestamp: str, now: dt.datetime, tolerance: int = DEFAULT_TOLERANCE) -> None:
    """Refuse a callback whose epoch-seconds ``timestamp`` is missing, unreadable or too far from ``now``."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        raise BadCallback("missing or unreadable timestamp", signature=True) from None
    if abs(now.timestamp() - sent) > tolerance:
        raise BadCallback("stale timestamp", signature=True)


def body_text(body: bytes) -> str:
    """The callback body as text, or :class:`BadCallback` when it is not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadCallback("body is not UTF-8") from None


def json_object(text: str | bytes) -> dict[str, Any]:
    """A JSON object from a callback body, or :class:`BadCallback`."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise BadCallback("body is not JSON") from None
    if not isinstance(data, dict):
        raise BadCallback("body is not a JSON object")
    return data


def dumps(data: Any) -> bytes:
    """Compact JSON, UTF-8 (the exact bytes that are signed and sent)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


# -- one request -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    """A channel's answer: ``data`` (the JSON object) when the request went through at the HTTP level,
    otherwise ``retryable`` and ``detail`` say what went wrong."""

    data: dict[str, Any] | None
    http_status: int = 0
    retryable: bool = False
    detail: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.data is not None


async def send_json(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    seconds: float,
    method: str = "POST",
) -> Answer:
    """Send ``body`` (JSON) and read a JSON object back; never raises for what the network or channel does."""
    try:
        response = await http.request(
            method,
            url,
            content=body if method != "GET" else None,
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
            timeout=seconds,
        )
    except httpx.TimeoutException as exc:
        return Answer(None, retryable=True, detail=f"channel timed out: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return Answer(None, retryable=True, detail=f"channel unreachable: {type(exc).__name__}")
    status = response.status_code
    if not 200 <= status < 300:
        retryable = status >= 500 or status in RETRYABLE_STATUSES
        return Answer(None, http_status=status, retryable=retryable, detail=f"channel answered HTTP {status}")
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return Answer(
            None, http_status=status, retryable=True, detail="channel answered a body that is not JSON"
        )
    if not isinstance(data, dict):
        return Answer(
            None, http_status=status, retryable=True, detail="channel answered JSON that is not an object"
        )
    return Answer(data, http_status=status, headers=dict(response.headers))


# -- results from failures -------------------------------------------------------------------------------


def call_failed(detail: str, *, retryable: bool) -> CallResult:
    """A :class:`CallResult` for a call that did not happen: ``failed`` if worth retrying, else ``rejected``."""
    return CallResult(status="failed" if retryable else "rejected", retryable=retryable, detail=detail[:300])


def items_failed(items: list[StockItem], detail: str, *, retryable: bool) -> list[StockItemResult]:
    """One failed (or rejected) result per pushed item, when the whole batch did not go through."""
    status: Literal["failed", "rejected"] = "failed" if retryable else "rejected"
    return [
        StockItemResult(sku=item.sku, status=status, retryable=retryable, detail=detail[:300])
        for item in items
    ]


def item_results(
    items: list[StockItem],
    answered: Mapping[str, StockItemResult],
    *,
    missing: str = "channel did not answer",
) -> list[StockItemResult]:
    """One result per pushed item, in push order; an item the channel left out is a retryable failure."""
    out = []
    for item in items:
        result = answered.get(item.sku)
        out.append(result or StockItemResult(sku=item.sku, status="failed", retryable=True, detail=missing))
    return out


# -- reading a channel's JSON ----------------------------------------------------------------------------


def text(data: Mapping[str, Any], key: str, default: str = "") -> str:
    """A string field (numbers are accepted and turned into text)."""
    value = data.get(key, default)
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, str | int):
        return str(value)
    return default


def integer(data: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """An integer field; :class:`BadCallback` (``malformed``) when it is missing or not an integer."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise BadCallback(f"field {key!r} is not an integer")
    return value


def mapping(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    """An object field (``{}`` when absent); :class:`BadCallback` when it is something else."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadCallback(f"field {key!r} is not an object")
    return value


def objects(data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """A list-of-objects field (``[]`` when absent); :class:`BadCallback` when it is something else."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadCallback(f"field {key!r} is not a list of objects")
    return value


def epoch(data: Mapping[str, Any], key: str, *, required: bool = True) -> dt.datetime | None:
    """A time given as epoch seconds (or ISO 8601 with an offset), as aware UTC."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise BadCallback(f"field {key!r} is missing")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value, dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise BadCallback(f"field {key!r} is not a time") from None
    if isinstance(value, str):
        if value.isdigit():
            return epoch({key: int(value)}, key, required=required)
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise BadCallback(f"field {key!r} is not a time") from None
        if parsed.tzinfo is None:
            raise BadCallback(f"field {key!r} has no time zone")
        return parsed.astimezone(dt.UTC)
    raise BadCallback(f"field {key!r} is not a time")


def to_epoch(moment: dt.datetime | None) -> int | None:
    """Epoch seconds of an aware time (``None`` stays ``None``)."""
    return None if moment is None else int(moment.timestamp())


def required(data: Mapping[str, Any], key: str) -> str:
    """A non-empty string field, or :class:`BadCallback`."""
    value = text(data, key)
    if not value:
        raise BadCallback(f"field {key!r} is missing")
    return value


def positive(data: Mapping[str, Any], key: str) -> int:
    """A positive integer field, or :class:`BadCallback`."""
    value = integer(data, key)
    if value <= 0:
        raise BadCallback(f"field {key!r} must be positive")
    return value
