"""Tenant console connector pages (permission ``connectors.manage``): the connectors the plan allows, the
tenant's accounts with their health, a connect form driven by the connector's config Struct (secret fields
are password inputs, never filled back), and per account: settings, connection test, shop authorisation
(OAuth2), pause, resume and disconnect.

The rules live in :mod:`core.connectors.services` and :mod:`core.connectors.oauth`; these controllers read
forms and render.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import Provide
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormProblem, problem_of, read_form
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.connectors import oauth, services
from core.connectors.schemas import AccountConnect, AccountOut, AccountUpdate, ConnectorOut
from core.db.types import DbSession
from core.errors import DomainError
from core.plugin_host import PluginHost
from tenants.guards import provide_db, require_permission

KIND_LABELS: dict[str, str] = {
    "notifier": N_("Notifier"),
    "sales_channel": N_("Sales channel"),
    "supplier": N_("Supplier"),
}
STATUS_LABELS: dict[str, str] = {
    "active": N_("Active"),
    "paused": N_("Paused"),
    "disconnected": N_("Disconnected"),
}
HEALTH_LABELS: dict[str, str] = {
    "ok": N_("Healthy"),
    "failing": N_("Failing"),
    "unknown": N_("Not called yet"),
    "paused": N_("Paused"),
    "disconnected": N_("Disconnected"),
}
REASON_LABELS: dict[str, str] = {
    services.AWAITING_AUTHORISATION: N_("Waiting for the shop owner's authorisation"),
    "token_refresh_failed": N_("The authorisation expired and could not be renewed"),
}


@dataclass(frozen=True)
class ConfigField:
    """One input of the settings form, read from the connector's config JSON schema."""

    name: str
    kind: str  # text | number | checkbox | password | select | json
    required: bool
    default: Any
    choices: tuple[str, ...] = ()
    title: str = ""
    step: str = ""


def config_fields(connector: ConnectorOut) -> list[ConfigField]:
    """The settings inputs, in the config Struct's order: secrets as passwords, numbers, checkboxes, choices."""
    schema = connector.config_schema
    ref = str(schema.get("$ref", "")).rsplit("/", 1)[-1]
    struct = schema.get("$defs", {}).get(ref, schema)
    required = set(struct.get("required", []))
    secret = set(connector.secret_fields)
    out: list[ConfigField] = []
    for name, prop in struct.get("properties", {}).items():
        typ = prop.get("type")
        if name in secret:
            kind = "password"
        elif "enum" in prop:
            kind = "select"
        elif typ == "boolean":
            kind = "checkbox"
        elif typ in ("integer", "number"):
            kind = "number"
        elif typ in ("object", "array"):
            kind = "json"
        else:
            kind = "text"
        out.append(
            ConfigField(
                name=name,
                kind=kind,
                required=name in required,
                default=prop.get("default", ""),
                choices=tuple(str(c) for c in prop.get("enum", ())),
                title=str(prop.get("title") or prop.get("description") or ""),
                step="any" if typ == "number" else "1",
            )
        )
    return out


def read_config(form: FormMultiDict, fields: list[ConfigField]) -> dict[str, Any]:
    """The submitted settings: a checkbox is true or false, an empty input is left out (its default, or for
    a secret: the stored value)."""
    values: dict[str, Any] = {}
    for f in fields:
        raw = form.get(f"config.{f.name}")
        if f.kind == "checkbox":
            values[f.name] = raw == "on"
        elif f.kind == "json" and isinstance(raw, str) and raw.strip():
            try:
                values[f.name] = json.loads(raw)
            except ValueError:
                values[f.name] = raw  # refused by the service, naming the field

        elif isinstance(raw, str) and raw.strip():
            values[f.name] = raw if f.kind == "password" else raw.strip()
    return values


def _plugins(request: Request[Any, Any, Any]) -> PluginHost:
    host: PluginHost = request.app.state.jobs.plugins
    return host


def _failure(exc: DomainError, request: Request[Any, Any, Any]) -> FormProblem:
    return problem_of(exc, translator(request), locale_of(request))


def as_json(value: Any) -> str:
    """A setting shown in a JSON field (a mapping or a list), readable Chinese kept as is."""
    return json.dumps(value, ensure_ascii=False) if value not in ("", None) else ""


def _labels() -> dict[str, Any]:
    return {
        "kind_labels": KIND_LABELS,
        "status_labels": STATUS_LABELS,
        "health_labels": HEALTH_LABELS,
        "reason_labels": REASON_LABELS,
        "as_json": as_json,
    }


