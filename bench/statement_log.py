"""The SQL statements kaquan sends for one request, logged with SQLAlchemy's ``before_cursor_execute``.

The ``--baseline`` benchmarks compare kaquan with hand-written servers doing "the same statements"; this
module is how that list is derived and checked: the app runs in-process (its own engine, service mode),
one warm-up request fills the caches, then the statements of one more request are recorded, from the
first statement of the request to its answer. Statements sent after the answer (the audit sealer reacting
to the commit) are recorded separately for a short while.

Run on its own to print both lists:
``.venv/bin/python bench/statement_log.py [--redis-url redis://127.0.0.1:6379/9]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from _pg import ADMIN_URL, throwaway_database
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

REDIS_URL = "redis://127.0.0.1:6379/9"


@dataclass
class StatementLog:
    """Statements in order; ``phase`` says where new ones go (``request`` or ``after``)."""

    phase: str = "off"
    request: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)

    def add(self, statement: str) -> None:
        if self.phase == "request":
            self.request.append(statement)
        elif self.phase == "after":
            self.after.append(statement)


def short(statement: str, width: int = 150) -> str:
    """One line: whitespace squeezed, long column lists elided."""
    text = re.sub(r"\s+", " ", statement).strip()
    return text if len(text) <= width else text[: width - 1] + "…"


def kind(statement: str) -> str:
    """``BEGIN``, ``SELECT set_config``, ``INSERT INTO t``, ``UPDATE t``, ``SELECT … FROM t``, …"""
    text = re.sub(r"\s+", " ", statement).strip()
    upper = text.upper()
    if upper.startswith("INSERT INTO"):
        return "INSERT INTO " + text.split()[2]
    if upper.startswith("UPDATE"):
        return "UPDATE " + text.split()[1]
    if upper.startswith("DELETE FROM"):
        return "DELETE FROM " + text.split()[2]
    if "SET_CONFIG" in upper[:60]:
        return "SELECT set_config"
    if upper.startswith("SELECT") and (table := _top_level_from(text)):
        return "SELECT … FROM " + table
    return text.split()[0].upper() if text else ""


def _top_level_from(text: str) -> str | None:
    """The first table after a FROM outside parentheses (not a subquery's)."""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and text[i : i + 6].upper() == " FROM ":
            match = re.match(r"\s*([a-z_]+)", text[i + 6 :], re.IGNORECASE)
            return match.group(1) if match else None
    return None


@contextlib.contextmanager
def recording(engine: AsyncEngine, log: StatementLog) -> Any:
    """Log every statement of ``engine`` (plus BEGIN/COMMIT/ROLLBACK) into ``log`` while in the block."""
    sync = engine.sync_engine

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        log.add(statement)

    def on_begin(conn: Any) -> None:
        log.add("BEGIN")

    def on_commit(conn: Any) -> None:
        log.add("COMMIT")

    def on_rollback(conn: Any) -> None:
        log.add("ROLLBACK")

    hooks = [
        ("before_cursor_execute", on_execute),
        ("begin", on_begin),
        ("commit", on_commit),
        ("rollback", on_rollback),
    ]
    for name, fn in hooks:
        event.listen(sync, name, fn)
    try:
        yield log
    finally:
        for name, fn in hooks:
            event.remove(sync, name, fn)


async def log_one(
    engine: AsyncEngine, request: Callable[[], Awaitable[int]], settle: float = 1.0
) -> StatementLog:
    """Run ``request`` twice (warm-up, then recorded); returns its statements and what followed."""
    status = await request()
    if status >= 300:
        raise SystemExit(f"warm-up request answered {status}")
    await asyncio.sleep(settle)  # the warm-up's sealing is over
    log = StatementLog()
    with recording(engine, log):
        log.phase = "request"
        status = await request()
        log.phase = "after"
        await asyncio.sleep(settle)
        log.phase = "off"
    if status >= 300:
        raise SystemExit(f"recorded request answered {status}")
    return log


def print_log(title: str, log: StatementLog, width: int = 150) -> None:
    print(f"**{title}: {len(log.request)} statements in the request**")
    print()
    for i, s in enumerate(log.request, 1):
        print(f"{i:2}. `{short(s, width)}`")
    print()
    print(f"after the answer (within 1 s): {len(log.after)} statements")
    for i, s in enumerate(log.after, 1):
        print(f"    {i:2}. `{short(s, 110)}`")
    print()


@contextlib.asynccontextmanager
async def _app_client(app: Any) -> AsyncIterator[Any]:
    from http_overhead import running

    async with running(app) as client:
        yield client


async def statements_of_grant(app: Any, token: str, product_id: uuid.UUID) -> StatementLog:
    """The statements of one ``POST /api/v1/grants`` (1 code to a new member, no delivery), in-process."""
    async with _app_client(app) as client:
        auth = {"Authorization": f"Bearer {token}"}

        async def one_grant() -> int:
            key = uuid.uuid4().hex
            body = {
                "product_id": str(product_id),
                "quantity": 1,
                "external_id": f"m-{key}",
                "channel": "none",
                "campaign_ref": "bench",
            }
            r = await client.post("/api/v1/grants", json=body, headers=auth | {"Idempotency-Key": key})
            return int(r.status_code)

        return await log_one(app.state.kernel.db.engine, one_grant)


async def statements_of_redemption(app: Any, token: str, cards: list[tuple[str, str]]) -> StatementLog:
    """The statements of one ``POST /api/v1/redemptions`` of a single-use number + PIN code (uses 2 cards)."""
    async with _app_client(app) as client:
        left = list(cards)

        async def one_redemption() -> int:
            number, pin = left.pop()
            body = {"code": number, "pin": pin, "store": "S01", "terminal": "T1"}
            r = await client.post(
                "/api/v1/redemptions", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            return int(r.status_code)

        return await log_one(app.state.kernel.db.engine, one_redemption)


def kinds_line(log: StatementLog) -> str:
    """``17 statements: BEGIN, SELECT set_config, …`` for a report."""
    return f"{len(log.request)} statements: " + ", ".join(kind(s) for s in log.request)


async def grant_statements(admin_url: str, redis_url: str) -> StatementLog:
    """The statements of one grant, in a throwaway database of its own."""
    import grant_http
    from http_overhead import bench_settings, quiet_app

    from core.crypto.envelope import generate_master_key_spec

    async with throwaway_database(admin_url, prefix="kaquan_bench_stmts") as db:
        with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
            settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), redis_url)
            _tenant, product_id, token = await grant_http.set_up(quiet_app(settings), 20)
            return await statements_of_grant(quiet_app(settings), token, product_id)


