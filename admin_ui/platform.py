"""Operator console ``/platform``: login, tenants (list, onboard, detail, suspend/resume), plans (with their
display names), plugins, and the operator's profile (name, time zone: every time on these pages is shown in it)."""

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
from tenants.operators import authenticate_operator, get_operator, update_operator_profile
from tenants.schemas import PlanNames, PlanOut, StatusChange, TenantCreate

HOME = "/platform/tenants"
NextParam = Annotated[str | None, Parameter(query="next", required=False)]
TENANT_FIELDS = ("name", "slug", "plan", "timezone", "currency", "owner_email", "locale")
#: The time zones the profile form offers first (any IANA name may be typed).
COMMON_ZONES = ("Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Singapore", "Asia/Tokyo", "Europe/London",
                "Europe/Berlin", "America/New_York", "America/Los_Angeles", "UTC")
CONNECTOR_KIND_LABELS: dict[str, str] = {
    "notifier": N_("Notifier"),
    "sales_channel": N_("Sales channel"),
    "supplier": N_("Supplier"),
}


def _kernel(request: Request[Any, Any, Any]) -> Kernel:
    return request.app.state.kernel


async def _shell(request: Request[Any, Any, Any], db: DbSession, **ctx: Any) -> dict[str, Any]:
    """What every operator page shows around its content: the operator and their time zone (``tz``)."""
    principal = principal_of(request)
    op = await get_operator(db, uuid.UUID(principal.subject_id)) if principal is not None else None
    return {"operator": op, "tz": op.timezone if op is not None else "Asia/Shanghai", **ctx}


async def _plans(db: DbSession) -> dict[str, PlanOut]:
    return {p.code: onboarding.plan_out(p) for p in await onboarding.list_plans(db)}


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
        ctx = await _shell(request, db, tenants=await onboarding.list_tenants(db), plans=await _plans(db))
        return render(request, "platform/tenants.html", ctx)

    async def _onboard_form(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        form: dict[str, str],
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        plans = list((await _plans(db)).values())
        ctx = await _shell(request, db, plans=plans, form=form, problem=problem, locales=list(LOCALES))
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
        ctx = await _shell(request, db, created=created, plans=await _plans(db))
        return render(request, "platform/tenant_created.html", ctx)

    async def _detail(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        tenant_id: uuid.UUID,
        problem: FormProblem | None = None,
        status: int = 200,
    ) -> Response[str]:
        tenant, plan = await registry.get_tenant(db, tenant_id)
        ctx = await _shell(request, db, tenant=onboarding.tenant_out(tenant, plan.code),
                           plan=onboarding.plan_out(plan), problem=problem)
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

    async def _plans_page(
        self, request: Request[Any, Any, Any], db: DbSession, problem: FormProblem | None = None,
        editing: str = "", status: int = 200,
    ) -> Response[str]:
        ctx = await _shell(request, db, plans=list((await _plans(db)).values()), problem=problem, editing=editing)
        return render(request, "platform/plans.html", ctx, status=status)

    @get("/plans")
    async def plans(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        return await self._plans_page(request, db)

    @post("/plans/{code:str}/names", status_code=303)
    async def rename_plan(self, request: Request[Any, Any, Any], db: DbSession, code: str) -> Response[Any]:
        """Set a plan's display names (English and Chinese)."""
        form = values(await read_form(request), "name", "name_zh")
        try:
            plan = await onboarding.rename_plan(db, code, convert(form, PlanNames))
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            status = exc.status if isinstance(exc, DomainError) else 422
            problem = problem_of(exc, translator(request), locale_of(request))
            return await self._plans_page(request, db, problem, editing=code, status=status)
        flash(request, translator(request).gettext("Plan %(code)s is renamed.") % {"code": plan.code})
        return Redirect("/platform/plans", status_code=303)

    async def _profile_page(
        self, request: Request[Any, Any, Any], db: DbSession, form: dict[str, str] | None = None,
        problem: FormProblem | None = None, status: int = 200,
    ) -> Response[str]:
        ctx = await _shell(request, db, problem=problem, zones=COMMON_ZONES)
        ctx["form"] = form or {"name": ctx["operator"].name, "timezone": ctx["tz"]}
        return render(request, "platform/profile.html", ctx, status=status)

    @get("/profile")
    async def profile(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """The operator's own name and time zone."""
        return await self._profile_page(request, db)

    @post("/profile", status_code=303)
    async def save_profile(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        form = values(await read_form(request), "name", "timezone")
        principal = principal_of(request)
        assert principal is not None  # the controller's guard let an operator in
        try:
            await update_operator_profile(db, uuid.UUID(principal.subject_id), form["name"], form["timezone"])
        except DomainError as exc:
            await db.rollback()
            problem = problem_of(exc, translator(request), locale_of(request))
            return await self._profile_page(request, db, form, problem, exc.status)
        flash(request, translator(request).gettext("Your profile is saved."))
        return Redirect("/platform/profile", status_code=303)

    @get("/plugins")
    async def plugins(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        """The plugins this server runs, their connectors, and why any is disabled (as ``kaquan plugins list``)."""
        report = request.app.state.jobs.plugins.report()
        ctx = await _shell(request, db, plugins=report, kinds=CONNECTOR_KIND_LABELS)
        return render(request, "platform/plugins.html", ctx)
