"""What the console's split-rule pages show: every subject with its versions and the rule in force now,
and the subjects a new version can be given (connector kinds, accounts, listings)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.channels.models import Listing
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.splits.balances import period_balances
from core.splits.models import SplitRule
from core.splits.rules import latest_in_force, legacy_terms, terms_from_snapshot
from core.splits.terms import SplitTerms

__all__ = ["BalanceRow", "Choice", "SubjectRow", "balance_rows", "subject_choices", "subject_label", "subject_rows"]

MAX_SUBJECTS = 500


@dataclass(frozen=True)
class Choice:
    """A subject a version can be created for."""

    subject: str
    label: str


@dataclass
class SubjectRow:
    """A subject, its label, its versions newest first and the version in force now (``None``: none yet)."""

    subject: str
    label: str
    versions: list[SplitRule] = field(default_factory=list)
    current: SplitRule | None = None
    legacy: SplitTerms | None = None

    def terms_of(self, rule: SplitRule) -> SplitTerms | None:
        return None if rule.terms is None else terms_from_snapshot(rule.terms)


async def subject_choices(session: AsyncSession) -> tuple[list[Choice], list[Choice], list[Choice]]:
    """(connector kinds, accounts, listings) of the tenant's sales channels."""
    accounts = list((await session.execute(
        select(ConnectorAccount.id, ConnectorAccount.name, ConnectorAccount.connector_id)
        .where(ConnectorAccount.kind == "sales_channel").order_by(ConnectorAccount.name)
    )).all())
    connectors = sorted({a.connector_id for a in accounts})
    names = {a.id: a.name for a in accounts}
    listings = (await session.execute(
        select(Listing.id, Listing.sku, Listing.title, Listing.account_id).order_by(Listing.sku).limit(MAX_SUBJECTS)
    )).all()
    return (
        [Choice(f"connector:{c}", c) for c in connectors],
        [Choice(f"account:{a.id}", f"{a.name} ({a.connector_id})") for a in accounts],
        [Choice(f"listing:{li.id}", f"{li.sku} · {li.title} · {names.get(li.account_id, '')}") for li in listings],
    )


async def subject_label(session: AsyncSession, subject: str) -> str:
    """What a person calls a subject (account name, listing SKU and title, connector id)."""
    kind, _, value = subject.partition(":")
    try:
        if kind == "account":
            found = (await session.execute(select(ConnectorAccount.name, ConnectorAccount.connector_id)
                                           .where(ConnectorAccount.id == uuid.UUID(value)))).first()
            return f"{found.name} ({found.connector_id})" if found else subject
        if kind == "listing":
            li = (await session.execute(select(Listing.sku, Listing.title)
                                        .where(Listing.id == uuid.UUID(value)))).first()
            return f"{li.sku} · {li.title}" if li else subject
    except ValueError:
        return subject
    return value


async def subject_rows(session: AsyncSession) -> list[SubjectRow]:
    """Every subject with versions (connector, then account, then listing), and listings whose legacy rule
    applies because they have no version."""
    now = utcnow()
    rules = list((await session.execute(
        select(SplitRule).order_by(SplitRule.subject, SplitRule.version.desc()).limit(MAX_SUBJECTS * 5)
    )).scalars())
    rows: dict[str, SubjectRow] = {}
    for rule in rules:
        row = rows.get(rule.subject)
        if row is None:
            row = rows[rule.subject] = SubjectRow(rule.subject, await subject_label(session, rule.subject))
        row.versions.append(rule)
    for row in rows.values():
        row.current = latest_in_force(row.versions, now)
    legacy = (await session.execute(select(Listing.id, Listing.sku, Listing.title, Listing.split_rule)
                                    .limit(MAX_SUBJECTS))).all()
    for li in legacy:
        subject = f"listing:{li.id}"
        found = legacy_terms(li.split_rule) if isinstance(li.split_rule, dict) else None
        if found is not None and subject not in rows:
            rows[subject] = SubjectRow(subject, f"{li.sku} · {li.title}", legacy=found)
    order = {"connector": 0, "account": 1, "listing": 2}
    return sorted(rows.values(), key=lambda r: (order.get(r.subject.partition(":")[0], 3), r.label))


@dataclass
class BalanceRow:
    """One account's ledger balances of one period, per party."""

    account_id: uuid.UUID
    account: str
    period: str
    parties: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parties.values())


async def balance_rows(session: AsyncSession, limit: int = 24) -> list[BalanceRow]:
    """The ledger's balances per account and period (newest periods first), per party."""
    names = dict((await session.execute(select(ConnectorAccount.id, ConnectorAccount.name))).all())
    rows: dict[tuple[uuid.UUID, str], BalanceRow] = {}
    for b in await period_balances(session):
        key = (b.account_id, b.period)
        if key not in rows:
            if len(rows) >= limit:
                break
            rows[key] = BalanceRow(b.account_id, names.get(b.account_id, str(b.account_id)), b.period)
        rows[key].parties[b.party] = b.amount_fen
    return list(rows.values())
