"""The member-facing mobile pages under ``/h5`` (zh-CN, server-rendered; a small script adds copy buttons
and the resend countdown, and every page works without it).

- ``/h5/c/<token>``: a claim link. First open: phone → one-time code → bound; afterwards only the bound
  phone's code opens it (a forwarded link is useless). The holder's session sees the codes with QR.
- ``/h5/me``: "my codes"; without a session, sign-in by phone + one-time code for the shop of
  ``?shop=<slug>`` (or the shop of the last page the browser opened, cookie ``kq_shop``).
- ``/h5/items/<id>``: one code (copy buttons, QR with number and PIN); transfer (转赠) is a second step.
- ``/h5/campaign/<token>``: a public campaign: phone + one-time code → claim one lot.
- ``/h5/privacy``: the shop's privacy policy; every form that collects a phone asks for consent to it.
- ``/h5/logo/<slug>/<digest>``: the shop's logo (cached for a year: the digest changes with the image).

The member session is a signed cookie (``kq_member``: HttpOnly, SameSite=Lax, two hours, path ``/h5``).
Every page is ``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer`` (tokens live in URLs).
Business rules live in :mod:`core.claims` and :mod:`core.campaigns`; what a refused step saves is
decided by :mod:`core.claims.member_flows` and :mod:`core.campaigns.member_flows`. Handlers only translate
forms and errors; they never commit.
"""

from __future__ import annotations

import html
import secrets
import uuid
from pathlib import Path
from typing import Any

import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.enums import MediaType
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.response import Redirect
from litestar.utils.empty import value_or_default
from litestar.utils.scope.state import ScopeState
from markupsafe import Markup

from admin_ui.money import format_expiry, format_money
from core.campaigns import member_flows as campaign_flows
from core.campaigns import services as campaigns
from core.campaigns.funnel import record_visit
from core.catalog.services import find_product
from core.claims import login as member_login
from core.claims import member_flows
from core.claims.access import MEMBER_COOKIE, SessionRequired
from core.claims.items import item_views, member_item, member_items
from core.claims.links import LinkState, open_link, request_link_code
from core.claims.otp import OTP_RESEND_AFTER, OTP_TTL, OtpTooSoon
from core.db.base import utcnow
from core.db.types import DbSession
from core.errors import DomainError
from core.http.problems import OUTAGE_RETRY_AFTER, classify_failure
from core.members.consent import POLICY_SECTIONS, PRIVACY_VERSION
from core.members.models import Member
from core.members.services import mask_phone, normalize_phone
from core.notifications import branding as tenant_branding
from core.risk.gate import RiskRefused
from tenants.guards import provide_db
from tenants.models import Tenant

H5_DIR = Path(__file__).resolve().parent
log = structlog.get_logger("kaquan.h5")

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
DEVICE_COOKIE = "kq_device"
DEVICE_COOKIE_AGE = 365 * 86_400
SHOP_COOKIE = "kq_shop"
RESEND_SECONDS = int(OTP_RESEND_AFTER.total_seconds())
LOGO_CACHE = "public, max-age=31536000, immutable"
STATUS_LABELS = {
    "held": "可使用",
    "redeemed": "已使用",
    "transferred": "已转赠",
    "expired": "已过期",
    "voided": "已作废",
}

