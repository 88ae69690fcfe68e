"""What PostgreSQL row-level security costs on a tenant query.

Run: ``.venv/bin/python bench/rls_cost.py [--tenants 20] [--rows 100000] [--seconds 1.5] [--concurrency 8]``

A throwaway database is migrated like production (RLS enabled and forced on every tenant table, the app
role ``kaquan_app`` without BYPASSRLS). ``--rows`` audit events are inserted across ``--tenants`` tenants
as the owner. Then the same tenant queries, with the same explicit ``tenant_id = $1`` predicate the ORM
adds, run in short transactions:

* ``postgres`` (superuser: RLS is never applied), plain ``BEGIN; query; COMMIT``;
* ``postgres`` with the per-transaction ``set_config('app.tenant_id', …)`` our sessions always send
  (so the only remaining difference to the next row is the policy);
* ``kaquan_app`` with ``set_config``: RLS applied (what production does);
* ``kaquan_app`` with ``set_config`` and *no* explicit predicate (RLS alone picks the rows; informative,
  the ORM never relies on it, raw SQL and reports might).

This runs once with the policy the migrations install (``core.db.rls.POLICY_EXPR``) and then, in the same
throwaway database, with two alternative spellings of the same rule on ``audit_events``:

* ``initplan``: each ``current_setting`` wrapped in a scalar sub-select, so PostgreSQL evaluates it once
  per statement (an InitPlan) instead of once per row;
* ``range``: ``tenant_id BETWEEN lo AND hi`` with both bounds from InitPlans (the tenant id twice, or the
  whole uuid range under the named bypass), which PostgreSQL can use as an index condition.

Two figures per variant. **Server ms**: the median execution time reported by ``EXPLAIN (ANALYZE)``,
variants taking turns sample by sample: the query's own cost inside PostgreSQL, untouched by the client
and the network and steady on a busy machine. This is the headline: RLS cost = app-role row against the
"superuser + set_config" row (same statements, policy not applied). **ops/s**: short transactions on
several connections in interleaved timed rounds, the end-to-end rate (client and round trips included),
compared with the same row.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field

import asyncpg
import msgspec
from _pg import ADMIN_URL, BenchDatabase, asyncpg_dsn, machine_line, throwaway_database

from core.db.ids import new_id
from core.db.rls import POLICY_EXPR, POLICY_NAME

QUERIES: dict[str, tuple[str, str]] = {
    # name: (with the explicit predicate the ORM adds, RLS-only form)
    "count": (
        "select count(*) from audit_events where tenant_id = $1",
        "select count(*) from audit_events",
    ),
    "page": (
        "select id, txid, occurred_at, action, object_id, data from audit_events "
        "where tenant_id = $1 order by id desc limit 50",
        "select id, txid, occurred_at, action, object_id, data from audit_events order by id desc limit 50",
    ),
}

_TID = "nullif(current_setting('app.tenant_id', true), '')::uuid"
_BYPASS = "current_setting('app.bypass_rls', true) = 'on'"
_MIN_UUID, _MAX_UUID = (
    "'00000000-0000-0000-0000-000000000000'::uuid",
    "'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid",
)
POLICIES: dict[str, str] = {
    "migrated": POLICY_EXPR,
    "initplan": f"tenant_id = (select {_TID}) or (select {_BYPASS})",
    "range": (
        f"tenant_id between (select case when {_BYPASS} then {_MIN_UUID} else {_TID} end) "
        f"and (select case when {_BYPASS} then {_MAX_UUID} else {_TID} end)"
    ),
}


@dataclass
class Variant:
    """One way of running a query: which role, whether to set the RLS context, which SQL form."""

    label: str
    role: str  # "owner" | "app"
    set_context: bool
    explicit_predicate: bool
    ops: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def reset(self) -> None:
        self.ops, self.seconds, self.latencies = 0, 0.0, []


def make_variants() -> list[Variant]:
    return [
        Variant("postgres superuser, no RLS", "owner", set_context=False, explicit_predicate=True),
        Variant(
            "postgres superuser + set_config, no RLS", "owner", set_context=True, explicit_predicate=True
        ),
        Variant("kaquan_app + set_config, RLS applied", "app", set_context=True, explicit_predicate=True),
        Variant(
            "kaquan_app, RLS only (no tenant_id predicate)", "app", set_context=True, explicit_predicate=False
        ),
    ]


async def seed(owner_dsn: str, tenants: int, rows: int) -> list[uuid.UUID]:
    """Insert a plan, ``tenants`` tenants and ``rows`` audit events (COPY, as the owner)."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        plan_id = new_id()
        await conn.execute(
            "insert into plans (id, code, name, max_users, max_api_clients, requests_per_minute, "
            "max_stored_codes, allowed_connectors) values ($1, 'bench', 'Bench', 5, 2, 600, 1000, '[]')",
            plan_id,
        )
        ids = [new_id() for _ in range(tenants)]
        await conn.executemany(
            "insert into tenants (id, slug, name, plan_id, status, timezone, currency, owner_email, locale) "
            "values ($1, $2, $3, $4, 'active', 'Asia/Shanghai', 'CNY', $5, 'zh-CN')",
            [
                (t, f"bench-{i:03d}", f"Bench {i}", plan_id, f"owner@bench-{i}.example.com")
                for i, t in enumerate(ids)
            ],
        )
        per = rows // tenants
        now = dt.datetime.now(dt.UTC)
        data = msgspec.json.encode({"sku": "VIP-MONTH", "qty": 1}).decode()
        records = [
            (
                tid,
                new_id(),
                0,
                now,
                "user",
                "bench",
                "code.granted",
                "code",
                str(seq),
                data,
            )
            for tid in ids
            for seq in range(1, per + 1)
        ]
        await conn.copy_records_to_table(
            "audit_events",
            records=records,
            columns=[
                "tenant_id",
                "id",
                "txid",
                "occurred_at",
                "actor_type",
                "actor_id",
                "action",
                "object_type",
                "object_id",
                "data",
            ],
        )
        await conn.execute("vacuum analyze audit_events")
        return ids
    finally:
        await conn.close()


