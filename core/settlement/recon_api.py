"""Reconciliation API: ``/api/v1/reconciliation-runs`` (start for an account and period, list, read with counts
per class, items filtered by class and status) and ``/api/v1/reconciliation-items/{id}/resolve``."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from core.settlement import recon_views as views
from core.settlement.reconcile import reconcile
from core.settlement.resolutions import resolve_item
from tenants.guards import provide_db, require_scope


class ReconciliationController(Controller):
    path = "/api/v1/reconciliation-runs"
    tags = ["settlement"]
    dependencies = {"db": Provide(provide_db)}

    @post("/", status_code=201, guards=[require_scope("settlement:write")])
    async def start_run(self, db: AsyncSession, data: views.ReconRunIn) -> views.ReconRunOut:
        """Reconcile an account's period now: every statement line of the period classified, and the order
        lines sold in the period that no statement line reports. ``404 channel_account_not_found``;
        ``422 period_invalid``."""
        run = await reconcile(db, data.account_id, data.period, by=views.actor_label())
        return await views.get_run(db, run.id)

    @get("/", guards=[require_scope("settlement:read")])
    async def list_runs(
        self,
        db: AsyncSession,
        account_id: Annotated[uuid.UUID | None, Parameter(query="account")] = None,
        period: Annotated[str | None, Parameter(query="period", max_length=7)] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=views.MAX_PAGE)] = 50,
    ) -> views.ReconRunPage:
        """Runs newest first, filtered by ``account`` and ``period`` (``YYYY-MM``)."""
        return await views.list_runs(db, account_id=account_id, period=period, cursor=cursor, limit=limit)

    @get("/{run_id:uuid}", guards=[require_scope("settlement:read")])
    async def get_run(self, db: AsyncSession, run_id: uuid.UUID) -> views.ReconRunOut:
        """One run with its counts per class, ``open`` and ``carried`` (``404 recon_run_not_found``)."""
        return await views.get_run(db, run_id)

    @get("/{run_id:uuid}/items", guards=[require_scope("settlement:read")])
    async def list_items(
        self,
        db: AsyncSession,
        run_id: uuid.UUID,
        klass: Annotated[str | None, Parameter(query="class", max_length=20)] = None,
        item_status: Annotated[str | None, Parameter(query="status", max_length=10)] = None,
        cursor: uuid.UUID | None = None,
        limit: Annotated[int, Parameter(ge=1, le=views.MAX_PAGE)] = 50,
    ) -> views.ReconItemPage:
        """A run's items, filtered by ``class`` and ``status`` (``ok``, ``open``, ``resolved``)."""
        return await views.list_items(db, run_id, klass=klass, status=item_status, cursor=cursor, limit=limit)


class ReconItemController(Controller):
    path = "/api/v1/reconciliation-items"
    tags = ["settlement"]
    dependencies = {"db": Provide(provide_db)}

    @get("/{item_id:uuid}", guards=[require_scope("settlement:read")])
    async def get_item(self, db: AsyncSession, item_id: uuid.UUID) -> views.ReconItemOut:
        """One item with both amounts and the difference (``404 recon_item_not_found``)."""
        return await views.get_item(db, item_id)

    @post("/{item_id:uuid}/resolve", status_code=200, guards=[require_scope("settlement:write")])
    async def resolve(self, db: AsyncSession, item_id: uuid.UUID, data: views.ResolveIn) -> views.ReconItemOut:
        """Resolve an open item with a reason: ``accept_theirs`` (adjustment rows follow the statement),
        ``accept_ours`` (no money moves), ``adjustment`` (``amount_fen``: the change to the tenant's net).
        ``409 recon_item_not_open`` / ``recon_run_superseded``; ``422 resolution_invalid``."""
        item = await resolve_item(db, item_id, data.resolution, data.reason, data.amount_fen, by=views.actor_label())
        return views.item_out(item)
