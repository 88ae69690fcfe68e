"""The risk engine: tenant-local windows, give-back, all-or-nothing counting, lockouts, device flags,
refusals surviving the caller's rollback; on the database counters and (when configured) on Redis."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select

from core.db.context import tenant_context
from core.events.models import Event
from core.risk import engine
from core.risk.gate import RiskRefused, RiskSubject, guard
from core.risk.models import RiskFlag, RiskLockout, RiskRefusal
from core.risk.services import DEFAULT_LIMITS, get_rules
from core.settings import Settings
from tests.integration.risk.helpers import Clock, attempt, db_counters, fail_once, set_rules

UTC = dt.UTC


@pytest.fixture(params=["db", "redis"])
def store(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings for the counter store under test: the database, or Redis when the run has one."""
    if request.param == "redis":
        if not settings.redis_url:
            pytest.skip("needs KAQUAN_TEST_REDIS_URL")
        return settings
    return db_counters(settings)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(dt.datetime(2026, 5, 20, 4, 0, tzinfo=UTC))
    monkeypatch.setattr(engine, "_now", c)
    return c


async def test_a_new_tenant_sees_the_default_rules(kernel, make_tenant):
    t = await make_tenant()
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            rules = await get_rules(db)
    assert rules.customized is False and rules.timezone == "Asia/Shanghai"
    assert tuple(rules.limits) == DEFAULT_LIMITS
    assert rules.velocity.failure_limit == 10 and rules.velocity.lockout_minutes == 15


async def test_member_month_limit_resets_at_tenant_local_month_end(kernel, make_tenant, store, clock):
    t = await make_tenant()
    await set_rules(kernel, t.id, ("grant", "member", "month", 5))
    member = RiskSubject(member_id=uuid.uuid4())
    clock.now = dt.datetime(2026, 1, 31, 15, 59, 0, tzinfo=UTC)  # 23:59 on 31 Jan in Shanghai
    assert [await attempt(kernel, store, t.id, "grant", member) for _ in range(5)] == [None] * 5
    assert await attempt(kernel, store, t.id, "grant", member) == "limit_member_month"
    clock.now = dt.datetime(2026, 1, 31, 16, 0, 0, tzinfo=UTC)  # 00:00 on 1 Feb in Shanghai: a new month
    assert await attempt(kernel, store, t.id, "grant", member, quantity=5) is None
    assert await attempt(kernel, store, t.id, "grant", member) == "limit_member_month"
    clock.now = dt.datetime(2026, 2, 28, 15, 59, 59, tzinfo=UTC)  # still February in Shanghai
    assert await attempt(kernel, store, t.id, "grant", member) == "limit_member_month"


async def test_ip_day_limit_follows_tenant_midnight_not_utc(kernel, make_tenant, store, clock):
    t = await make_tenant()
    await set_rules(kernel, t.id, ("claim", "ip", "day", 3))
    ip = RiskSubject(ip="203.0.113.7", member_id=uuid.uuid4())
    clock.now = dt.datetime(2026, 3, 10, 15, 59, 0, tzinfo=UTC)  # 23:59 local
    for _ in range(3):
        assert await attempt(kernel, store, t.id, "claim", ip) is None
    with tenant_context(t.id), pytest.raises(RiskRefused) as exc:
        async with kernel.db.transaction() as db, guard(db, store, "claim", ip):
            raise AssertionError("the fourth claim of the local day must be refused")
    await engine.settle()
    assert exc.value.status == 429 and exc.value.code == "risk_refused"
    assert exc.value.extra["reason"] == "limit_ip_day" and exc.value.extra["limit"] == 3
    assert exc.value.headers["Retry-After"] == "60"  # the local day ends in a minute
    clock.now = dt.datetime(2026, 3, 10, 16, 0, 0, tzinfo=UTC)  # local midnight
    assert await attempt(kernel, store, t.id, "claim", ip) is None
    clock.now = dt.datetime(2026, 3, 11, 0, 30, 0, tzinfo=UTC)  # UTC midnight passed; local day has not
    for _ in range(2):
        assert await attempt(kernel, store, t.id, "claim", ip) is None
    assert await attempt(kernel, store, t.id, "claim", ip) == "limit_ip_day"
    # another IP and another action are not counted together
    assert await attempt(kernel, store, t.id, "claim", RiskSubject(ip="203.0.113.8")) is None
    assert await attempt(kernel, store, t.id, "grant", ip) is None