async def apply_policy(owner_dsn: str, expr: str) -> None:
    """Replace the tenant policy on ``audit_events`` (throwaway database only)."""
    conn = await asyncpg.connect(owner_dsn)
    try:
        await conn.execute(f"drop policy if exists {POLICY_NAME} on audit_events")
        await conn.execute(f"create policy {POLICY_NAME} on audit_events using ({expr}) with check ({expr})")
    finally:
        await conn.close()


async def check_isolation(app_dsn: str, tenant_ids: list[uuid.UUID], per_tenant: int) -> None:
    """The app role sees exactly one tenant's rows with a context, none without, all under the bypass."""
    conn = await asyncpg.connect(app_dsn)
    try:
        async with conn.transaction():
            await conn.execute("select set_config('app.tenant_id', $1, true)", str(tenant_ids[0]))
            seen = await conn.fetchval("select count(*) from audit_events")
        none = await conn.fetchval("select count(*) from audit_events")
        async with conn.transaction():
            await conn.execute("select set_config('app.bypass_rls', 'on', true)")
            everything = await conn.fetchval("select count(*) from audit_events")
    finally:
        await conn.close()
    if seen != per_tenant or none != 0 or everything != per_tenant * len(tenant_ids):
        raise SystemExit(f"policy is wrong: {seen} rows with a tenant, {none} without, {everything} bypassed")


