"""Render console pages with Jinja2 and ``jinja2.ext.i18n``: one environment per locale.

Each environment has its locale's catalog installed with ``install_gettext_translations`` (new-style
gettext), so a request picks the environment of its locale and no translation state is shared between
concurrent requests. The environments are wrapped in Litestar's ``JinjaTemplateEngine`` so the usual
template callables (``csrf_token``, ``url_for``) work, and ``csrf_input`` is put in every context as
Litestar's ``Template`` response does.
"""

from __future__ import annotations

import datetime as dt
import gettext
import html
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Request, Response
from litestar.enums import MediaType
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState
from markupsafe import Markup

from admin_ui.i18n import LANGUAGE_NAMES, normalize_locale, translations
from admin_ui.labels import (
    ALERT_LABELS,
    CODE_FORMAT_LABELS,
    CODE_STATE_LABELS,
    COLUMN_LABELS,
    EVENT_LABELS,
    JOB_STATUS_LABELS,
    KIND_LABELS,
    PERMISSION_LABELS,
    PROBLEM_LABELS,
    PROVENANCE_LABELS,
    ROLE_LABELS,
    SOURCE_LABELS,
    STATUS_LABELS,
    VALIDITY_LABELS,
)
from admin_ui.money import fen_to_yuan, format_expiry, format_money
from core.http.locale import request_locale

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}


def format_datetime(value: dt.datetime | None, tz: str = "UTC") -> str:
    """``YYYY-MM-DD HH:MM`` in ``tz`` (an IANA name); a dash for no value."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def format_day(value: dt.datetime | None, tz: str = "UTC") -> str:
    """An expiry in ``tz``: the day it is valid through (``YYYY-MM-DD``), or the day and time when it ends
    at a time of day; a dash for none. The same formatter as the H5 pages (:func:`format_expiry`)."""
    return format_expiry(value, tz)


@lru_cache(maxsize=4)
def engine_for(locale: str) -> JinjaTemplateEngine:
    """The template engine of ``locale``, built once."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = format_datetime
    env.filters["money"] = format_money
    env.filters["yuan"] = fen_to_yuan
    env.filters["day"] = format_day
    env.filters["expiry"] = format_expiry
    env.globals.update(
        ROLE_LABELS=ROLE_LABELS,
        STATUS_LABELS=STATUS_LABELS,
        PERMISSION_LABELS=PERMISSION_LABELS,
        LANGUAGE_NAMES=LANGUAGE_NAMES,
        KIND_LABELS=KIND_LABELS,
        CODE_FORMAT_LABELS=CODE_FORMAT_LABELS,
        VALIDITY_LABELS=VALIDITY_LABELS,
        PROVENANCE_LABELS=PROVENANCE_LABELS,
        CODE_STATE_LABELS=CODE_STATE_LABELS,
        ALERT_LABELS=ALERT_LABELS,
        JOB_STATUS_LABELS=JOB_STATUS_LABELS,
        SOURCE_LABELS=SOURCE_LABELS,
        PROBLEM_LABELS=PROBLEM_LABELS,
        COLUMN_LABELS=COLUMN_LABELS,
        EVENT_LABELS=EVENT_LABELS,
    )
    return JinjaTemplateEngine.from_environment(env)


def locale_of(request: Request[Any, Any, Any]) -> str:
    return normalize_locale(request_locale(request))


def translator(request: Request[Any, Any, Any]) -> gettext.GNUTranslations:
    """gettext for messages built in Python (flash messages, form problems)."""
    return translations(locale_of(request))


def flash(request: Request[Any, Any, Any], message: str, kind: str = "success") -> None:
    """Show ``message`` (already translated) on the next rendered page."""
    session = request.scope.get("session")
    if isinstance(session, dict):
        session["flash"] = {"message": message, "kind": kind}


def _pop_flash(request: Request[Any, Any, Any]) -> dict[str, str] | None:
    session = request.scope.get("session")
    if isinstance(session, dict):
        return session.pop("flash", None)
    return None


def render(
    request: Request[Any, Any, Any],
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response[str]:
    """Render ``template`` in the request's locale as an HTML response (never cached)."""
    locale = locale_of(request)
    token = value_or_default(ScopeState.from_scope(request.scope).csrf_token, "")
    ctx: dict[str, Any] = {
        "request": request,
        "locale": locale,
        "csrf_input": Markup(f'<input type="hidden" name="_csrf_token" value="{html.escape(token)}">'),
        "flash": _pop_flash(request),
        "principal": request.scope.get("state", {}).get("principal"),
        "current_path": request.url.path,
    }
    ctx.update(context or {})
    body = engine_for(locale).get_template(template).render(ctx)
    return Response(
        body,
        status_code=status,
        media_type=MediaType.HTML,
        headers={**NO_STORE, **(headers or {})},
    )