async def test_units_come_back_when_the_guarded_block_fails(kernel, make_tenant, store, clock):
    t = await make_tenant()
    await set_rules(kernel, t.id, ("grant", "member", "day", 2))
    member = RiskSubject(member_id=uuid.uuid4())
    for _ in range(4):
        assert await attempt(kernel, store, t.id, "grant", member, fail=True) == "failed"
    assert await attempt(kernel, store, t.id, "grant", member, quantity=2) is None
    assert await attempt(kernel, store, t.id, "grant", member) == "limit_member_day"


async def test_counting_is_all_or_nothing_across_rules(kernel, make_tenant, store, clock):
    t = await make_tenant()
    await set_rules(kernel, t.id, ("grant", "member", "month", 5), ("grant", "client", "day", 3))
    client = uuid.uuid4()
    a = RiskSubject(member_id=uuid.uuid4(), client_id=client)
    b = RiskSubject(member_id=uuid.uuid4(), client_id=client)
    assert await attempt(kernel, store, t.id, "grant", a, quantity=3) is None
    assert await attempt(kernel, store, t.id, "grant", b) == "limit_client_day"
    a_other_client = RiskSubject(member_id=a.member_id, client_id=uuid.uuid4())
    assert await attempt(kernel, store, t.id, "grant", a_other_client, quantity=3) == "limit_member_month"
    # the refused attempts counted nothing for member a: two more fit under its month limit
    assert await attempt(kernel, store, t.id, "grant", a_other_client, quantity=2) is None
    assert await attempt(kernel, store, t.id, "grant", a_other_client) == "limit_member_month"


async def test_inactive_rules_and_unknown_dimensions_count_nothing(kernel, make_tenant, store, clock):
    t = await make_tenant()
    from core.risk.schemas import LimitRule, RuleSet
    from core.risk.services import put_rules

    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            await put_rules(
                db,
                RuleSet(
                    [
                        LimitRule("grant", "member", "day", 1, active=False),
                        LimitRule("grant", "device", "day", 1),
                    ]
                ),
            )
    member = RiskSubject(member_id=uuid.uuid4())  # no device: the device rule does not apply
    assert [await attempt(kernel, store, t.id, "grant", member) for _ in range(3)] == [None] * 3


async def test_refusals_survive_the_callers_rollback(kernel, make_tenant, store, clock):
    t = await make_tenant()
    await set_rules(kernel, t.id, ("transfer", "phone", "day", 1))
    subject = RiskSubject(phone_digest="ab" * 32, client_id=uuid.uuid4(), member_id=uuid.uuid4())
    assert await attempt(kernel, store, t.id, "transfer", subject) is None
    assert await attempt(kernel, store, t.id, "transfer", subject) == "limit_phone_day"
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            rows = list((await db.execute(select(RiskRefusal))).scalars())
    assert len(rows) == 1
    r = rows[0]
    assert (r.action, r.reason, r.dimension, r.max_units) == ("transfer", "limit_phone_day", "phone", 1)
    assert r.subject_masked == "phone#abababab" and r.member_id == subject.member_id
    assert r.occurred_at == clock.now


