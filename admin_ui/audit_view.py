"""Audit events as an owner reads them: who (e-mail or kind), what (a named action), on what (the object's
kind and name where the service can give it), and the details as a short key/value list — never raw JSON.

The stored event stays as it is (the chain hashes it); this only shapes what the audit page shows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from admin_ui.i18n import N_
from admin_ui.labels import AUDIT_ACTION_LABELS, AUDIT_OBJECT_LABELS, ROLE_LABELS, STATUS_LABELS

FIELD_LABELS: dict[str, str] = {
    "reason": N_("Reason"),
    "status": N_("Status"),
    "name": N_("Name"),
    "email": N_("E-mail"),
    "phone": N_("Phone"),
    "role": N_("Role"),
    "quantity": N_("Quantity"),
    "count": N_("Count"),
    "sku": N_("SKU"),
    "ref": N_("Reference"),
    "kind": N_("Type"),
    "channel": N_("Channel"),
    "source": N_("Source"),
    "tags": N_("Tags"),
    "period": N_("Period"),
    "url": N_("URL"),
    "events": N_("Events"),
    "active": N_("Active"),
    "limit": N_("Limit"),
    "changes": N_("Changes"),
    "product_id": N_("Product"),
    "member_id": N_("Member"),
    "grant_id": N_("Grant"),
    "batch_id": N_("Batch"),
    "account_id": N_("Connector account"),
    "codes": N_("Codes"),
    "valid_rows": N_("Valid rows"),
    "total_rows": N_("Rows"),
    "currency": N_("Currency"),
    "purpose": N_("Purpose"),
    "plan": N_("Plan"),
    "slug": N_("Short name"),
    "timezone": N_("Time zone"),
    "from": N_("Changed from"),
    "to": N_("Changed to"),
    "description": N_("Description"),
}
"""Words for the detail keys services commonly record; other keys are shown as they are (as code)."""

MAX_VALUE = 160
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TRUE, _FALSE = N_("Yes"), N_("No")
FREE_TEXT = frozenset({"purpose", "description", "note", "remark", "reason", "name"})
"""Keys whose value is text as a caller wrote it (any language): shown as written, marked ``data-raw``."""


@dataclass(frozen=True, slots=True)
class Detail:
    key: str
    label: str | None  # None: show ``key`` as code
    value: str
    translate: bool = False  # ``value`` is a msgid (yes/no, a status)
    raw: bool = False  # text as the caller wrote it


@dataclass(frozen=True, slots=True)
class AuditRow:
    block: int | None
    occurred_at: Any
    actor: str
    actor_kind: str | None
    action: str
    action_label: str | None
    object_label: str | None
    object_type: str
    object_name: str
    object_id: str
    details: tuple[Detail, ...]


def short_id(value: str) -> str:
    """The first block of a UUID (enough to tell rows apart on one page); other ids as they are."""
    return value[:8] if _UUID.match(value) else value


def _text(value: Any, names: Mapping[str, str]) -> str:
    if isinstance(value, str):
        return names.get(value) or (short_id(value) if _UUID.match(value) else value)
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("✓" if value else "✗")
    if isinstance(value, list | tuple):
        return ", ".join(_text(v, names) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_text(v, names)}" for k, v in value.items()) or "—"
    return str(value)


def details_of(data: Mapping[str, Any] | None, names: Mapping[str, str]) -> tuple[Detail, ...]:
    out = []
    for key, value in (data or {}).items():
        label = FIELD_LABELS.get(key)
        if isinstance(value, bool):
            out.append(Detail(key, label, _TRUE if value else _FALSE, translate=True))
        elif key == "status" and isinstance(value, str) and value in STATUS_LABELS:
            out.append(Detail(key, label, STATUS_LABELS[value], translate=True))
        elif key in ("role", "from", "to") and isinstance(value, str) and value in ROLE_LABELS:
            out.append(Detail(key, label, ROLE_LABELS[value], translate=True))
        else:
            text = _text(value, names)
            shown = text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
            out.append(Detail(key, label, shown, raw=key in FREE_TEXT))
    return tuple(out)


def audit_rows(
    events: list[Any], emails: Mapping[str, str], names: Mapping[str, str], actor_kinds: Mapping[str, str]
) -> list[AuditRow]:
    """The page's rows; ``names`` maps ids (as strings) to what the owner knows them by (product names…)."""
    known = {**names, **emails}
    rows = []
    for e in events:
        rows.append(
            AuditRow(
                block=e.block,
                occurred_at=e.occurred_at,
                actor=emails.get(e.actor_id, short_id(str(e.actor_id))),
                actor_kind=actor_kinds.get(e.actor_type),
                action=e.action,
                action_label=AUDIT_ACTION_LABELS.get(e.action),
                object_label=AUDIT_OBJECT_LABELS.get(e.object_type),
                object_type=e.object_type,
                object_name=known.get(e.object_id, ""),
                object_id=short_id(e.object_id),
                details=details_of(e.data, known),
            )
        )
    return rows


def ids_of(events: list[Any], object_type: str, key: str) -> set[uuid.UUID]:
    """The ids of ``object_type`` objects the events name (as their object or under ``key`` in their data)."""
    found: set[uuid.UUID] = set()
    for e in events:
        candidates = [e.object_id] if e.object_type == object_type else []
        value = (e.data or {}).get(key)
        candidates += value if isinstance(value, list) else [value]
        for c in candidates:
            if isinstance(c, str) and _UUID.match(c):
                found.add(uuid.UUID(c))
    return found
