"""Connector API: the connectors the plan allows under ``/api/v1/connectors`` (scope ``connectors:read``) and
the tenant's accounts under ``/api/v1/connector-accounts`` (``connectors:read`` to read,
``connectors:manage`` to change), plus the public OAuth2 redirect target ``/oauth/connectors/callback``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from core.connectors import oauth, services
from core.connectors.schemas import (
    AccountConnect,
    AccountOut,
    AccountPage,
    AccountPause,
    AccountUpdate,
    AuthorizationStart,
    CheckOut,
    ConnectorOut,
    HealthOut,
)
from core.errors import NotFound
from core.plugin_host import PluginHost
from tenants.guards import provide_db, require_scope

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def plugins_of(request: Request[Any, Any, Any]) -> PluginHost:
    host: PluginHost = request.app.state.jobs.plugins
    return host


class ConnectorsController(Controller):
    path = "/api/v1/connectors"
    tags = ["connectors"]
    dependencies = {"db": Provide(provide_db)}
    guards = [require_scope("connectors:read")]

    @get("/")
    async def list_connectors(
        self, request: Request[Any, Any, Any], db: AsyncSession, kind: str | None = None
    ) -> list[ConnectorOut]:
        """The installed connectors your plan allows (``kind``: notifier, sales_channel, supplier), each with
        the JSON schema of its settings (secret fields marked ``writeOnly`` and ``x-kaquan-secret``)."""
        return await services.available_connectors(db, plugins_of(request), kind)

    @get("/{connector_id:str}")
    async def get_connector(self, request: Request[Any, Any, Any], db: AsyncSession, connector_id: str) -> ConnectorOut:
        for c in await services.available_connectors(db, plugins_of(request)):
            if c.id == connector_id:
                return c
        raise NotFound(
            "No such connector on your plan", "您的套餐中没有该连接器", code="connector_not_found"
        )


class ConnectorAccountsController(Controller):
    path = "/api/v1/connector-accounts"
    tags = ["connectors"]
    dependencies = {"db": Provide(provide_db)}

    @post("/", guards=[require_scope("connectors:manage")], response_headers=NO_STORE)
    async def connect_account(
        self, request: Request[Any, Any, Any], db: AsyncSession, data: AccountConnect
    ) -> AccountOut:
        """Connect an account: the connector must be on your plan; ``config`` is checked against its schema.
        Secrets are stored encrypted and never returned (``secrets_set`` names the ones that are set).
        An account of an OAuth connector stays ``paused`` until ``POST /{id}/authorize`` completes."""
        cipher = await request.app.state.kernel.keys.cipher(db)
        plugins = plugins_of(request)
        account = await services.connect(db, cipher, plugins, data)
        return services.account_out(account, plugins)

    @get("/", guards=[require_scope("connectors:read")])
    async def list_accounts(
        self,
        request: Request[Any, Any, Any],
        db: AsyncSession,
        kind: str | None = None,
        status: str | None = None,
        connector_id: str | None = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=services.MAX_PAGE)] = 50,
    ) -> AccountPage:
        """Your connector accounts, newest first (``kind``, ``status`` and ``connector_id`` filter)."""
        return await services.list_accounts(
            db,
            kind=kind,
            status=status,
            connector_id=connector_id,
            cursor=cursor,
            limit=limit,
            plugins=plugins_of(request),
        )

    @get("/{account_id:uuid}", guards=[require_scope("connectors:read")])
    async def get_account(self, request: Request[Any, Any, Any], db: AsyncSession, account_id: uuid.UUID) -> AccountOut:
        return services.account_out(await services.get_account(db, account_id), plugins_of(request))

    @patch("/{account_id:uuid}", guards=[require_scope("connectors:manage")], response_headers=NO_STORE)
    async def update_account(
        self, request: Request[Any, Any, Any], db: AsyncSession, account_id: uuid.UUID, data: AccountUpdate
    ) -> AccountOut:
        """Rename, or change settings (only those given; a secret left out or empty keeps its value)."""
        cipher = await request.app.state.kernel.keys.cipher(db)
        plugins = plugins_of(request)
        account = await services.update_account(db, cipher, plugins, account_id, data)
        return services.account_out(account, plugins)

    @post("/{account_id:uuid}/test", guards=[require_scope("connectors:manage")], status_code=200)
    async def test_account(self, request: Request[Any, Any, Any], db: AsyncSession, account_id: uuid.UUID) -> CheckOut:
        """Test the connection with the connector's ``check`` (at most 15 s; recorded on the health)."""
        kernel = request.app.state.kernel
        cipher = await kernel.keys.cipher(db)
        return await services.check_account(
            kernel.db, db, cipher, plugins_of(request), account_id, embedded=not kernel.settings.redis_url
        )

    @post("/{account_id:uuid}/pause", guards=[require_scope("connectors:manage")], status_code=200)
    async def pause_account(
        self, request: Request[Any, Any, Any], db: AsyncSession, account_id: uuid.UUID, data: AccountPause | None = None
    ) -> AccountOut:
        """Stop using the account (nothing calls a paused account); idempotent."""
        account = await services.pause(db, account_id, data.reason if data else "")
        return services.account_out(account, plugins_of(request))

    @post("/{account_id:uuid}/resume", guards=[require_scope("connectors:manage")], status_code=200)
    async def resume_account(
        self, request: Request[Any, Any, Any], db: AsyncSession, account_id: uuid.UUID
    ) -> AccountOut:
        """Use the account again (its connector must still be on your plan; an OAuth account authorised)."""
        plugins = plugins_of(request)
        return services.account_out(await services.resume(db, plugins, account_id), plugins)

    @post("/{account_id:uuid}/disconnect", guards=[require_scope("connectors:manage")], status_code=200)
    async def disconnect_account(
        self, request: Request[Any, Any, Any], db: AsyncSession, account_id: uuid.UUID
    ) -> AccountOut:
        """Disconnect: secrets, tokens and the callback route are erased; the account stays in the history."""
        return services.account_out(await services.disconnect(db, account_id), plugins_of(request))

    @get("/{account_id:uuid}/health", guards=[require_scope("connectors:read")])
    async def account_health(self, db: AsyncSession, account_id: uuid.UUID) -> HealthOut:
        """The outcome of the account's recent calls (``state`` ok, failing, unknown, paused, disconnected)."""
        return services.health_out(await services.get_account(db, account_id))

    @post("/{account_id:uuid}/authorize", guards=[require_scope("connectors:manage")], status_code=200,
          response_headers=NO_STORE)
    async def authorize_account(
        self, request: Request[Any, Any, Any], db: AsyncSession, account_id: uuid.UUID
    ) -> AuthorizationStart:
        """Start the shop authorisation (OAuth2 authorisation code): send the shop owner to
        ``authorize_url``; the channel returns them to ``redirect_uri``, which completes it."""
        kernel = request.app.state.kernel
        cipher = await kernel.keys.cipher(db)
        return await oauth.start_authorization(db, cipher, plugins_of(request), kernel.settings, account_id)


class ConnectorOAuthController(Controller):
    path = oauth.REDIRECT_PATH
    tags = ["connectors"]
    include_in_schema = False

    @get("/")
    async def oauth_callback(
        self,
        request: Request[Any, Any, Any],
        oauth_state: Annotated[str, Parameter(query="state", max_length=300)] = "",
        code: Annotated[str, Parameter(max_length=2000)] = "",
        error: Annotated[str, Parameter(max_length=200)] = "",
    ) -> Redirect:
        """Where the channel returns the shop owner: the code is exchanged, then the owner sees the account
        in the console (``?authorisation=done`` or ``failed``; the health says why)."""
        kernel = request.app.state.kernel
        state = oauth_state
        account_id = oauth.account_of_state(state)
        try:
            await oauth.finish_authorization(
                kernel.db, kernel.keys, plugins_of(request), kernel.settings, state=state, code=code, error=error
            )
        except oauth.AuthorizationFailed:
            outcome = "failed"
        else:
            outcome = "done"
        return Redirect(f"/console/connectors/accounts/{account_id}?authorisation={outcome}", status_code=303)