class ConnectorsController(Controller):
    path = "/connectors"
    guards = [require_permission("connectors.manage")]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def index(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """The tenant's accounts with their health, and the connectors the plan allows."""
        ctx = await shell(request, db)
        page = await services.list_accounts(db, limit=services.MAX_PAGE, plugins=_plugins(request))
        ctx.update(
            accounts=page.items,
            connectors=await services.available_connectors(db, _plugins(request)),
            **_labels(),
        )
        return render(request, "console/connectors/list.html", ctx)

    async def _new(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        connector_id: str,
        *,
        form: dict[str, Any] | None = None,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        connector = await self._connector(request, db, connector_id)
        ctx = await shell(request, db)
        ctx.update(
            connector=connector,
            fields=config_fields(connector),
            form=form or {"name": connector.display_name_zh if locale_of(request) == "zh-CN" else connector.display_name},
            problem=problem,
            **_labels(),
        )
        return render(request, "console/connectors/new.html", ctx, status=status)

    async def _connector(self, request: Request[Any, Any, Any], db: DbSession, connector_id: str) -> ConnectorOut:
        for c in await services.available_connectors(db, _plugins(request)):
            if c.id == connector_id:
                return c
        # not on the plan, or not installed: the service says which, in the user's language
        await services.allowed_connector(db, _plugins(request), connector_id)
        raise services.UnknownConnector("No such connector", "没有该连接器")

    @get("/new/{connector_id:str}")
    async def new(self, request: Request[Any, Any, Any], db: DbSession, connector_id: str) -> Response[str]:
        return await self._new(request, db, connector_id)

    @post("/new/{connector_id:str}", status_code=200)
    async def connect(self, request: Request[Any, Any, Any], db: DbSession, connector_id: str) -> Response[Any]:
        """Connect an account; its secrets are sealed and never shown again."""
        raw = await read_form(request)
        connector = await self._connector(request, db, connector_id)
        name = str(raw.get("name") or "").strip()
        config = read_config(raw, config_fields(connector))
        shown = {"name": name, **{k: v for k, v in config.items() if k not in connector.secret_fields}}
        try:
            cipher = await request.app.state.kernel.keys.cipher(db)
            account = await services.connect(
                db, cipher, _plugins(request), AccountConnect(connector_id=connector_id, name=name, config=config)
            )
        except DomainError as exc:
            await db.rollback()
            return await self._new(request, db, connector_id, form=shown, problem=_failure(exc, request), status=exc.status)
        t = translator(request)
        flash(request, t.gettext("The account %(name)s is connected.") % {"name": account.name})
        return Redirect(f"/console/connectors/accounts/{account.id}", status_code=303)

    async def _account(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        account_id: uuid.UUID,
        *,
        problem: FormProblem | None = None,
        check: Any = None,
        authorisation: str = "",
        status: int = 200,
    ) -> Response[str]:
        plugins = _plugins(request)
        account: AccountOut = services.account_out(await services.get_account(db, account_id), plugins)
        connector = next(
            (services.connector_out(c) for cid, c in plugins.connectors().items() if cid == account.connector_id),
            None,
        )
        ctx = await shell(request, db)
        ctx.update(
            account=account,
            connector=connector,
            fields=config_fields(connector) if connector else [],
            problem=problem,
            check=check,
            authorisation=authorisation if authorisation in ("done", "failed") else "",
            **_labels(),
        )
        return render(request, "console/connectors/account.html", ctx, status=status)

    @get("/accounts/{account_id:uuid}")
    async def account(
        self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID, authorisation: str = ""
    ) -> Response[str]:
        """The account: status, health, settings and the actions."""
        return await self._account(request, db, account_id, authorisation=authorisation)

    @post("/accounts/{account_id:uuid}", status_code=200)
    async def update(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID) -> Response[Any]:
        """Rename or change settings; a secret left empty keeps its stored value."""
        raw = await read_form(request)
        plugins = _plugins(request)
        current = await services.get_account(db, account_id)
        connector = services.connector_out(services.connector_of(plugins, current))
        data = AccountUpdate(name=str(raw.get("name") or "").strip(), config=read_config(raw, config_fields(connector)))
        try:
            cipher = await request.app.state.kernel.keys.cipher(db)
            await services.update_account(db, cipher, plugins, account_id, data)
        except DomainError as exc:
            await db.rollback()
            return await self._account(request, db, account_id, problem=_failure(exc, request), status=exc.status)
        flash(request, translator(request).gettext("The settings are saved."))
        return Redirect(f"/console/connectors/accounts/{account_id}", status_code=303)

    @post("/accounts/{account_id:uuid}/test", status_code=200)
    async def test(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID) -> Response[str]:
        """Run the connector's connection test and show its answer."""
        kernel = request.app.state.kernel
        cipher = await kernel.keys.cipher(db)
        result = await services.check_account(
            kernel.db, db, cipher, _plugins(request), account_id, embedded=not kernel.settings.redis_url
        )
        return await self._account(request, db, account_id, check=result)

    async def _act(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID, action: str) -> Response[Any]:
        t = translator(request)
        try:
            if action == "pause":
                raw = await read_form(request)
                await services.pause(db, account_id, str(raw.get("reason") or ""))
                message = t.gettext("The account is paused: nothing calls it until it is resumed.")
            elif action == "resume":
                await services.resume(db, _plugins(request), account_id)
                message = t.gettext("The account is in use again.")
            else:
                await services.disconnect(db, account_id)
                message = t.gettext("The account is disconnected; its secrets are erased.")
        except DomainError as exc:
            await db.rollback()
            return await self._account(request, db, account_id, problem=_failure(exc, request), status=exc.status)
        flash(request, message)
        return Redirect(f"/console/connectors/accounts/{account_id}", status_code=303)

    @post("/accounts/{account_id:uuid}/pause", status_code=200)
    async def pause(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID) -> Response[Any]:
        return await self._act(request, db, account_id, "pause")

    @post("/accounts/{account_id:uuid}/resume", status_code=200)
    async def resume(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID) -> Response[Any]:
        return await self._act(request, db, account_id, "resume")

    @post("/accounts/{account_id:uuid}/disconnect", status_code=200)
    async def disconnect(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID) -> Response[Any]:
        return await self._act(request, db, account_id, "disconnect")

    @post("/accounts/{account_id:uuid}/authorize", status_code=200)
    async def authorize(self, request: Request[Any, Any, Any], db: DbSession, account_id: uuid.UUID) -> Response[Any]:
        """Send the shop owner to the channel's authorisation page."""
        kernel = request.app.state.kernel
        try:
            cipher = await kernel.keys.cipher(db)
            start = await oauth.start_authorization(db, cipher, _plugins(request), kernel.settings, account_id)
        except DomainError as exc:
            await db.rollback()
            return await self._account(request, db, account_id, problem=_failure(exc, request), status=exc.status)
        return Redirect(start.authorize_url, status_code=303)