async def explain(dsn: str, sql: str, tid: uuid.UUID, set_context: bool) -> str:
    """The plan's scan node and its condition/filter, to show how the policy is applied."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            if set_context:
                await conn.execute("select set_config('app.tenant_id', $1, true)", str(tid))
            args = (tid,) if "$1" in sql else ()
            rows = [r[0].strip() for r in await conn.fetch("explain (costs off) " + sql, *args)]
    finally:
        await conn.close()
    keep = [r.removeprefix("->  ") for r in rows if "Scan" in r or r.startswith(("Filter", "Index Cond"))]
    text = " / ".join(keep[:3])
    return text.replace(str(tid), "…").replace("|", "\\|")


async def server_times(
    dsns: dict[str, str],
    variants: list[Variant],
    sqls: list[str],
    tenant_ids: list[uuid.UUID],
    samples: int,
) -> list[float]:
    """Median server-side execution time (ms) of each variant, from ``EXPLAIN (ANALYZE)``.

    Immune to the client's and the network's share of a round trip; variants take turns, sample by
    sample and in a rotating order, so background load and warm caches favour none of them.
    """
    conns = {role: await asyncpg.connect(dsn) for role, dsn in dsns.items()}
    times: list[list[float]] = [[] for _ in variants]
    try:
        for i in range(samples):
            tid = tenant_ids[i % len(tenant_ids)]
            order = list(range(len(variants)))
            order = order[i % len(order) :] + order[: i % len(order)]  # rotate: no variant always goes first
            for k in order:
                v, sql = variants[k], sqls[k]
                conn = conns[v.role]
                async with conn.transaction():
                    if v.set_context:
                        await conn.execute("select set_config('app.tenant_id', $1, true)", str(tid))
                    args = (tid,) if "$1" in sql else ()
                    raw = await conn.fetchval("explain (analyze, timing off, format json) " + sql, *args)
                doc = msgspec.json.decode(raw) if isinstance(raw, str) else raw
                times[k].append(float(doc[0]["Execution Time"]))
    finally:
        for c in conns.values():
            await c.close()
    return [statistics.median(t) for t in times]


async def run_round(
    pool: asyncpg.Pool,
    variant: Variant,
    sql: str,
    tenant_ids: list[uuid.UUID],
    seconds: float,
    concurrency: int,
) -> None:
    """Short transactions over ``concurrency`` connections for ``seconds``, tenants picked at random."""
    uses_arg = "$1" in sql
    deadline = time.perf_counter() + seconds
    rng = random.Random(7)
    done = 0

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                tid = rng.choice(tenant_ids)
                t0 = time.perf_counter()
                async with conn.transaction():
                    if variant.set_context:
                        await conn.execute(
                            "select set_config('app.tenant_id', $1, true), set_config('app.bypass_rls', '', true)",
                            str(tid),
                        )
                    await (conn.fetch(sql, tid) if uses_arg else conn.fetch(sql))
                variant.latencies.append(time.perf_counter() - t0)
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    variant.seconds += time.perf_counter() - started
    variant.ops += done


async def bench_query(
    db: BenchDatabase,
    policy: str,
    name: str,
    tenant_ids: list[uuid.UUID],
    seconds: float,
    concurrency: int,
    rounds: int,
    samples: int,
) -> list[str]:
    """Every variant of one query: server-side times, then interleaved load rounds; markdown rows."""
    explicit, rls_only = QUERIES[name]
    variants = make_variants()
    dsns = {"owner": asyncpg_dsn(db.owner_url), "app": asyncpg_dsn(db.app_url)}
    pools = {
        role: await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
        for role, dsn in dsns.items()
    }
    try:
        for v in variants:  # warm-up: prepared statements, caches
            await run_round(
                pools[v.role], v, explicit if v.explicit_predicate else rls_only, tenant_ids, 0.3, concurrency
            )
            v.reset()
        for r in range(rounds):
            for v in variants if r % 2 == 0 else list(reversed(variants)):
                sql = explicit if v.explicit_predicate else rls_only
                await run_round(pools[v.role], v, sql, tenant_ids, seconds, concurrency)
    finally:
        for p in pools.values():
            await p.close()
    sqls = [explicit if v.explicit_predicate else rls_only for v in variants]
    server = await server_times(dsns, variants, sqls, tenant_ids, samples)
    base_ctx, base_server = variants[1].rate, server[1]  # same statements, RLS not applied
    lines = []
    for v, sql, ms in zip(variants, sqls, server, strict=True):
        lat = sorted(v.latencies)
        p50 = lat[len(lat) // 2] * 1000
        plan = await explain(dsns[v.role], sql, tenant_ids[0], v.set_context)
        lines.append(
            f"| {policy} | {name} | {v.label} | {ms:.3f} | {ms - base_server:+.3f} ({(ms / base_server - 1) * 100:+.0f}%) | "
            f"{v.rate:,.0f} | {(v.rate / base_ctx - 1) * 100:+.0f}% | {p50:.2f} | {plan} |"
        )
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per variant per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--samples", type=int, default=60, help="EXPLAIN ANALYZE samples per variant")
    parser.add_argument(
        "--policies", default=",".join(POLICIES), help="comma-separated: " + ", ".join(POLICIES)
    )
    parser.add_argument("--admin-url", default=ADMIN_URL)
    args = parser.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]

    async with throwaway_database(args.admin_url, prefix="kaquan_bench_rls") as db:
        owner_dsn = asyncpg_dsn(db.owner_url)
        t0 = time.perf_counter()
        tenant_ids = await seed(owner_dsn, args.tenants, args.rows)
        seeded = time.perf_counter() - t0
        conn = await asyncpg.connect(owner_dsn)
        try:
            version = await conn.fetchval("show server_version")
        finally:
            await conn.close()
        print(f"# RLS cost — {dt.date.today().isoformat()}")
        print()
        print(f"Machine: {machine_line()}; PostgreSQL {version} on 127.0.0.1")
        print(
            f"Data: {args.rows:,} audit events across {args.tenants} tenants "
            f"({args.rows // args.tenants:,} per tenant), seeded in {seeded:.1f} s. "
            f"Server ms: median execution time of {args.samples} `EXPLAIN (ANALYZE)` runs per variant, "
            "variants taking turns (the policy's own cost, without client or network). "
            f"ops/s: {args.rounds} interleaved rounds of {args.seconds:g} s per variant on {args.concurrency} "
            "connections, each transaction (BEGIN, [set_config], query, COMMIT) for a random tenant."
        )
        print()
        print("Policies:")
        for p in policies:
            print(f"- `{p}`: `{POLICIES[p]}`")
        print()
        print(
            "| policy | query | variant | server ms (median) | Δ ms vs superuser + set_config | ops/s "
            "| ops/s vs superuser + set_config | p50 ms | plan (scan / condition) |"
        )
        print("|---|---|---|---:|---:|---:|---:|---:|---|")
        for policy in policies:
            if policy != "migrated":
                await apply_policy(owner_dsn, POLICIES[policy])
            await check_isolation(asyncpg_dsn(db.app_url), tenant_ids, args.rows // args.tenants)
            for name in QUERIES:
                for line in await bench_query(
                    db, policy, name, tenant_ids, args.seconds, args.concurrency, args.rounds, args.samples
                ):
                    print(line, flush=True)
        print()
        print(
            "`count` = `select count(*) from audit_events where tenant_id = $1`; "
            "`page` = the newest 50 events of the tenant (the `/api/v1/audit/events` query)."
        )


if __name__ == "__main__":
    asyncio.run(main())
