"""Tenant console entry points: login, logout, invite acceptance and the language switch."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.forms import (
    FormInvalid,
    FormProblem,
    InviteAcceptForm,
    TenantLoginForm,
    convert,
    problem_of,
    read_form,
    values,
)
from admin_ui.i18n import LOCALES
from admin_ui.rendering import flash, locale_of, render, translator
from admin_ui.sessions import end_session, safe_next, start_session
from core.db.types import DbSession
from core.errors import DomainError
from tenants import registry
from tenants.guards import principal_of, provide_db
from tenants.security import MIN_PASSWORD_LENGTH
from tenants.users import accept_invite, authenticate_user, find_invite

HOME = "/console"
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600
Query = Annotated[str | None, Parameter(required=False)]
NextParam = Annotated[str | None, Parameter(query="next", required=False)]


class ConsoleAuthController(Controller):
    """Pages that need no login."""

    path = "/"
    dependencies = {"db": Provide(provide_db)}

    @get("/login")
    async def login_page(
        self,
        request: Request[Any, Any, Any],
        next_url: NextParam = None,
        tenant: Query = None,
        email: Query = None,
    ) -> Response[Any]:
        principal = principal_of(request)
        if principal is not None and principal.kind == "user":
            return Redirect(safe_next(next_url, "/console", HOME), status_code=303)
        session = request.scope.get("session")
        prefill = session.pop("login_prefill", None) if isinstance(session, dict) else None
        form = {"tenant": tenant or "", "email": email or "", **(prefill or {})}
        return render(request, "console/login.html", {"form": form, "problem": None, "next": next_url})

    @post("/login", status_code=200)
    async def login(self, request: Request[Any, Any, Any], next_url: NextParam = None) -> Response[Any]:
        form = values(await read_form(request), "tenant", "email", "password", keep=("password",))
        try:
            data = convert(form, TenantLoginForm)
            tenant, user = await authenticate_user(
                request.app.state.kernel, data.tenant, data.email, data.password
            )
        except (DomainError, FormInvalid) as exc:
            status = exc.status if isinstance(exc, DomainError) else 422
            problem = problem_of(exc, translator(request), locale_of(request))
            ctx = {
                "form": {"tenant": form["tenant"], "email": form["email"]},
                "problem": problem,
                "next": next_url,
            }
            return render(request, "console/login.html", ctx, status=status)
        await start_session(
            request, {"realm": "tenant", "tenant_id": str(tenant.id), "user_id": str(user.id)}
        )
        return Redirect(safe_next(next_url, "/console", HOME), status_code=303)

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        end_session(request)
        return Redirect("/console/login", status_code=303)

    async def _invite_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        token: str,
        problem: FormProblem | None = None,
        status: int = 200,
        name: str = "",
    ) -> Response[str]:
        headers = {"Referrer-Policy": "no-referrer"}  # the URL carries the invite token
        try:
            user = await find_invite(db, token)
            tenant, _plan = await registry.get_tenant(db, user.tenant_id)
        except DomainError as exc:
            ctx = {"invalid": exc.detail(locale_of(request))}
            return render(request, "console/invite.html", ctx, status=exc.status, headers=headers)
        ctx = {
            "invalid": None,
            "email": user.email,
            "role": user.role,
            "tenant_name": tenant.name,
            "problem": problem,
            "name": name,
            "min_password": MIN_PASSWORD_LENGTH,
        }
        return render(request, "console/invite.html", ctx, status=status, headers=headers)

    @get("/invite/{token:str}")
    async def invite_page(self, request: Request[Any, Any, Any], db: DbSession, token: str) -> Response[str]:
        return await self._invite_page(request, db, token)

    @post("/invite/{token:str}", status_code=303)
    async def invite_accept(
        self, request: Request[Any, Any, Any], db: DbSession, token: str
    ) -> Response[Any]:
        t = translator(request)
        form = values(
            await read_form(request),
            "password",
            "password_confirm",
            "name",
            keep=("password", "password_confirm"),
        )
        try:
            data = convert(form, InviteAcceptForm)
            if data.password != data.password_confirm:
                problem = FormProblem(t.gettext("The two passwords do not match."), "password_confirm")
                return await self._invite_page(request, db, token, problem, 422, form["name"])
            user = await accept_invite(db, token, data.password, data.name)
            tenant, _plan = await registry.get_tenant(db, user.tenant_id)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            status = exc.status if isinstance(exc, DomainError) else 422
            problem = problem_of(exc, t, locale_of(request))
            return await self._invite_page(request, db, token, problem, status, form["name"])
        flash(request, t.gettext("Your password is set. Log in to continue."))
        session = request.scope.get("session")
        if isinstance(session, dict):  # fills the login form without putting the e-mail in a URL
            session["login_prefill"] = {"tenant": tenant.slug, "email": user.email}
        return Redirect("/console/login", status_code=303, headers={"Referrer-Policy": "no-referrer"})

    @get("/lang")
    async def switch_language(
        self, to: Annotated[str, Parameter(query="to")], next_url: NextParam = None
    ) -> Redirect:
        """Set the ``lang`` cookie (``zh-CN`` or ``en``) and go back to the page."""
        target = safe_next(next_url, ("/console", "/platform"), HOME)
        cookies = []
        if to in LOCALES:
            cookies.append(
                Cookie(
                    key="lang", value=to, max_age=LANG_COOKIE_MAX_AGE, path="/", samesite="lax", httponly=True
                )
            )
        return Redirect(target, status_code=303, cookies=cookies)