async def test_repeated_failures_lock_out_redemption_until_lifted_or_over(kernel, make_tenant, store, clock):
    t = await make_tenant()
    await set_rules(kernel, t.id, failure_limit=3, window_minutes=10, lockout_minutes=15)
    guesser = RiskSubject(ip="198.51.100.20", device_id="dev-guesser-0001")
    for _ in range(2):
        await fail_once(kernel, store, t.id, guesser)
    assert await attempt(kernel, store, t.id, "redeem", guesser) is None
    clock.now += dt.timedelta(minutes=11)  # the first two fell out of the window
    await fail_once(kernel, store, t.id, guesser)
    await fail_once(kernel, store, t.id, guesser)
    assert await attempt(kernel, store, t.id, "redeem", guesser) is None
    await fail_once(kernel, store, t.id, guesser)  # three within ten minutes: locked out
    assert await attempt(kernel, store, t.id, "redeem", guesser) == "locked_out"
    assert await attempt(kernel, store, t.id, "redeem", RiskSubject(ip="198.51.100.20")) == "locked_out"
    assert await attempt(kernel, store, t.id, "redeem", RiskSubject(ip="198.51.100.21")) is None
    assert await attempt(kernel, store, t.id, "grant", guesser) is None  # lockouts guard redemption only
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            locks = list((await db.execute(select(RiskLockout))).scalars())
    assert sorted(lo.dimension for lo in locks) == ["device", "ip"]  # survived the rolled-back requests
    assert all(lo.failures == 3 and lo.locked_until == clock.now + dt.timedelta(minutes=15) for lo in locks)
    clock.now += dt.timedelta(minutes=15, seconds=1)
    assert await attempt(kernel, store, t.id, "redeem", guesser) is None


async def test_one_device_many_members_is_flagged_once_a_day(kernel, make_tenant, store, clock):
    t = await make_tenant()
    await set_rules(kernel, t.id, device_member_limit=2)
    device = "shared-phone-7788"
    members = [uuid.uuid4() for _ in range(4)]
    for m in members[:2] + members[:2]:  # the same two members again: still two distinct
        assert await attempt(kernel, store, t.id, "claim", RiskSubject(member_id=m, device_id=device)) is None
    for m in members[2:]:
        assert await attempt(kernel, store, t.id, "claim", RiskSubject(member_id=m, device_id=device)) is None
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            flags = list((await db.execute(select(RiskFlag))).scalars())
            events = (
                await db.execute(select(func.count()).select_from(Event).where(Event.type == "risk.flagged"))
            ).scalar_one()
    assert len(flags) == 1 and events == 1
    f = flags[0]
    assert (f.kind, f.member_count, f.day, f.subject_masked) == (
        "device_many_members",
        3,
        "2026-05-20",
        "shar…88",
    )
    clock.now += dt.timedelta(days=1)
    for m in members[:3]:
        await attempt(kernel, store, t.id, "claim", RiskSubject(member_id=m, device_id=device))
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            assert (await db.execute(select(func.count()).select_from(RiskFlag))).scalar_one() == 2


async def test_purge_deletes_only_what_no_longer_counts(kernel, settings, make_tenant, clock):
    from core.risk.counters import purge_expired, zone
    from core.risk.models import RiskCounter, RiskDeviceMember

    t = await make_tenant()
    store = db_counters(settings)
    await set_rules(kernel, t.id, ("grant", "member", "day", 1), ("grant", "member", "month", 10))
    member = RiskSubject(member_id=uuid.uuid4(), device_id="kiosk-000001")
    assert await attempt(kernel, store, t.id, "grant", member) is None
    clock.now += dt.timedelta(days=2)
    assert await attempt(kernel, store, t.id, "grant", member) is None
    with tenant_context(t.id):
        async with kernel.db.transaction() as db:
            deleted = await purge_expired(db, t.id, clock.now, zone("Asia/Shanghai"))
            keys = sorted((await db.execute(select(RiskCounter.key))).scalars())
            days = list((await db.execute(select(RiskDeviceMember.day))).scalars())
    assert deleted == 2  # the first day's counter and device sighting; the month counter still counts
    assert [k.split(":")[2:4] for k in keys] == [["day", "2026-05-22"], ["month", "2026-05"]]
    assert days == ["2026-05-22"]
    assert await attempt(kernel, store, t.id, "grant", member) == "limit_member_day"
