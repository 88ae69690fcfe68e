"""Tenant console "Split rules" page (分账规则, tab of 结算对账): every subject (channel kind, account,
listing) with its versions and the one in force; a form to save a new version from a preset or by hand,
with a preview of the rows an example order line would write; "stop overriding" for a subject.

Seeing it: ``splits.read``; saving versions: ``splits.manage``. Everything goes through
:mod:`core.splits.rules`, :mod:`core.splits.preview` and :mod:`core.splits.views`, as the API does.
Amounts are typed in yuan, rates in percent with up to two decimals (fen and basis points).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Redirect

from admin_ui.console_pages import shell
from admin_ui.forms import FormInvalid, FormProblem, problem_of, read_form, values
from admin_ui.i18n import N_
from admin_ui.money import AmountInvalid, fen_to_yuan, yuan_to_fen
from admin_ui.rendering import flash, locale_of, render, translator
from core.db.types import DbSession
from core.errors import DomainError, Forbidden
from core.splits import rules, views
from core.splits.engine import LineFacts
from core.splits.preview import component_labels, preview
from core.splits.schemas import PreviewOut
from core.splits.terms import SplitTerms
from tenants.guards import principal_of, provide_db, require_permission
from tenants.scopes import role_can

VIEW_PERMISSION = "splits.read"
MANAGE_PERMISSION = "splits.manage"
ROWS = 6
COMPONENT_FIELDS = ("party", "basis", "pct", "fixed", "min", "max", "refs", "label")
FORM_FIELDS = ("subject", "preset", "remainder_to", "valid_from", "note", "action", "ex_gross", "ex_quantity",
               "ex_referrer", "ex_kol", "ex_referrer_count", "ex_kol_count", "ex_first",
               *(f"c{i}_{f}" for i in range(ROWS) for f in COMPONENT_FIELDS))
PARTY_LABELS: dict[str, str] = {"channel": N_("Channel (party)"), "platform": N_("Platform"), "referrer": N_("Referrer"),
                                "kol": N_("KOL"), "tenant": N_("Tenant (net)")}
BASIS_LABELS: dict[str, str] = {"sale": N_("of the sale"), "redeemed": N_("of the redeemed value"),
                                "conversion": N_("per attributed conversion"), "order": N_("once per order")}
EVENT_LABELS: dict[str, str] = {"sale": N_("Sale (order taken)"), "redemption": N_("Redemption of one code"),
                                "redemption_rollback": N_("Redemption rolled back"),
                                "refund": N_("Refund of units")}
PRESET_LABELS: dict[str, str] = {"sale_10": N_("E-commerce: 10%% of the sale"),
                                 "sale_15": N_("E-commerce: 15%% of the sale"),
                                 "redeemed_5": N_("Local life: 5%% of the redeemed value"),
                                 "conversion_sharer_kol": N_("Social: per conversion, 5%% cash-back for 3 buyers, KOL fee")}
#: The names core.splits.preview gives the net and rounding rows (translated where the page shows them).
ROW_LABELS = (N_("Net to the tenant"), N_("Rounding remainder"))
BAD_AMOUNT = N_("Enter an amount in yuan with at most two decimals, e.g. 12.50.")
BAD_PERCENT = N_("Enter a percentage with at most two decimals, e.g. 15 or 12.5.")
BAD_NUMBER = N_("Enter a whole number.")
BAD_TIME = N_("Enter a date and time, e.g. 2026-12-01 00:00.")
NO_SUBJECT = N_("Choose what the rule applies to.")


def _amount(form: dict[str, str], name: str, message: str = BAD_AMOUNT) -> int | None:
    text = form.get(name, "").rstrip("%").strip()
    if not text:
        return None
    try:
        return yuan_to_fen(text)
    except AmountInvalid:
        raise FormInvalid(name, message) from None


def _int(form: dict[str, str], name: str, default: int = 0) -> int:
    text = form.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise FormInvalid(name, BAD_NUMBER) from None
    if value < 0 or value > 1_000_000:
        raise FormInvalid(name, BAD_NUMBER)
    return value


def terms_of_form(form: dict[str, str]) -> SplitTerms:
    """The components typed in the form (rows without a rate, fee or minimum are skipped), checked."""
    comps: list[dict[str, Any]] = []
    for i in range(ROWS):
        bp, fixed = _amount(form, f"c{i}_pct", BAD_PERCENT), _amount(form, f"c{i}_fixed")
        low, high = _amount(form, f"c{i}_min"), _amount(form, f"c{i}_max")
        if not bp and not fixed and not low:
            continue
        comps.append({"party": form.get(f"c{i}_party") or "channel", "basis": form.get(f"c{i}_basis") or "sale",
                      "bp": bp or 0, "fixed_fen": fixed or 0, "min_fen": low, "max_fen": high,
                      "min_referrals": _int(form, f"c{i}_refs"), "label": form.get(f"c{i}_label", "")[:60]})
    return rules.validate_terms({"components": comps, "remainder_to": form.get("remainder_to") or "tenant"})


def form_of_terms(terms: SplitTerms, base: dict[str, str] | None = None) -> dict[str, str]:
    """The form filled with ``terms``."""
    form = dict(base or {})
    form["remainder_to"] = terms.remainder_to
    for i in range(ROWS):
        c = terms.components[i] if i < len(terms.components) else None
        form.update({
            f"c{i}_party": c.party if c else "channel", f"c{i}_basis": c.basis if c else "sale",
            f"c{i}_pct": fen_to_yuan(c.bp) if c and c.bp else "", f"c{i}_fixed": fen_to_yuan(c.fixed_fen) if c and c.fixed_fen else "",
            f"c{i}_min": fen_to_yuan(c.min_fen) if c and c.min_fen is not None else "",
            f"c{i}_max": fen_to_yuan(c.max_fen) if c and c.max_fen is not None else "",
            f"c{i}_refs": str(c.min_referrals) if c and c.min_referrals else "", f"c{i}_label": c.label if c else "",
        })
    return form


def _facts(form: dict[str, str]) -> LineFacts:
    gross = _amount(form, "ex_gross")
    return LineFacts(gross_fen=10_000 if gross is None else gross, quantity=max(1, min(_int(form, "ex_quantity", 1), 10_000)),
                     first_line=form.get("ex_first", "1") != "0", referrer=form.get("ex_referrer", "")[:100],
                     kol=form.get("ex_kol", "")[:100], referrer_count=_int(form, "ex_referrer_count"),
                     kol_count=_int(form, "ex_kol_count"))


def _valid_from(form: dict[str, str], zone: str) -> dt.datetime | None:
    text = form.get("valid_from", "").replace("T", " ").strip()
    if not text:
        return None
    try:
        naive = dt.datetime.fromisoformat(text)
    except ValueError:
        raise FormInvalid("valid_from", BAD_TIME) from None
    return naive.replace(tzinfo=zoneinfo.ZoneInfo(zone)) if naive.tzinfo is None else naive


def _blank() -> dict[str, str]:
    form = dict.fromkeys(FORM_FIELDS, "")
    form.update({"ex_gross": "100.00", "ex_quantity": "2", "ex_first": "1", "ex_referrer": "sharer-1",
                 "ex_referrer_count": "3", "ex_kol": "", "ex_kol_count": "0"})
    return form_of_terms(SplitTerms(), form)


class SplitRulesController(Controller):
    path = "/split-rules"
    guards = [require_permission(VIEW_PERMISSION)]
    dependencies = {"db": Provide(provide_db)}

    async def _page(self, request: Request[Any, Any, Any], db: DbSession, *, form: dict[str, str],
                    problem: FormProblem | None = None, shown: PreviewOut | None = None,
                    labels: dict[str, str] | None = None, status: int = 200) -> Response[str]:
        ctx = await shell(request, db)
        connectors, accounts, listings = await views.subject_choices(db)
        ctx.update(
            subjects=await views.subject_rows(db), balances=await views.balance_rows(db), connectors=connectors, accounts=accounts, listings=listings,
            manage=role_can(ctx["me"].role, MANAGE_PERMISSION), form=form, problem=problem, preview=shown,
            preview_labels=labels or {}, rows=range(ROWS), presets=PRESET_LABELS, party_labels=PARTY_LABELS,
            basis_labels=BASIS_LABELS, event_labels=EVENT_LABELS, tab="split_rules",
            terms_of=lambda rule: None if rule.terms is None else rules.terms_from_snapshot(rule.terms),
        )
        return render(request, "console/splits/rules.html", ctx, status=status)

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], db: DbSession,
        preset: Annotated[str | None, Parameter(required=False, max_length=40)] = None,
        subject: Annotated[str | None, Parameter(required=False, max_length=120)] = None,
    ) -> Response[str]:
        """Subjects and their versions; the form filled from ``preset`` (or the ``subject``'s rule in force)."""
        form = _blank()
        if preset in rules.PRESETS:
            form = form_of_terms(rules.PRESETS[preset], form)
            form["preset"] = preset
        if subject:
            form["subject"] = subject
            current = next((s.current for s in await views.subject_rows(db) if s.subject == subject), None)
            if current is not None and current.terms is not None and preset not in rules.PRESETS:
                form = form_of_terms(rules.terms_from_snapshot(current.terms), form)
        return await self._page(request, db, form=form)

    @post("/", status_code=200)
    async def submit(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """``action=preview``: the rows of the example line; ``action=save``: a new version (manage)."""
        form = values(await read_form(request), *FORM_FIELDS)
        ctx = await shell(request, db)
        saving = form.get("action") == "save"
        if saving and not role_can(ctx["me"].role, MANAGE_PERMISSION):
            raise Forbidden("Your role does not allow this", "您的角色无权执行此操作", code="role_forbidden")
        try:
            terms = terms_of_form(form)
            shown = preview(terms, _facts(form), 1)
            if saving:
                if not form.get("subject"):
                    raise FormInvalid("subject", NO_SUBJECT)
                p = principal_of(request)
                rule = await rules.create_version(db, form["subject"], terms,
                                                  valid_from=_valid_from(form, ctx["tz"]), note=form.get("note", ""),
                                                  by=f"user:{p.subject_id}" if p else "")
        except (DomainError, FormInvalid) as exc:
            await db.rollback()
            status = exc.status if isinstance(exc, DomainError) else 422
            return await self._page(request, db, form=form, problem=problem_of(exc, translator(request), locale_of(request)),
                                    status=status)
        if saving:
            flash(request, translator(request).gettext("Saved as version %(v)s.") % {"v": rule.version})
            return Redirect(f"/console/split-rules?subject={rule.subject}", status_code=303)
        return await self._page(request, db, form=form, shown=shown, labels=component_labels(terms))

    @post("/clear", status_code=303, guards=[require_permission(MANAGE_PERMISSION)])
    async def clear(self, request: Request[Any, Any, Any], db: DbSession) -> Response[Any]:
        """A version without terms: the subject stops overriding the broader rule."""
        form = values(await read_form(request), "subject")
        p = principal_of(request)
        try:
            rule = await rules.create_version(db, form.get("subject", ""), None, note="stop overriding",
                                              by=f"user:{p.subject_id}" if p else "")
        except DomainError as exc:
            await db.rollback()
            flash(request, exc.detail(locale_of(request)), "error")
            return Redirect("/console/split-rules", status_code=303)
        flash(request, translator(request).gettext("Saved as version %(v)s.") % {"v": rule.version})
        return Redirect(f"/console/split-rules?subject={rule.subject}", status_code=303)
