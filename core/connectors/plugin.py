"""The connectors domain (declaration; see core/domains.py): a tenant's connector accounts of every kind."""

import datetime as dt

from core.domains import ADMINS, Domain, Periodic

domain = Domain(
    name="connectors",
    api=(
        "core.connectors.api:ConnectorsController",
        "core.connectors.api:ConnectorAccountsController",
        "core.connectors.api:ConnectorOAuthController",
    ),
    console=("admin_ui.connectors_pages:ConnectorsController",),
    models=("core.connectors.models",),
    jobs=("core.connectors.jobs",),
    periodic=(Periodic("refresh_connector_tokens", "refresh_connector_tokens", dt.timedelta(minutes=10)),),
    events={
        "connector.account_connected": "A connector account was connected (its settings checked and sealed).",
        "connector.account_authorised": "The shop owner authorised a connector account (OAuth2).",
        "connector.account_paused": "A connector account was paused (by a person, or after a failed token refresh).",
        "connector.account_resumed": "A paused connector account is in use again.",
        "connector.account_disconnected": "A connector account was disconnected; its secrets and tokens are erased.",
        "connector.token_refresh_failed": "A connector account's OAuth2 token could not be refreshed; it is paused.",
    },
    scopes={
        "connectors:read": "List the connectors your plan allows and your connector accounts with their health.",
        "connectors:manage": "Connect, configure, test, authorise, pause, resume and disconnect connector accounts.",
    },
    permissions={"connectors.manage": ADMINS},
)
