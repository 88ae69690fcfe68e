"""Split rules: versions per subject, the rule in force for an order, presets, and legacy listing rules.

A subject is ``connector:<connector id>`` (every account of that channel kind), ``account:<account id>`` or
``listing:<listing id>``. :func:`rule_in_force` picks the most specific subject with a version in force at
the order's time (``valid_from <= at``; the latest ``valid_from``, then the highest version). A version
whose terms are ``None`` stops overriding: the next broader level applies.

Legacy listing rules (``Listing.split_rule`` = ``{"channel_bp": N, "platform_bp": M}``, written by the
listing API) are read as the listing's rule while the listing has no rule version of its own; they are not
migrated, so the listing API's field keeps working and a version created for the listing supersedes it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.channels.models import Listing
from core.connectors.models import ConnectorAccount
from core.db.base import utcnow
from core.db.paging import Page, keyset_page
from core.errors import FieldError, NotFound, ValidationFailed
from core.splits.models import SplitRule
from core.splits.terms import SplitComponent, SplitTerms

__all__ = [
    "PRESETS",
    "create_version",
    "get_rule",
    "latest_in_force",
    "legacy_terms",
    "list_versions",
    "parse_subject",
    "rule_in_force",
    "terms_from_snapshot",
    "terms_snapshot",
    "validate_terms",
]

_CONNECTOR = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")
SUBJECT_KINDS = ("connector", "account", "listing")

#: Starting points offered in the console (seed 004): e-commerce 10–15% of the sale, local life 5% of the
#: redeemed value, social pay-per-conversion with a 5% cash-back to a sharer who brings three buyers and a
#: KOL fee. Every amount can be edited before the version is saved.
PRESETS: dict[str, SplitTerms] = {
    "sale_10": SplitTerms(components=[
        SplitComponent(party="channel", basis="sale", bp=1000, label="平台抽成 10%")]),
    "sale_15": SplitTerms(components=[
        SplitComponent(party="channel", basis="sale", bp=1500, label="平台抽成 15%")]),
    "redeemed_5": SplitTerms(components=[
        SplitComponent(party="channel", basis="redeemed", bp=500, label="按核销金额 5%")]),
    "conversion_sharer_kol": SplitTerms(components=[
        SplitComponent(party="channel", basis="conversion", fixed_fen=100, label="按转化付费"),
        SplitComponent(party="referrer", basis="conversion", bp=500, min_referrals=3, label="分享3人返5%"),
        SplitComponent(party="kol", basis="conversion", bp=1000, label="KOL 推广费"),
    ]),
}


def _invalid(field: str, en: str, zh: str, code: str = "invalid") -> ValidationFailed:
    return ValidationFailed(en, zh, errors=[FieldError(field=field, message=en, code=code)])


def validate_terms(terms: SplitTerms | dict[str, Any]) -> SplitTerms:
    """Terms checked beyond their types: bounds in order, each component charging something, a basis the
    party can have. ``422 validation_failed`` with the component's field."""
    if isinstance(terms, dict):
        try:
            terms = msgspec.convert(terms, SplitTerms, strict=True)
        except msgspec.ValidationError as exc:
            raise _invalid("terms", f"Invalid split terms: {exc}", f"分账规则无效：{exc}") from None
    for i, c in enumerate(terms.components):
        where = f"terms.components[{i}]"
        if c.min_fen is not None and c.max_fen is not None and c.min_fen > c.max_fen:
            raise _invalid(f"{where}.min_fen", f"Component {i + 1}: the minimum is above the maximum",
                           f"第 {i + 1} 项：下限高于上限", "min_above_max")
        if c.bp == 0 and c.fixed_fen == 0 and not c.min_fen:
            raise _invalid(f"{where}.bp", f"Component {i + 1} charges nothing (no rate, fixed fee or minimum)",
                           f"第 {i + 1} 项不收取任何金额（无比例、固定费用或下限）", "charges_nothing")
        if c.min_referrals and c.basis != "conversion":
            raise _invalid(f"{where}.min_referrals",
                           f"Component {i + 1}: a minimum of referrals applies to the conversion basis only",
                           f"第 {i + 1} 项：推荐人数门槛只适用于按转化计费", "referrals_need_conversion")
    return terms


def parse_subject(subject: str) -> tuple[str, str]:
    """(kind, value) of a subject; ``422`` when malformed."""
    kind, _, value = subject.partition(":")
    if kind not in SUBJECT_KINDS or not value:
        raise _invalid("subject", "The subject must be connector:<id>, account:<uuid> or listing:<uuid>",
                       "适用对象须为 connector:<渠道>、account:<账号 ID> 或 listing:<商品上架 ID>")
    if kind == "connector":
        if not _CONNECTOR.match(value):
            raise _invalid("subject", f"Unknown connector id {value!r}", f"渠道标识 {value!r} 无效")
        return kind, value
    try:
        return kind, str(uuid.UUID(value))
    except ValueError:
        raise _invalid("subject", f"{value!r} is not an id", f"{value!r} 不是有效的 ID") from None


