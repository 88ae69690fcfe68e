"""Tenant console pages for logged-in users: the page shell, users, API clients, audit log (the dashboard:
:mod:`admin_ui.overview_pages`).

Each controller is guarded by the permission its pages need; the services do the work.
"""

from __future__ import annotations

import gettext
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.audit_view import audit_rows, ids_of
from admin_ui.forms import FormInvalid, FormProblem, RoleForm, convert, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.labels import PERMISSION_LABELS, ROLE_LABELS
from admin_ui.navigation import build_menu
from admin_ui.rendering import flash, locale_of, render, translator
from core.audit.services import ChainReport, list_events, verify_chain
from core.catalog.services import products_by_id
from core.db.types import DbSession
from core.errors import DomainError, Unauthorized
from core.stores.services import clerk_stores, list_stores, set_user_stores
from tenants import onboarding, registry
from tenants.clients import client_out, create_client, list_clients, revoke_client
from tenants.guards import principal_of, provide_db, require_permission
from tenants.models import CLERK, ROLES
from tenants.schemas import ApiClientCreate, Principal, UserInvite
from tenants.scopes import ROLE_PERMISSIONS, SCOPES, role_can
from tenants.tokens import INVITE_TTL
from tenants.users import change_role, create_invited_user, disable_user, get_user, list_users, user_out

AUDIT_PAGE_SIZE = 50
ACTOR_KINDS = {
    "operator": N_("Platform operator"),
    "system": N_("System"),
    "client": N_("API client"),
    "member": N_("Member"),
    "anonymous": N_("Visitor"),
    "cli": N_("Command line"),
}
"""Actors shown by kind rather than id (users are shown by e-mail)."""
NAV_PERMISSIONS = {
    "products": "catalog.read",
    "stock": "inventory.read",
    "users": "users.manage",
    "clients": "clients.manage",
    "audit": "audit.read",
}


def _principal(request: Request[Any, Any, Any]) -> tuple[Principal, uuid.UUID]:
    """The logged-in user and their tenant (the controllers' guards have checked both)."""
    p = principal_of(request)
    if p is None or p.tenant_id is None:
        raise Unauthorized("Please log in", "请先登录", code="login_required")
    return p, p.tenant_id


async def shell(request: Request[Any, Any, Any], db: DbSession) -> dict[str, Any]:
    """What every tenant page shows around its content: tenant, plan, the user and the menu."""
    p, tenant_id = _principal(request)
    tenant, plan = await registry.get_tenant(db, tenant_id)
    me = await get_user(db, uuid.UUID(p.subject_id))
    return {
        "tenant": onboarding.tenant_out(tenant, plan.code),
        "plan": onboarding.plan_out(plan),
        "me": user_out(me),
        "nav": {key: role_can(me.role, perm) for key, perm in NAV_PERMISSIONS.items()},
        "can": {perm: role_can(me.role, perm) for perm in PERMISSION_LABELS},
        "menu": build_menu(lambda perm: role_can(me.role, perm), request.url.path),
        "tz": tenant.timezone,
    }