async def redemption_statements(admin_url: str, redis_url: str) -> StatementLog:
    """The statements of one redemption, in a throwaway database of its own."""
    import redeem_http
    from http_overhead import bench_settings, quiet_app

    from core.crypto.envelope import generate_master_key_spec

    async with throwaway_database(admin_url, prefix="kaquan_bench_stmts") as db:
        with tempfile.TemporaryDirectory(prefix="kaquan-bench-") as data_dir:
            settings = bench_settings(db, data_dir, generate_master_key_spec("mk-bench"), redis_url)
            token, cards, _ = await redeem_http.prepare(settings, 4)
            pairs = [(c.number, c.pin) for c in cards]
            return await statements_of_redemption(quiet_app(settings), token, pairs)


async def main() -> None:
    from http_overhead import redis_db_state, redis_flush

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--redis-url", default=REDIS_URL, help="an EMPTY Redis database")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--full", action="store_true", help="print whole statements, not one short line each")
    args = parser.parse_args()
    width = 100_000 if args.full else 150
    if await redis_db_state(args.redis_url) != "empty":
        raise SystemExit(f"{args.redis_url} is not an empty, reachable Redis database")
    try:
        print_log("POST /api/v1/grants", await grant_statements(args.admin_url, args.redis_url), width)
        print_log(
            "POST /api/v1/redemptions", await redemption_statements(args.admin_url, args.redis_url), width
        )
    finally:
        await redis_flush(args.redis_url)


if __name__ == "__main__":
    asyncio.run(main())
