"""Tenant console data exports (数据导出, permission ``data.export``: owners and admins): the member list and
the grant list as XLSX, filtered as the list on screen. Whole phone numbers only for the owner
(``members.phones``) who ticks the box; otherwise masked. Each export is audited by the service
(:mod:`core.members.export`, :mod:`core.grants.export`); a list past the row cap comes back to its page with
the reason, nothing downloaded."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.rendering import flash, locale_of
from core.db.types import DbSession
from core.errors import DomainError
from core.grants.export import export_grants
from core.members.export import export_members
from core.xlsx import XLSX
from tenants.guards import principal_of, provide_db, require_permission
from tenants.scopes import role_can

Text = Annotated[str | None, Parameter(required=False, max_length=200)]


def _full_phones(request: Request[Any, Any, Any], asked: str | None) -> bool:
    principal = principal_of(request)
    return asked == "1" and principal is not None and role_can(principal.role or "", "members.phones")


def _download(name: str, body: bytes) -> Response[bytes]:
    return Response(
        body,
        media_type=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


def _back(
    request: Request[Any, Any, Any], exc: DomainError, path: str, params: dict[str, str | None]
) -> Redirect:
    flash(request, exc.detail(locale_of(request)), "error")
    query = urlencode({k: v for k, v in params.items() if v})
    return Redirect(f"{path}?{query}" if query else path, status_code=303)


class ExportsController(Controller):
    path = "/exports"
    guards = [require_permission("data.export")]
    dependencies = {"db": Provide(provide_db)}

    @get("/members.xlsx")
    async def members(
        self, request: Request[Any, Any, Any], db: DbSession, q: Text = None, full_phones: Text = None
    ) -> Response[Any]:
        """The members matching the member list's search, as XLSX."""
        try:
            name, body, _n = await export_members(
                db, request.app.state.kernel, q=q, full_phones=_full_phones(request, full_phones)
            )
        except DomainError as exc:
            await db.rollback()
            return _back(request, exc, "/console/members", {"q": q})
        return _download(name, body)

    @get("/grants.xlsx")
    async def grants(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        grant_status: Annotated[str | None, Parameter(query="status", required=False, max_length=20)] = None,
        phone: Text = None,
        code: Text = None,
        full_phones: Text = None,
    ) -> Response[Any]:
        """The grants matching the grant list's filter and search, as XLSX."""
        try:
            name, body, _n = await export_grants(
                db,
                request.app.state.kernel,
                status=grant_status,
                phone=phone,
                code=code,
                full_phones=_full_phones(request, full_phones),
            )
        except DomainError as exc:
            await db.rollback()
            return _back(
                request, exc, "/console/grants", {"status": grant_status, "phone": phone, "code": code}
            )
        return _download(name, body)