def _failure(exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
    status = exc.status if isinstance(exc, DomainError) else 422
    return problem_of(exc, translator(request), locale_of(request)), status


class UsersController(Controller):
    path = "/users"
    guards = [require_permission("users.manage")]
    dependencies = {"db": Provide(provide_db)}

    async def _page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        form: dict[str, str] | None = None,
        problem: FormProblem | None = None,
        invited: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        ctx.update(
            users=[user_out(u) for u in await list_users(db)],
            stores=await list_stores(db),
            bound=await clerk_stores(db),
            clerk_role=CLERK,
            roles=ROLES,
            role_permissions={r: sorted(ROLE_PERMISSIONS[r]) for r in ROLES},
            form=form or {"email": "", "name": "", "role": "viewer"},
            problem=problem,
            invited=invited,
            invite_days=INVITE_TTL.days,
        )
        return render(request, "console/users.html", ctx, status=status)

    @get("/")
    async def users(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        return await self._page(request, db)

    @post("/", status_code=200)
    async def invite(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Invite a user; the invite link is shown on this response only."""
        form = values(await read_form(request), "email", "name", "role")
        try:
            data = convert(form, UserInvite)
            user, url = await create_invited_user(
                request.app.state.kernel, db, data.email, data.role, data.name
            )
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._page(request, db, form=form, problem=problem, status=status)
        return await self._page(request, db, invited={"email": user.email, "url": url})

    @post("/{user_id:uuid}/role", status_code=303)
    async def set_role(
        self, request: Request[Any, Any, Any], db: DbSession, user_id: uuid.UUID
    ) -> Response[Any]:
        t = translator(request)
        try:
            data = convert(values(await read_form(request), "role"), RoleForm)
            user = await change_role(db, user_id, data.role)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._page(request, db, problem=problem, status=status)
        flash(
            request,
            t.gettext("%(email)s is now %(role)s.") % {"email": user.email, "role": _role(t, user.role)},
        )
        return Redirect("/console/users", status_code=303)

    @post("/{user_id:uuid}/stores", status_code=303)
    async def set_stores(
        self, request: Request[Any, Any, Any], db: DbSession, user_id: uuid.UUID
    ) -> Response[Any]:
        """Choose the stores a clerk (核销员) may redeem at."""
        t = translator(request)
        try:
            ids = [uuid.UUID(v) for v in (await read_form(request)).getall("store_ids", [])]
            user = await get_user(db, user_id)
            stores = await set_user_stores(db, user.id, ids)
        except (DomainError, ValueError) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._page(request, db, problem=problem, status=status)
        names = "、".join(s.name for s in stores) or t.gettext("no store")
        flash(request, t.gettext("%(email)s redeems at: %(stores)s.") % {"email": user.email, "stores": names})
        return Redirect("/console/users", status_code=303)

    @post("/{user_id:uuid}/disable", status_code=303)
    async def disable(
        self, request: Request[Any, Any, Any], db: DbSession, user_id: uuid.UUID
    ) -> Response[Any]:
        t = translator(request)
        try:
            user = await disable_user(db, user_id)
        except DomainError as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._page(request, db, problem=problem, status=status)
        flash(request, t.gettext("%(email)s can no longer log in.") % {"email": user.email})
        return Redirect("/console/users", status_code=303)


def _role(t: gettext.GNUTranslations, role: str) -> str:
    return t.gettext(ROLE_LABELS.get(role, role))


class ClientsController(Controller):
    path = "/clients"
    guards = [require_permission("clients.manage")]
    dependencies = {"db": Provide(provide_db)}

    async def _page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        form: dict[str, Any] | None = None,
        problem: FormProblem | None = None,
        created: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response[str]:
        ctx = await shell(request, db)
        ctx.update(
            clients=[client_out(c) for c in await list_clients(db)],
            scopes=SCOPES,
            form=form or {"name": "", "scopes": []},
            problem=problem,
            created=created,
        )
        return render(request, "console/clients.html", ctx, status=status)

    @get("/")
    async def clients(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        return await self._page(request, db)

    @post("/", status_code=200)
    async def create(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Create an API client; its secret is shown on this response only."""
        raw = await read_form(request)
        form: dict[str, Any] = {
            **values(raw, "name"),
            "scopes": [s for s in raw.getall("scopes", []) if isinstance(s, str)],
        }
        try:
            data = convert(form, ApiClientCreate)
            client, secret = await create_client(
                db, data.name, data.scopes, created_by=uuid.UUID(_principal(request)[0].subject_id)
            )
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = _failure(exc, request)
            return await self._page(request, db, form=form, problem=problem, status=status)
        created = {"name": client.name, "client_id": client.client_id, "secret": secret}
        return await self._page(request, db, created=created)

    @post("/{client_pk:uuid}/revoke", status_code=303)
    async def revoke(self, request: Request[Any, Any, Any], db: DbSession, client_pk: uuid.UUID) -> Redirect:
        client = await revoke_client(db, client_pk)
        flash(request, translator(request).gettext("API client %(name)s is revoked.") % {"name": client.name})
        return Redirect("/console/clients", status_code=303)


class AuditPageController(Controller):
    path = "/audit"
    guards = [require_permission("audit.read")]
    dependencies = {"db": Provide(provide_db)}

    async def _page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        before: uuid.UUID | None,
        report: ChainReport | None = None,
    ) -> Response[str]:
        ctx = await shell(request, db)
        page = await list_events(db, before, AUDIT_PAGE_SIZE)
        emails = {str(u.id): u.email for u in await list_users(db)}
        products = await products_by_id(db, ids_of(page.items, "product", "product_id"))
        names = {str(pid): p.name_zh if locale_of(request) == "zh-CN" else (p.name_en or p.name_zh)
                 for pid, p in products.items()}
        ctx.update(
            events=audit_rows(page.items, emails, names, ACTOR_KINDS),
            next_cursor=page.next_cursor,
            before=before,
            report=report,
        )
        return render(request, "console/audit.html", ctx)

    @get("/")
    async def audit(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        before: Annotated[uuid.UUID | None, Parameter(query="before", required=False)] = None,
    ) -> Response[str]:
        return await self._page(request, db, before)

    @post("/verify", status_code=200)
    async def verify(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Seal what is committed, recompute the tenant's audit chain block by block and show the report."""
        report = await verify_chain(db, _principal(request)[1])
        return await self._page(request, db, None, report)
