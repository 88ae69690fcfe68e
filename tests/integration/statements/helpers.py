"""Setting a tenant up for statement tests: channel accounts (sandbox, locallife against its fake platform,
the test connector without statements) and uploads through the API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from core.connectors.calls import seal_secrets
from core.connectors.models import AccountRoute, ConnectorAccount
from core.db.context import tenant_context
from plugins.builtin import ecommerce_channel, locallife_channel, sandbox_channel, social_channel

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "statements"


def register_builtin(app: Any) -> Any:
    """The built-in channel connectors on the app's plugin host (the entry points may predate them)."""
    host = app.state.jobs.plugins
    for module, name in ((sandbox_channel, "sandbox_channel"), (locallife_channel, "locallife_channel"),
                         (ecommerce_channel, "ecommerce_channel"), (social_channel, "social_channel")):
        if module.CONNECTOR.info.id not in host.connectors():
            host.register(module, name=name)
    return host


async def add_account(kernel: Any, tenant_id: uuid.UUID, connector: str, config: dict[str, Any],
                      secrets: dict[str, str], name: str = "") -> uuid.UUID:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            account = ConnectorAccount(connector_id=connector, kind="sales_channel", name=name or connector,
                                       config=config)
            db.add(account)
            await db.flush()
            account.secrets = seal_secrets(await kernel.keys.cipher(db), account.id, secrets)
            db.add(AccountRoute(account_id=account.id, tenant_id=tenant_id))
            return account.id


async def sandbox_account(kernel: Any, tenant_id: uuid.UUID, page_size: int = 3, name: str = "沙盒店铺") -> uuid.UUID:
    return await add_account(kernel, tenant_id, "sandbox", {"shop_name": name, "page_size": page_size},
                             {"signing_secret": "sbx-" + uuid.uuid4().hex}, name)


async def import_file(client: Any, headers: dict[str, str], account_id: uuid.UUID, name: str,
                      data: bytes | None = None, mapping: dict[str, Any] | None = None) -> Any:
    body = data if data is not None else (FIXTURES / name).read_bytes()
    form: dict[str, str] = {"account_id": str(account_id)}
    if mapping is not None:
        form["mapping"] = json.dumps(mapping, ensure_ascii=False)
    return await client.post("/api/v1/statements/imports", headers=headers, data=form, files={"file": (name, body)})
