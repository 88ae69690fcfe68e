"""Tenant console "Risk control" page: limit rules and failure lockout settings (editable with
``risk.manage``), blocklist entries, recent refusals, device flags and lockouts (with lift).

Everything goes through :mod:`core.risk.services`, the same services as ``/api/v1/risk``.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import FormMultiDict
from litestar.di import Provide
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, convert, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.rendering import flash, locale_of, render, translator
from core.db.types import DbSession
from core.errors import DomainError
from core.risk import engine, services
from core.risk.models import BLOCK_KINDS, DIMENSIONS, LIMIT_ACTIONS, WINDOWS
from core.risk.schemas import BlockIn, LimitRule, RuleSet, Velocity
from tenants.guards import provide_db, require_permission

ACTION_LABELS = {
    "grant": N_("Grant"),
    "claim": N_("Claim"),
    "transfer": N_("Transfer"),
    "redeem": N_("Redeem"),
}
DIMENSION_LABELS = {
    "member": N_("Member"),
    "phone": N_("Phone"),
    "ip": N_("IP address"),
    "device": N_("Device"),
    "client": N_("API client"),
}
WINDOW_LABELS = {"day": N_("per day"), "month": N_("per month")}
BLOCK_KIND_LABELS = {"phone": N_("Phone"), "device": N_("Device"), "ip": N_("IP address or network")}
REASON_LABELS = {
    "blocked_phone": N_("Phone on the blocklist"),
    "blocked_device": N_("Device on the blocklist"),
    "blocked_ip": N_("IP on the blocklist"),
    "locked_out": N_("Locked out after failed attempts"),
}
FLAG_LABELS = {"device_many_members": N_("One device, many members")}
RECENT = 50


def reason_label(reason: str, t: Any) -> str:
    """A refusal reason in words (``limit_member_month`` → "Limit per member per month")."""
    if reason in REASON_LABELS:
        return str(t.gettext(REASON_LABELS[reason]))
    parts = reason.split("_")
    if len(parts) == 3 and parts[0] == "limit" and parts[1] in DIMENSION_LABELS and parts[2] in WINDOW_LABELS:
        return str(
            t.gettext("Limit: %(dimension)s %(window)s")
            % {
                "dimension": t.gettext(DIMENSION_LABELS[parts[1]]),
                "window": t.gettext(WINDOW_LABELS[parts[2]]),
            }
        )
    return reason


def _int(raw: str, field: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise FormInvalid(field, N_("Enter a whole number.")) from None


def _rule(tag: str, row: dict[str, Any]) -> LimitRule:
    """One rule row; an invalid value names the row's field (``limit_2``, ``new_window``)."""
    try:
        return convert(row, LimitRule)
    except FormInvalid as exc:
        name = exc.field or "limit"
        field = f"new_{name}" if tag == "new_" else f"{name}{tag}"
        raise FormInvalid(field, N_("Check the values of the highlighted rule.")) from None


def rules_from_form(form: FormMultiDict) -> RuleSet:
    """The rule set the form describes: the listed rules (minus the ones marked for removal), a new one."""
    count = _int(values(form, "rule_count")["rule_count"] or "0", "rule_count")
    limits: list[tuple[str, dict[str, Any]]] = []
    for i in range(min(count, 100)):
        row = values(form, f"action_{i}", f"dimension_{i}", f"window_{i}", f"limit_{i}")
        if form.get(f"remove_{i}"):
            continue
        limits.append(
            (
                f"_{i}",
                {
                    "action": row[f"action_{i}"],
                    "dimension": row[f"dimension_{i}"],
                    "window": row[f"window_{i}"],
                    "limit": _int(row[f"limit_{i}"], f"limit_{i}"),
                    "active": bool(form.get(f"active_{i}")),
                },
            )
        )
    new = values(form, "new_action", "new_dimension", "new_window", "new_limit")
    if new["new_limit"]:
        limits.append(
            (
                "new_",
                {
                    "action": new["new_action"],
                    "dimension": new["new_dimension"],
                    "window": new["new_window"],
                    "limit": _int(new["new_limit"], "new_limit"),
                    "active": True,
                },
            )
        )
    v = values(form, "failure_limit", "window_minutes", "lockout_minutes", "device_member_limit")
    data = {
        "limits": [_rule(tag, x) for tag, x in limits],
        "velocity": convert(
            {k: _int(v[k], k) for k in ("failure_limit", "window_minutes", "lockout_minutes")}, Velocity
        ),
        "device_member_limit": _int(v["device_member_limit"], "device_member_limit"),
    }
    return convert(data, RuleSet)


