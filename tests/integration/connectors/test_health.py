"""A connector call made inside the caller's transaction records its health when that transaction ends —
committed, or rolled back for a retry — never in the middle of it (on SQLite a second writer would wait
for the caller's lock), and not when a savepoint inside it is released or rolled back."""

from __future__ import annotations

import uuid

import pytest

from core.connectors.calls import ConnectorCallFailed, bind_account
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.db.context import tenant_context
from core.events.services import emit
from plugins import CheckResult
from tests.integration.connectors.conftest import GOOD_KEY, Accounts


class Retry(Exception):
    """The caller gives up its transaction to be retried."""


async def _row(kernel, tenant_id, account_id) -> ConnectorAccount:
    with tenant_context(tenant_id):
        async with kernel.db.transaction() as db:
            row = await db.get(ConnectorAccount, (tenant_id, account_id))
            assert row is not None
            return row


async def test_health_waits_for_the_callers_transaction(accounts: Accounts, kernel, app):
    plugins = app.state.jobs.plugins
    tid = accounts.tenant.id
    pager = uuid.UUID((await accounts.connect("test_pager", api_key=GOOD_KEY))["id"])
    raising = uuid.UUID((await accounts.connect("test_raising", token="tok-1234567"))["id"])

    with tenant_context(tid):
        async with kernel.db.transaction() as db:
            cipher = await kernel.keys.cipher(db)
            bound = await bind_account(db, cipher, plugins, pager, db=kernel.db, health_session=db)
            called_at = utcnow()
            assert (await bound.call("check", expect=CheckResult)).ok
            async with db.begin_nested():  # a savepoint released: the caller's transaction goes on
                emit(db, "connector.account_resumed", pager, {"connector_id": "test_pager", "name": "x"})
            row = await db.get(ConnectorAccount, (tid, pager))
            # Not this call's record (anything written before the call is another call's, e.g. a notification)
            assert row is not None and (row.last_ok_at is None or row.last_ok_at < called_at)
    recorded = (await _row(kernel, tid, pager)).last_ok_at
    assert recorded is not None and recorded >= called_at

    with pytest.raises(Retry), tenant_context(tid):
        async with kernel.db.transaction() as db:
            cipher = await kernel.keys.cipher(db)
            bound = await bind_account(db, cipher, plugins, raising, db=kernel.db, health_session=db)
            with pytest.raises(ConnectorCallFailed) as failed:
                await bound.call("check", expect=CheckResult)
            assert failed.value.retryable and "tok-1234567" not in str(failed.value)
            raise Retry
    row = await _row(kernel, tid, raising)
    assert row.consecutive_failures == 1 and row.last_error.startswith("check: RuntimeError")
    assert "tok-1234567" not in row.last_error