_env = Environment(
    loader=FileSystemLoader(H5_DIR / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals.update(
    STATUS_LABELS=STATUS_LABELS,
    OTP_MINUTES=int(OTP_TTL.total_seconds() // 60),
    RESEND_SECONDS=RESEND_SECONDS,
    PRIVACY_VERSION=PRIVACY_VERSION,
)
# the console's formatters: ¥25.00, and an expiry as the day it is valid through
_env.filters["money"] = format_money
_env.filters["expiry"] = format_expiry


def _secure(request: Request[Any, Any, Any]) -> bool:
    return str(request.app.state.kernel.settings.base_url).startswith("https")


def page(
    request: Request[Any, Any, Any],
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> Response[str]:
    """Render an H5 page (never cached); gives a new visitor a random device cookie for the risk rules."""
    token = value_or_default(ScopeState.from_scope(request.scope).csrf_token, "")
    ctx: dict[str, Any] = {
        "csrf_input": Markup(f'<input type="hidden" name="_csrf_token" value="{html.escape(token)}">'),
        "tenant_name": "",
        "logo_url": "",
        "shop": "",
        "problem": None,
        "title": "",
    }
    ctx.update(context or {})
    response = Response(
        _env.get_template(template).render(ctx),
        status_code=status,
        media_type=MediaType.HTML,
        headers=HEADERS,
    )
    if ctx["shop"] and request.cookies.get(SHOP_COOKIE) != ctx["shop"]:  # "my codes" knows the shop next time
        response.set_cookie(
            SHOP_COOKIE, ctx["shop"], max_age=DEVICE_COOKIE_AGE, path="/h5", httponly=True, samesite="lax",
            secure=_secure(request),
        )
    if not request.cookies.get(DEVICE_COOKIE):
        response.set_cookie(
            DEVICE_COOKIE,
            secrets.token_hex(16),
            max_age=DEVICE_COOKIE_AGE,
            path="/h5",
            httponly=True,
            samesite="lax",
            secure=_secure(request),
        )
    return response


async def face(db: DbSession, tenant: Tenant) -> dict[str, str]:
    """The shop as the page header shows it: its display name and logo (the tenant's branding)."""
    brand = await tenant_branding.branding(db, tenant.name)
    logo = f"/h5/logo/{tenant.slug}/{brand.logo_digest[:16]}" if brand.logo_digest else ""
    return {"tenant_name": brand.display_name, "logo_url": logo, "shop": tenant.slug}


def _client(request: Request[Any, Any, Any]) -> tuple[str | None, str | None]:
    """(IP, device id) for the risk rules."""
    ip = request.client.host if request.client else None
    device = request.headers.get("x-device-id") or request.cookies.get(DEVICE_COOKIE)
    return ip, (device or None) and device[:64]


async def _login(
    request: Request[Any, Any, Any], db: DbSession, response: Response[Any], member_id: uuid.UUID
) -> Response[Any]:
    """Start the member's session (signed cookie) on ``response``."""
    value, ttl = await member_flows.member_cookie(db, request.app.state.kernel, member_id)
    response.set_cookie(
        MEMBER_COOKIE,
        value,
        max_age=ttl,
        path="/h5",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {k: str(v)[:200] for k, v in form.items() if isinstance(v, str)}


def _message(
    request: Request[Any, Any, Any], status: int, title: str, message: str, tenant_name: str = ""
) -> Response[str]:
    return page(
        request,
        "h5/message.html",
        {"title": title, "message": message, "status": status, "tenant_name": tenant_name},
        status=status,
    )


_TITLES = {
    400: "链接无效",
    401: "请先验证手机号",
    403: "无法访问",
    404: "页面不存在",
    409: "无法完成",
    410: "链接已过期",
    422: "输入有误",
    423: "暂时锁定",
    429: "操作过于频繁",
    500: "出错了",
}


def domain_error_page(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    return _message(request, exc.status, _TITLES.get(exc.status, "无法完成"), exc.detail("zh-CN"))


def http_error_page(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, PermissionDeniedException) and "CSRF" in str(exc.detail):
        return _message(request, 403, "页面已过期", "页面已过期或来源不明，请刷新后重试。")
    status = exc.status_code if exc.status_code < 500 else 500
    return _message(request, status, _TITLES.get(status, "无法完成"), _TITLES.get(status, "请求无法处理"))


def internal_error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A refused value is a 422 page, an outage a 503 page, a bug a logged 500 page: never problem+json."""
    kind = classify_failure(exc)
    if kind == "outage":
        page_ = _message(request, 503, "服务暂时不可用", "服务暂时不可用，本次操作未做任何更改，请稍后重试。")
        page_.headers["Retry-After"] = OUTAGE_RETRY_AFTER
        return page_
    if kind == "bad_value":
        return _message(request, 422, _TITLES[422], "输入的内容超出范围或不是有效文本，本次操作未做任何更改。")
    log.error("h5_error", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
    return _message(request, 500, _TITLES[500], "系统内部错误，已记录。请稍后重试。")


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    DomainError: domain_error_page,
    HTTPException: http_error_page,
    Exception: internal_error_page,
}


class H5Controller(Controller):
    path = "/"
    dependencies = {"db": Provide(provide_db)}

    # ------------------------------------------------------------ claim links

    async def _claim_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        state: LinkState,
        *,
        problem: str | None = None,
        status: int = 200,
        resend_in: int | None = None,
    ) -> Response[Any]:
        link = state.link
        views = await member_flows.holder_views(
            db, request.app.state.kernel, state, request.cookies.get(MEMBER_COOKIE)
        )
        ctx: dict[str, Any] = {
            **(await face(db, state.tenant)),
            "token": state.token,
            "problem": problem,
            "phone_masked": link.phone_masked,
            "code_sent_to": state.code_sent_to,
            "resend_in": state.resend_in if resend_in is None else resend_in,
            "title": "领取券码",
        }
        if views is not None:
            return page(request, "h5/codes.html", {**ctx, "items": views, "title": "我的券码"}, status=status)
        if state.locked_until is not None:
            minutes = max(1, int((state.locked_until - utcnow()).total_seconds() + 59) // 60)
            return page(request, "h5/claim.html", {**ctx, "step": "locked", "minutes": minutes}, status=423)
        step = "code" if state.code_sent_to else ("phone" if state.needs_phone else "known")
        return page(request, "h5/claim.html", {**ctx, "step": step, "bound": state.bound}, status=status)

    @get("/c/{token:str}")
    async def claim_link(
        self, request: Request[Any, Any, Any], db: DbSession, token: str
    ) -> Response[Any]:
        state = await open_link(db, request.app.state.kernel, token)
        return await self._claim_page(request, db, state)

    @post("/c/{token:str}/send", status_code=303)
    async def claim_send(
        self, request: Request[Any, Any, Any], db: DbSession, token: str
    ) -> Response[Any]:
        kernel = request.app.state.kernel
        state = await open_link(db, kernel, token, lock=True)
        form = await _form(request)
        ip, device = _client(request)
        try:
            await request_link_code(
                db, kernel, state, form.get("phone"), consent=form.get("consent"), ip=ip, device_id=device
            )
        except DomainError as exc:  # during the cooldown the code box stays, with the countdown
            wait = int(exc.extra.get("retry_after", 0)) if isinstance(exc, OtpTooSoon) else None
            return await self._claim_page(
                request, db, state, problem=exc.detail("zh-CN"), status=exc.status, resend_in=wait
            )
        return Redirect(f"/h5/c/{token}", status_code=303)

    @post("/c/{token:str}/verify", status_code=303)
    async def claim_verify(
        self, request: Request[Any, Any, Any], db: DbSession, token: str
    ) -> Response[Any]:
        kernel = request.app.state.kernel
        state = await open_link(db, kernel, token, lock=True)
        form = await _form(request)
        ip, device = _client(request)
        try:
            member = await member_flows.verify_link_code(
                db, kernel, state, form.get("code", ""), ip=ip, device_id=device
            )
        except DomainError as exc:  # the counted attempt (and a lock) is saved: show the link as it is now
            state = await open_link(db, kernel, token)
            return await self._claim_page(request, db, state, problem=exc.detail("zh-CN"), status=exc.status)
        return await _login(request, db, Redirect(f"/h5/c/{token}", status_code=303), member.id)

    # ------------------------------------------------------------ the member's own pages

    async def _member(self, request: Request[Any, Any, Any], db: DbSession) -> tuple[Tenant, Member]:
        return await member_flows.current_member(
            db, request.app.state.kernel, request.cookies.get(MEMBER_COOKIE)
        )

    @get("/me")
    async def my_codes(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        try:
            tenant, member = await self._member(request, db)
        except SessionRequired:  # sign in by phone when the shop is known, else say how to get here
            slug = request.query_params.get("shop") or request.cookies.get(SHOP_COOKIE) or ""
            if not slug:
                raise
            tenant = await member_login.open_shop(db, slug)
            return await self._login_page(request, db, tenant)
        items = await member_items(db, member.id)
        views = await item_views(db, request.app.state.kernel, items, tenant, reveal=False)
        return page(
            request,
            "h5/me.html",
            {
                **(await face(db, tenant)),
                "items": views,
                "title": "我的券",
                "phone_masked": member.phone_masked,
            },
        )

    # ------------------------------------------------------------ sign-in by phone

    async def _login_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        tenant: Tenant,
        *,
        step: str = "phone",
        phone: str = "",
        problem: str | None = None,
        status: int = 200,
        resend_in: int = 0,
    ) -> Response[Any]:
        try:
            phone_masked = mask_phone(normalize_phone(phone)) if phone else ""
        except DomainError:
            phone_masked = ""
        return page(
            request,
            "h5/login.html",
            {
                **(await face(db, tenant)),
                "title": "登录查看我的券",
                "step": step,
                "phone": phone,
                "phone_masked": phone_masked,
                "problem": problem,
                "resend_in": resend_in,
            },
            status=status,
        )

    @post("/login/{shop:str}/send", status_code=200)
    async def login_send(self, request: Request[Any, Any, Any], db: DbSession, shop: str) -> Response[Any]:
        tenant = await member_login.open_shop(db, shop)
        form = await _form(request)
        phone = form.get("phone", "")
        ip, device = _client(request)
        try:
            sent = await member_login.request_login_code(
                db, request.app.state.kernel, tenant, phone, form.get("consent"), ip=ip, device_id=device
            )
        except DomainError as exc:  # during the cooldown the code box stays, with the countdown
            cooling = isinstance(exc, OtpTooSoon)
            return await self._login_page(
                request,
                db,
                tenant,
                step="code" if cooling else "phone",
                phone=phone,
                problem=exc.detail("zh-CN"),
                status=exc.status,
                resend_in=int(exc.extra.get("retry_after", 0)) if cooling else 0,
            )
        return await self._login_page(request, db, tenant, step="code", phone=phone, resend_in=sent.resend_in)

    @post("/login/{shop:str}/verify", status_code=303)
    async def login_verify(self, request: Request[Any, Any, Any], db: DbSession, shop: str) -> Response[Any]:
        tenant = await member_login.open_shop(db, shop)
        form = await _form(request)
        phone = form.get("phone", "")
        ip, device = _client(request)
        try:
            member = await member_login.confirm_login_code(
                db, request.app.state.kernel, phone, form.get("code", ""), ip=ip, device_id=device
            )
        except DomainError as exc:  # the counted attempt (and a lock) is saved
            return await self._login_page(
                request, db, tenant, step="code", phone=phone, problem=exc.detail("zh-CN"), status=exc.status
            )
        return await _login(request, db, Redirect("/h5/me", status_code=303), member.id)

    # ------------------------------------------------------------ the shop's privacy policy and logo

    @get("/privacy")
    async def privacy(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        slug = request.query_params.get("shop") or request.cookies.get(SHOP_COOKIE) or ""
        ctx: dict[str, Any] = {"title": "隐私政策", "tenant_name": ""}
        if slug:
            ctx.update(await face(db, await member_login.open_shop(db, slug)))
        shop_name = ctx["tenant_name"] or "本店"
        sections = [(title, text.format(tenant=shop_name)) for title, text in POLICY_SECTIONS]
        return page(request, "h5/privacy.html", {**ctx, "sections": sections, "version": PRIVACY_VERSION})

    @get("/logo/{shop:str}/{digest:str}")
    async def logo(self, db: DbSession, shop: str, digest: str) -> Response[Any]:
        await member_login.open_shop(db, shop)
        found = await tenant_branding.logo(db)
        if found is None or not found[2].startswith(digest) or len(digest) < 8:
            raise NotFoundException()
        data, kind, full = found
        return Response(
            data,
            media_type=kind,
            headers={"Cache-Control": LOGO_CACHE, "ETag": f'"{full[:32]}"', "X-Content-Type-Options": "nosniff"},
        )

    async def _item_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        tenant: Tenant,
        member: Member,
        item_id: uuid.UUID,
        *,
        problem: str | None = None,
        status: int = 200,
        phone: str = "",
    ) -> Response[Any]:
        item = await member_item(db, member.id, item_id)
        views = await item_views(db, request.app.state.kernel, [item], tenant, reveal=True)
        return page(
            request,
            "h5/item.html",
            {
                **(await face(db, tenant)),
                "item": views[0],
                "problem": problem,
                "phone": phone,
                "title": views[0].product_name,
            },
            status=status,
        )

    @get("/items/{item_id:uuid}")
    async def item(
        self, request: Request[Any, Any, Any], db: DbSession, item_id: uuid.UUID
    ) -> Response[Any]:
        tenant, member = await self._member(request, db)
        return await self._item_page(request, db, tenant, member, item_id)

    @post("/items/{item_id:uuid}/transfer", status_code=200)
    async def transfer(
        self, request: Request[Any, Any, Any], db: DbSession, item_id: uuid.UUID
    ) -> Response[Any]:
        tenant, member = await self._member(request, db)
        form = await _form(request)
        ip, device = _client(request)
        try:
            result = await member_flows.transfer(
                db,
                request.app.state.kernel,
                tenant,
                member,
                item_id,
                form.get("phone", ""),
                ip=ip,
                device_id=device,
            )
        except DomainError as exc:  # nothing of the refused transfer stays: re-read who is asking
            tenant, member = await self._member(request, db)
            return await self._item_page(
                request,
                db,
                tenant,
                member,
                item_id,
                problem=exc.detail("zh-CN"),
                status=exc.status,
                phone=form.get("phone", ""),
            )
        return page(
            request,
            "h5/transferred.html",
            {**(await face(db, tenant)), "title": "转赠成功", "to": result.link.phone_masked},
        )

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        response = Redirect("/h5/me", status_code=303)
        response.delete_cookie(MEMBER_COOKIE, path="/h5")
        return response

    # ------------------------------------------------------------ campaigns

    async def _campaign_page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        tenant: Tenant,
        campaign: Any,
        token: str,
        *,
        step: str = "phone",
        phone: str = "",
        problem: str | None = None,
        status: int = 200,
        resend_in: int = 0,
        claimed_url: str = "",
    ) -> Response[Any]:
        product = await find_product(db, campaign.product_id)
        try:
            phone_masked = mask_phone(normalize_phone(phone)) if phone else ""
        except DomainError:
            phone_masked = ""
        return page(
            request,
            "h5/campaign.html",
            {
                **(await face(db, tenant)),
                "title": campaign.name,
                "campaign": campaign,
                "product": product,
                "state": campaigns.campaign_state(campaign),
                "token": token,
                "step": step,
                "phone": phone,
                "phone_masked": phone_masked,
                "problem": problem,
                "resend_in": resend_in,
                "claimed_url": claimed_url,
            },
            status=status,
        )

    @get("/campaign/{token:str}")
    async def campaign(self, request: Request[Any, Any, Any], db: DbSession, token: str) -> Response[Any]:
        tenant, campaign = await campaigns.open_campaign(db, request.app.state.kernel, token)
        await record_visit(db, request.app.state.kernel, campaign, _client(request)[0], request.headers.get("user-agent"))
        return await self._campaign_page(request, db, tenant, campaign, token)

    @post("/campaign/{token:str}/send", status_code=200)
    async def campaign_send(
        self, request: Request[Any, Any, Any], db: DbSession, token: str
    ) -> Response[Any]:
        kernel = request.app.state.kernel
        tenant, campaign = await campaigns.open_campaign(db, kernel, token)
        form = await _form(request)
        phone = form.get("phone", "")
        ip, device = _client(request)
        try:
            await campaigns.request_campaign_code(
                db, kernel, tenant, campaign, phone, consent=form.get("consent"), ip=ip, device_id=device
            )
        except DomainError as exc:  # during the cooldown the code box stays, with the countdown
            cooling = isinstance(exc, OtpTooSoon)
            return await self._campaign_page(
                request,
                db,
                tenant,
                campaign,
                token,
                step="code" if cooling else "phone",
                phone=phone,
                problem=exc.detail("zh-CN"),
                status=exc.status,
                resend_in=int(exc.extra.get("retry_after", 0)) if cooling else 0,
            )
        return await self._campaign_page(
            request, db, tenant, campaign, token, step="code", phone=phone, resend_in=RESEND_SECONDS
        )

    @post("/campaign/{token:str}/claim", status_code=303)
    async def campaign_claim(
        self, request: Request[Any, Any, Any], db: DbSession, token: str
    ) -> Response[Any]:
        kernel = request.app.state.kernel
        tenant, campaign = await campaigns.open_campaign(db, kernel, token)
        form = await _form(request)
        phone = form.get("phone", "")
        ip, device = _client(request)
        try:
            confirmed = await campaign_flows.confirm_campaign_phone(
                db, kernel, campaign, phone, form.get("code", ""), ip=ip, device_id=device
            )
        except DomainError as exc:  # the counted attempt (and a lock) is saved
            return await self._campaign_page(
                request,
                db,
                tenant,
                campaign,
                token,
                step="code",
                phone=phone,
                problem=exc.detail("zh-CN"),
                status=exc.status,
            )
        try:
            lot = await campaign_flows.claim_campaign_lot(
                db, kernel, campaign.id, confirmed, ip=ip, device_id=device
            )
        except DomainError as exc:  # the used one-time code stays used
            if isinstance(exc, RiskRefused) and exc.extra.get("reason") == "campaign_member_limit":
                return await self._claimed_before(request, db, tenant, campaign, token, confirmed, exc)
            return await self._campaign_page(
                request,
                db,
                tenant,
                campaign,
                token,
                phone=phone,
                problem=exc.detail("zh-CN"),
                status=exc.status,
            )
        return await _login(request, db, Redirect(_lot_url(lot), status_code=303), lot.member_id)

    async def _claimed_before(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        tenant: Tenant,
        campaign: Any,
        token: str,
        phone: str,
        exc: DomainError,
    ) -> Response[Any]:
        """At the per-member limit: the phone was just confirmed, so sign its member in and link to the
        code claimed before."""
        earlier = await campaign_flows.earlier_lot(db, request.app.state.kernel, campaign.id, phone)
        response = await self._campaign_page(
            request,
            db,
            tenant,
            campaign,
            token,
            step="claimed",
            problem=exc.detail("zh-CN"),
            status=exc.status,
            claimed_url=_lot_url(earlier) if earlier else "",
        )
        return await _login(request, db, response, earlier.member_id) if earlier else response


def _lot_url(lot: campaign_flows.ClaimedLot) -> str:
    return f"/h5/items/{lot.item_ids[0]}" if len(lot.item_ids) == 1 else "/h5/me"