class RiskPageController(Controller):
    path = "/risk"
    guards = [require_permission("risk.read")]
    dependencies = {"db": Provide(provide_db)}

    async def _page(
        self,
        request: Request[Any, Any, Any],
        db: DbSession,
        *,
        problem: FormProblem | None = None,
        problem_section: str = "",
        block_form: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response[str]:
        await engine.settle()
        now = engine.now()
        ctx = await shell(request, db)
        ctx.update(
            rules=await services.get_rules(db),
            blocks=(await services.list_blocks(db, limit=200)).items,
            refusals=(await services.list_refusals(db, limit=RECENT)).items,
            flags=(await services.list_flags(db, limit=RECENT)).items,
            lockouts=(await services.list_lockouts(db, now, limit=RECENT)).items,
            actions=LIMIT_ACTIONS,
            dimensions=DIMENSIONS,
            windows=WINDOWS,
            block_kinds=BLOCK_KINDS,
            action_labels=ACTION_LABELS,
            dimension_labels=DIMENSION_LABELS,
            window_labels=WINDOW_LABELS,
            block_kind_labels=BLOCK_KIND_LABELS,
            flag_labels=FLAG_LABELS,
            reason_label=lambda r: reason_label(r, translator(request)),
            problem=problem,
            problem_section=problem_section,
            block_form=block_form or {"kind": "phone", "value": "", "note": ""},
        )
        return render(request, "console/risk/index.html", ctx, status=status)

    def _failure(self, exc: Exception, request: Request[Any, Any, Any]) -> tuple[FormProblem, int]:
        status = exc.status if isinstance(exc, DomainError) else 422
        return problem_of(exc, translator(request), locale_of(request)), status

    @get("/")
    async def index(self, request: Request[Any, Any, Any], db: DbSession) -> Response[str]:
        return await self._page(request, db)

    @post("/rules", status_code=303, guards=[require_permission("risk.manage")])
    async def save_rules(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """Replace the rule set with what the form shows."""
        try:
            data = rules_from_form(await read_form(request))
            await services.put_rules(db, data)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = self._failure(exc, request)
            return await self._page(request, db, problem=problem, problem_section="rules", status=status)
        flash(request, translator(request).gettext("Risk rules saved."))
        return Redirect("/console/risk", status_code=303)

    @post("/blocklist", status_code=303, guards=[require_permission("risk.manage")])
    async def add_block(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        form = values(await read_form(request), "kind", "value", "note")
        try:
            data = convert(
                {"kind": form["kind"], "value": form["value"], "note": form["note"] or None}, BlockIn
            )
            entry = await services.add_block(db, request.app.state.kernel, data)
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            problem, status = self._failure(exc, request)
            return await self._page(
                request, db, problem=problem, problem_section="blocklist", block_form=form, status=status
            )
        flash(
            request, translator(request).gettext("%(entry)s is on the blocklist.") % {"entry": entry.display}
        )
        return Redirect("/console/risk#blocklist", status_code=303)

    @post("/blocklist/{block_id:uuid}/remove", status_code=303, guards=[require_permission("risk.manage")])
    async def remove_block(
        self, request: Request[Any, Any, Any], db: DbSession, block_id: uuid.UUID
    ) -> Redirect:
        await services.remove_block(db, block_id)
        flash(request, translator(request).gettext("Removed from the blocklist."))
        return Redirect("/console/risk#blocklist", status_code=303)

    @post("/lockouts/{lockout_id:uuid}/lift", status_code=303, guards=[require_permission("risk.manage")])
    async def lift(
        self, request: Request[Any, Any, Any], db: DbSession, lockout_id: uuid.UUID
    ) -> Redirect:
        lockout = await services.lift_lockout(db, lockout_id, engine.now())
        flash(
            request,
            translator(request).gettext("Lockout of %(subject)s lifted.") % {"subject": lockout.subject},
        )
        return Redirect("/console/risk#lockouts", status_code=303)