async def _check_subject_exists(session: AsyncSession, kind: str, value: str) -> None:
    if kind == "account":
        found = await session.scalar(select(ConnectorAccount.id).where(ConnectorAccount.id == uuid.UUID(value)))
    elif kind == "listing":
        found = await session.scalar(select(Listing.id).where(Listing.id == uuid.UUID(value)))
    else:
        return
    if found is None:
        raise NotFound(f"No {kind} {value}", f"找不到{'渠道账号' if kind == 'account' else '商品上架'} {value}",
                       code="split_subject_not_found")


def terms_snapshot(terms: SplitTerms) -> dict[str, Any]:
    """Terms as the JSON stored on a rule and snapshotted on an order line."""
    out: dict[str, Any] = msgspec.to_builtins(terms)
    return out


def legacy_terms(rule: dict[str, Any]) -> SplitTerms | None:
    """Terms of a legacy listing rule ``{"channel_bp": N, "platform_bp": M}`` (``None`` when empty)."""
    comps = []
    for party in ("channel", "platform"):
        bp = rule.get(f"{party}_bp")
        if isinstance(bp, int) and not isinstance(bp, bool) and 0 < bp <= 10_000:
            comps.append(SplitComponent(party=party, basis="sale", bp=bp))
    return SplitTerms(components=comps) if comps else None


def terms_from_snapshot(snapshot: dict[str, Any] | None) -> SplitTerms:
    """The terms an order line recorded (new form, or a legacy listing rule); empty terms when none."""
    if not snapshot:
        return SplitTerms()
    if "components" in snapshot or "remainder_to" in snapshot:
        return msgspec.convert(snapshot, SplitTerms)
    return legacy_terms(snapshot) or SplitTerms()


async def create_version(
    session: AsyncSession, subject: str, terms: SplitTerms | None, *, valid_from: dt.datetime | None = None,
    note: str = "", by: str = "",
) -> SplitRule:
    """A new version of the subject's rule (``terms`` ``None``: stop overriding the broader level)."""
    kind, value = parse_subject(subject)
    subject = f"{kind}:{value}"
    await _check_subject_exists(session, kind, value)
    if terms is not None:
        terms = validate_terms(terms)
    if valid_from is not None and valid_from.tzinfo is None:
        raise _invalid("valid_from", "valid_from needs a time zone", "生效时间须带时区")
    latest = await session.scalar(select(func.max(SplitRule.version)).where(SplitRule.subject == subject))
    rule = SplitRule(subject=subject, version=(latest or 0) + 1,
                     terms=None if terms is None else terms_snapshot(terms),
                     valid_from=valid_from or utcnow(), note=note[:200], created_by=by[:200])
    session.add(rule)
    await session.flush()
    return rule


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> SplitRule:
    """One rule version; ``404 split_rule_not_found``."""
    rule = await session.scalar(select(SplitRule).where(SplitRule.id == rule_id))
    if rule is None:
        raise NotFound("Split rule not found", "分账规则不存在", code="split_rule_not_found")
    return rule


async def list_versions(
    session: AsyncSession, *, subject: str | None = None, cursor: uuid.UUID | None = None, limit: int = 50
) -> Page[SplitRule, uuid.UUID]:
    """Rule versions newest first, optionally of one subject."""
    stmt = select(SplitRule)
    if subject:
        kind, value = parse_subject(subject)
        stmt = stmt.where(SplitRule.subject == f"{kind}:{value}")
    return await keyset_page(session, stmt, SplitRule.id, cursor=cursor, limit=limit)


class Version(Protocol):
    """What choosing the version in force needs of a rule version."""

    valid_from: dt.datetime
    version: int


V = TypeVar("V", bound=Version)


def latest_in_force(versions: Iterable[V], at: dt.datetime) -> V | None:
    """The version of one subject in force at ``at``: the latest ``valid_from`` at or before it, then the
    highest version (what :func:`rule_in_force` asks the database for)."""
    best: V | None = None
    for v in versions:
        if v.valid_from <= at and (best is None or (v.valid_from, v.version) > (best.valid_from, best.version)):
            best = v
    return best


async def rule_in_force(
    session: AsyncSession, connector_id: str, account_id: uuid.UUID, listing_id: uuid.UUID | None,
    at: dt.datetime,
) -> tuple[uuid.UUID | None, SplitTerms]:
    """(rule version id, terms) in force at ``at``: listing, then account, then connector; a listing's
    legacy rule when it has no version; empty terms (everything to the tenant) when nothing applies."""
    subjects = [f"account:{account_id}", f"connector:{connector_id}"]
    if listing_id is not None:
        subjects.insert(0, f"listing:{listing_id}")
    started = list((await session.execute(
        select(SplitRule).where(SplitRule.subject.in_(subjects), SplitRule.valid_from <= at)
    )).scalars())
    for subject in subjects:
        rule = latest_in_force((r for r in started if r.subject == subject), at)
        if rule is None and subject.startswith("listing:"):
            legacy = await session.scalar(select(Listing.split_rule).where(Listing.id == listing_id))
            found = legacy_terms(legacy) if isinstance(legacy, dict) else None
            if found is not None:
                return None, found
        elif rule is not None and rule.terms is not None:
            return rule.id, terms_from_snapshot(rule.terms)
    return None, SplitTerms()
