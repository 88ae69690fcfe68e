"""Splits API: ``/api/v1/split-rules`` (versions, create, rule in force, preview) and
``/api/v1/split-ledger`` (rows, balances per party and period)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.errors import FieldError, NotFound, ValidationFailed
from core.splits import balances, rules
from core.splits.engine import LineFacts
from core.splits.models import SplitEntry, SplitRule
from core.splits.preview import preview
from core.splits.schemas import (
    BalanceOut,
    BalancesOut,
    EntryOut,
    EntryPage,
    InForceOut,
    PreviewIn,
    PreviewOut,
    SplitRuleIn,
    SplitRuleOut,
    SplitRulePage,
)
from tenants.guards import principal_of, provide_db, require_scope

MAX_PAGE = 200


def rule_out(rule: SplitRule) -> SplitRuleOut:
    return SplitRuleOut(id=rule.id, subject=rule.subject, version=rule.version, terms=rule.terms,
                        valid_from=rule.valid_from, note=rule.note, created_by=rule.created_by,
                        created_at=rule.created_at)


def entry_out(e: SplitEntry) -> EntryOut:
    return EntryOut(id=e.id, account_id=e.account_id, line_id=e.line_id, order_id=e.order_id, rule_id=e.rule_id,
                    event=e.event, event_ref=e.event_ref, component=e.component, party=e.party,
                    party_ref=e.party_ref, amount_fen=e.amount_fen, period=e.period, occurred_at=e.occurred_at,
                    created_at=e.created_at)


def _by(request: Request[Any, Any, Any]) -> str:
    p = principal_of(request)
    return f"{p.kind}:{p.subject_id}" if p is not None else ""


class SplitRuleController(Controller):
    path = "/api/v1/split-rules"
    tags = ["splits"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("splits:read")])
    async def list_rules(
        self, db: AsyncSession, subject: Annotated[str | None, Parameter(max_length=120)] = None,
        cursor: uuid.UUID | None = None, limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> SplitRulePage:
        """Rule versions newest first; ``subject`` (``connector:<id>``, ``account:<id>``, ``listing:<id>``)
        gives the versions of one subject."""
        page = await rules.list_versions(db, subject=subject, cursor=cursor, limit=limit)
        return SplitRulePage([rule_out(r) for r in page.items], page.next_cursor)

    @post("/", status_code=201, guards=[require_scope("splits:write")])
    async def create_rule(self, request: Request[Any, Any, Any], db: AsyncSession, data: SplitRuleIn) -> SplitRuleOut:
        """A new version of a subject's rule (in force from ``valid_from``, default now)."""
        rule = await rules.create_version(db, data.subject, data.terms, valid_from=data.valid_from,
                                          note=data.note, by=_by(request))
        return rule_out(rule)

    @get("/presets", guards=[require_scope("splits:read")])
    async def presets(self) -> dict[str, dict[str, Any]]:
        """Starting points (seed 004): e-commerce 10% / 15% of the sale, local life 5% of the redeemed value,
        social per conversion with a referrer cash-back and a KOL fee; terms to edit and save as a version."""
        return {name: rules.terms_snapshot(terms) for name, terms in rules.PRESETS.items()}

    @get("/in-force", guards=[require_scope("splits:read")])
    async def in_force(
        self, db: AsyncSession, account_id: Annotated[uuid.UUID, Parameter(query="account")],
        listing_id: Annotated[uuid.UUID | None, Parameter(query="listing")] = None, at: dt.datetime | None = None,
    ) -> InForceOut:
        """The rule an order of the account (and listing) placed at ``at`` (default now) gets."""
        connector = await db.scalar(select(ConnectorAccount.connector_id).where(ConnectorAccount.id == account_id))
        if connector is None:
            raise NotFound("Channel account not found", "渠道账号不存在", code="connector_account_not_found")
        if at is not None and at.tzinfo is None:
            raise ValidationFailed("at needs a time zone", "时间须带时区",
                                   errors=[FieldError(field="at", message="time zone", code="naive_time")])
        rule_id, terms = await rules.rule_in_force(db, connector, account_id, listing_id, at or utcnow())
        rule = await rules.get_rule(db, rule_id) if rule_id is not None else None
        subject = rule.subject if rule else (f"listing:{listing_id}" if terms.components else "")
        return InForceOut(rule_id=rule_id, subject=subject, version=rule.version if rule else None,
                          terms=rules.terms_snapshot(terms))

    @post("/preview", status_code=200, guards=[require_scope("splits:read")])
    async def preview_rule(self, db: AsyncSession, data: PreviewIn) -> PreviewOut:
        """The rows each event of an example line would write under ``terms`` (or the saved ``rule_id``)."""
        if data.terms is not None:
            terms = rules.validate_terms(data.terms)
        elif data.rule_id is not None:
            terms = rules.terms_from_snapshot((await rules.get_rule(db, data.rule_id)).terms)
        else:
            raise ValidationFailed("Give terms or rule_id", "请提供分账条款或规则版本",
                                   errors=[FieldError(field="terms", message="required", code="required")])
        facts = LineFacts(gross_fen=data.gross_fen, quantity=data.quantity, first_line=data.first_line,
                          referrer=data.referrer, kol=data.kol, referrer_count=data.referrer_count,
                          kol_count=data.kol_count)
        return preview(terms, facts, data.refund_units)

    @get("/{rule_id:uuid}", guards=[require_scope("splits:read")])
    async def get_rule(self, db: AsyncSession, rule_id: uuid.UUID) -> SplitRuleOut:
        """One rule version."""
        return rule_out(await rules.get_rule(db, rule_id))


class SplitLedgerController(Controller):
    path = "/api/v1/split-ledger"
    tags = ["splits"]
    dependencies = {"db": Provide(provide_db)}

    @get("/", guards=[require_scope("splits:read")])
    async def list_entries(
        self, db: AsyncSession,
        account_id: Annotated[uuid.UUID | None, Parameter(query="account")] = None,
        period: Annotated[str | None, Parameter(max_length=7)] = None,
        line_id: Annotated[uuid.UUID | None, Parameter(query="line")] = None,
        order_id: Annotated[uuid.UUID | None, Parameter(query="order")] = None,
        event: Annotated[str | None, Parameter(max_length=20)] = None,
        cursor: uuid.UUID | None = None, limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> EntryPage:
        """Ledger rows newest first, by ``account``, ``period`` (YYYY-MM), ``line``, ``order`` and ``event``."""
        page = await balances.list_entries(db, account_id=account_id, period=period, line_id=line_id,
                                           order_id=order_id, event=event, cursor=cursor, limit=limit)
        return EntryPage([entry_out(e) for e in page.items], page.next_cursor)

    @get("/balances", guards=[require_scope("splits:read")])
    async def balances(
        self, db: AsyncSession,
        account_id: Annotated[uuid.UUID | None, Parameter(query="account")] = None,
        period: Annotated[str | None, Parameter(max_length=7)] = None,
        line_id: Annotated[uuid.UUID | None, Parameter(query="line")] = None,
    ) -> BalancesOut:
        """Sums of rows per account, period and party; with ``line``, that line's total per party."""
        items = await balances.period_balances(db, account_id=account_id, period=period)
        line = await balances.line_balances(db, line_id) if line_id is not None else None
        return BalancesOut(items=[BalanceOut(account_id=b.account_id, period=b.period, party=b.party,
                                             amount_fen=b.amount_fen, rows=b.rows) for b in items], line=line)
