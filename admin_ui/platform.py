"""Operator console ``/platform``: login, tenants (list, onboard, detail, suspend/resume), plans, plugins."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.forms import (
    FormInvalid,
    FormProblem,
    OperatorLoginForm,
    convert,
    problem_of,
    read_form,
    values,
)
from admin_ui.i18n import LOCALES, N_
from admin_ui.rendering import flash, locale_of, render, translator
from admin_ui.sessions import end_session, safe_next, start_session
from core.db.types import DbSession
from core.errors import DomainError
from core.kernel import Kernel
from tenants import onboarding, registry
from tenants.guards import principal_of, provide_db, require_operator
from tenants.operators import authenticate_operator
from tenants.schemas import StatusChange, TenantCreate

HOME = "/platform/tenants"
NextParam = Annotated[str | None, Parameter(query="next", required=False)]
TENANT_FIELDS = ("name", "slug", "plan", "timezone", "currency", "owner_email", "locale")
CONNECTOR_KIND_LABELS: dict[str, str] = {
    "notifier": N_("Notifier"),
    "sales_channel": N_("Sales channel"),
    "supplier": N_("Supplier"),
}


def _kernel(request: Request[Any, Any, Any]) -> Kernel:
    return request.app.state.kernel


class PlatformAuthController(Controller):
    """Operator login and logout."""

    path = "/"

    @get("/login")
    async def login_page(self, request: Request[Any, Any, Any], next_url: NextParam = None) -> Response[Any]:
        principal = principal_of(request)
        if principal is not None and principal.kind == "operator":
            return Redirect(safe_next(next_url, "/platform", HOME), status_code=303)
        return render(
            request, "platform/login.html", {"form": {"email": ""}, "problem": None, "next": next_url}
        )

    @post("/login", status_code=200)
    async def login(self, request: Request[Any, Any, Any], next_url: NextParam = None) -> Response[Any]:
        form = values(await read_form(request), "email", "password", keep=("password",))
        try:
            data = convert(form, OperatorLoginForm)
            op = await authenticate_operator(_kernel(request), data.email, data.password)
        except (DomainError, FormInvalid) as exc:
            status = exc.status if isinstance(exc, DomainError) else 422
            problem = problem_of(exc, translator(request), locale_of(request))
            ctx = {"form": {"email": form["email"]}, "problem": problem, "next": next_url}
            return render(request, "platform/login.html", ctx, status=status)
        await start_session(request, {"realm": "operator", "operator_id": str(op.id)})
        return Redirect(safe_next(next_url, "/platform", HOME), status_code=303)

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        end_session(request)
        return Redirect("/platform/login", status_code=303)


class PlatformConsoleController(Controller):
    """Pages for logged-in platform operators."""

    path = "/"
    guards = [require_operator]
    dependencies = {"db": Provide(provide_db)}

    @get("/")
    async def home(self) -> Redirect:
        return Redirect(HOME, status_code=303)

    @get("/tenants")
    async def tenants(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        return render(request, "platform/tenants.html", {"tenants": await onboarding.list_tenants(db)})

    async def _onboard_form(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        form: dict[str, str],
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        plans = [onboarding.plan_out(p) for p in await onboarding.list_plans(db)]
        ctx = {"plans": plans, "form": form, "problem": problem, "locales": list(LOCALES)}
        return render(request, "platform/tenant_new.html", ctx, status=status)

    @get("/tenants/new")
    async def onboard_page(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        defaults = {
            "name": "",
            "slug": "",
            "plan": "starter",
            "timezone": "Asia/Shanghai",
            "currency": "CNY",
            "owner_email": "",
            "locale": "zh-CN",
        }
        return await self._onboard_form(request, db, defaults)

    @post("/tenants", status_code=200)
    async def onboard(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """Onboard a tenant; the owner's invite link is on this response only."""
        form = values(await read_form(request), *TENANT_FIELDS)
        try:
            created = await onboarding.create_tenant(_kernel(request), db, convert(form, TenantCreate))
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            status = exc.status if isinstance(exc, DomainError) else 422
            problem = problem_of(exc, translator(request), locale_of(request))
            return await self._onboard_form(request, db, form, problem, status)
        return render(request, "platform/tenant_created.html", {"created": created})

    async def _detail(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        tenant_id: uuid.UUID,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        tenant, plan = await registry.get_tenant(db, tenant_id)
        ctx = {
            "tenant": onboarding.tenant_out(tenant, plan.code),
            "plan": onboarding.plan_out(plan),
            "problem": problem,
        }
        return render(request, "platform/tenant_detail.html", ctx, status=status)

    @get("/tenants/{tenant_id:uuid}")
    async def tenant_detail(
        self, request: Request[Any, Any, Any], db: DbSession, tenant_id: uuid.UUID
    ) -> Response[str]:
        return await self._detail(request, db, tenant_id)

    async def _set_status(
        self, request: Request[Any, Any, Any], db: DbSession, tenant_id: uuid.UUID, status: str
    ) -> Response[Any]:
        t = translator(request)
        form = values(await read_form(request), "reason")
        try:
            out = await onboarding.set_status(db, tenant_id, status, convert(form, StatusChange).reason)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            code = exc.status if isinstance(exc, DomainError) else 422
            return await self._detail(
                request, db, tenant_id, problem_of(exc, t, locale_of(request)), status=code
            )
        message = (
            t.gettext("Tenant %(name)s is suspended.")
            if status == "suspended"
            else t.gettext("Tenant %(name)s is active again.")
        )
        flash(request, message % {"name": out.name})
        return Redirect(f"/platform/tenants/{tenant_id}", status_code=303)

    @post("/tenants/{tenant_id:uuid}/suspend", status_code=303)
    async def suspend(
        self, request: Request[Any, Any, Any], db: DbSession, tenant_id: uuid.UUID
    ) -> Response[Any]:
        return await self._set_status(request, db, tenant_id, "suspended")

    @post("/tenants/{tenant_id:uuid}/resume", status_code=303)
    async def resume(
        self, request: Request[Any, Any, Any], db: DbSession, tenant_id: uuid.UUID
    ) -> Response[Any]:
        return await self._set_status(request, db, tenant_id, "active")

    @get("/plans")
    async def plans(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        plans = [onboarding.plan_out(p) for p in await onboarding.list_plans(db)]
        return render(request, "platform/plans.html", {"plans": plans})

    @get("/plugins")
    async def plugins(self, request: Request[Any, Any, Any]) -> Response[str]:
        """The plugins this server runs, their connectors, and why any is disabled (as ``kaquan plugins list``)."""
        report = request.app.state.jobs.plugins.report()
        return render(request, "platform/plugins.html", {"plugins": report, "kinds": CONNECTOR_KIND_LABELS})
