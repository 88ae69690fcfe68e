"""The ``kaquan`` command: serve, worker, scheduler, migrate, demo, operators, tenants, keys, audit, plugins.

Every command calls the same services as the API and console; domain errors are printed as a readable
message (zh-CN when ``LANG`` starts with ``zh``, else English) with exit code 1.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from core.audit.context import Actor, set_actor
from core.errors import DomainError
from core.settings import Settings, load_settings

if TYPE_CHECKING:  # annotations only: the commands import their domain modules when they run
    from core.inventory.importing.schemas import ConfirmMode

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)
ROOT = Path(__file__).resolve().parent.parent


def _locale() -> str:
    return "zh-CN" if os.environ.get("LANG", "").lower().startswith("zh") else "en"


def _run(coro_fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command body; turn domain errors into a readable message and exit code 1."""

    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        set_actor(Actor("cli", getpass.getuser()))
        try:
            return asyncio.run(coro_fn(*args, **kwargs))
        except DomainError as exc:
            err_console.print(f"[red]error[/red] ({exc.code}): {exc.detail(_locale())}")
            for fe in exc.errors:
                err_console.print(f"  - {fe.field}: {fe.message}")
            sys.exit(1)

    return wrapper


def _settings() -> Settings:
    return load_settings()


async def _kernel() -> Any:
    from core.kernel import Kernel

    return Kernel.create(_settings())


@click.group()
def main() -> None:
    """kaquan — digital entitlements (card keys, gift cards, coupons, points) for many tenants."""


@main.command()
@click.option("--host", default=None, help="Bind address (default KAQUAN_HOST or 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default KAQUAN_PORT or 8000).")
@click.option("--workers", default=1, show_default=True, help="Uvicorn worker processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Serve the API and consoles (embedded mode also runs the job worker in-process)."""
    import uvicorn

    # The app factory (in every uvicorn worker process) reads its settings from the environment: a
    # --host/--port given here must reach it, so the base URL it derives follows the port served.
    if host is not None:
        os.environ["KAQUAN_HOST"] = host
    if port is not None:
        os.environ["KAQUAN_PORT"] = str(port)
    s = _settings()
    from core.http.server import KaquanHttpToolsProtocol

    uvicorn.run("core.app:create_app", factory=True, host=s.host, port=s.port, http=KaquanHttpToolsProtocol,
                workers=workers, log_config=None, proxy_headers=True, access_log=False)


@main.command()
def worker() -> None:
    """Run a dramatiq worker process (service mode, needs KAQUAN_REDIS_URL)."""
    from core.jobs.worker import run_worker

    run_worker(_settings())


@main.command()
def scheduler() -> None:
    """Run the scheduler: one process that only enqueues periodic work."""
    from core.jobs.scheduler import run_scheduler

    run_scheduler(_settings())


def migrate_database(settings: Settings, *, reset_app_password: bool = False) -> None:
    """``alembic upgrade head`` as the owner role (also provisions the app role on PostgreSQL).

    The app role is created when missing; an existing one keeps its password (other databases on the
    server may share it) unless ``reset_app_password``.
    """
    from core.db.migrations import upgrade_head

    if not settings.is_postgres:
        settings.data_path.mkdir(parents=True, exist_ok=True)
    upgrade_head(settings.owner_db_url, settings.db_url, reset_app_password=reset_app_password)


async def _rename_legacy_redis_keys(settings: Settings) -> str | None:
    """Move Redis risk counters to their hash-tagged names (issue 13); why it could not (None when done)."""
    from core.risk.counters import rename_legacy_keys

    try:
        moved = await rename_legacy_keys(settings)
    except Exception as exc:  # boundary: Redis after a successful migration; reported, never raised
        return f"{type(exc).__name__}: {exc}"
    if moved:
        console.print(f"moved {moved} Redis risk counters to their hash-tagged names")
    return None


async def _app_login_error(url: str) -> str | None:
    """Why the app role cannot log in with ``url`` (None when it can)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("select 1")
    except Exception as exc:  # boundary: a diagnostic after the migration succeeded; reported, never raised
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        await engine.dispose()
    return None


@main.command()
@click.option("--reset-app-password", is_flag=True,
              help="Set the app role's password to the one in KAQUAN_DATABASE_URL even when the role exists "
                   "(the role is shared by every database on the server).")
def migrate(reset_app_password: bool) -> None:
    """Apply database migrations (schema, RLS policies, app role) as the owner."""
    s = _settings()
    migrate_database(s, reset_app_password=reset_app_password)
    console.print(f"[green]database is up to date[/green] ({'PostgreSQL' if s.is_postgres else 'SQLite'})")
    if s.redis_url and (redis_error := asyncio.run(_rename_legacy_redis_keys(s))):
        err_console.print(
            f"[yellow]warning[/yellow]: Redis risk counters were not moved ({redis_error}); run "
            "`kaquan migrate` again when Redis is reachable, or the running windows' counts start over.",
            soft_wrap=True,
        )
    if s.is_postgres and s.database_owner_url and s.database_owner_url != s.db_url:
        error = asyncio.run(_app_login_error(s.db_url))
        if error:
            err_console.print(
                f"[yellow]warning[/yellow]: the app role cannot log in with KAQUAN_DATABASE_URL ({error}). "
                "If the role already existed with another password, either use that password or run "
                "`kaquan migrate --reset-app-password` (this changes it for every database using the role).",
                soft_wrap=True,
            )


@main.command()
@_run
async def demo() -> None:
    """Create (or refresh) a demo operator and a demo tenant; print the console URLs and logins."""
    from core.demo import create_demo

    kernel = await _kernel()
    try:
        info = await create_demo(kernel)
    finally:
        await kernel.close()
    base = kernel.settings.base_url.rstrip("/")
    # Plain lines, never truncated: people copy these.
    console.print("[bold]kaquan demo is ready[/bold]", soft_wrap=True)
    console.print(f"operator console  {base}/platform/login", soft_wrap=True)
    console.print(f"  login           {info.operator_email} / {info.operator_password}", soft_wrap=True)
    console.print(f"tenant console    {base}/console/login", soft_wrap=True)
    console.print(f"  login           tenant {info.tenant_slug}, {info.owner_email} / {info.owner_password}",
                  soft_wrap=True)
    console.print(f"API (OpenAPI)     {base}/schema", soft_wrap=True)
    console.print(f"  client_id       {info.client_id}", soft_wrap=True)
    console.print(f"  client_secret   {info.client_secret}", soft_wrap=True)
    if info.channel_orders:
        console.print(f"sandbox channel   {info.channel_orders_fulfilled} of {info.channel_orders} orders fulfilled "
                      f"({base}/console/channel-orders)", soft_wrap=True)
    if info.settlement:
        console.print(f"settlement        {info.settlement} ({base}/console/settlements)", soft_wrap=True)


@main.group()
def operators() -> None:
    """Platform operators."""


@operators.command("create")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--password", default=None, help="Prompted for when omitted (read from stdin if not a TTY).")
@_run
async def operators_create(email: str, name: str, password: str | None) -> None:
    """Create a platform operator."""
    from tenants.onboarding import ensure_default_plans
    from tenants.operators import create_operator

    if password is None:
        password = (click.prompt("Password", hide_input=True, confirmation_prompt=True)
                    if sys.stdin.isatty() else sys.stdin.readline().strip())
    kernel = await _kernel()
    try:
        async with kernel.db.transaction() as db:
            await ensure_default_plans(db)
            op = await create_operator(db, email, password, name)
    finally:
        await kernel.close()
    console.print(f"[green]operator created[/green] {op.email} ({op.id})")


@main.group()
def tenants() -> None:
    """Tenants: onboard, list, suspend, resume."""


@tenants.command("create")
@click.option("--name", required=True)
@click.option("--slug", required=True)
@click.option("--owner-email", required=True)
@click.option("--plan", default="starter", show_default=True)
@click.option("--timezone", "tz", default="Asia/Shanghai", show_default=True)
@click.option("--currency", default="CNY", show_default=True)
@click.option("--locale", default="zh-CN", show_default=True, type=click.Choice(["zh-CN", "en"]))
@_run
async def tenants_create(name: str, slug: str, owner_email: str, plan: str, tz: str, currency: str,
                         locale: str) -> None:
    """Onboard a tenant; prints the owner's one-time invite link."""
    import msgspec

    from tenants.onboarding import create_tenant, ensure_default_plans
    from tenants.schemas import TenantCreate

    try:
        data = msgspec.convert(dict(name=name, slug=slug, owner_email=owner_email, plan=plan, timezone=tz,
                                    currency=currency, locale=locale), TenantCreate)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc)) from None
    kernel = await _kernel()
    try:
        async with kernel.db.transaction() as db:
            await ensure_default_plans(db)
            created = await create_tenant(kernel, db, data)
    finally:
        await kernel.close()
    console.print(f"[green]tenant created[/green] {created.tenant.slug} ({created.tenant.id})")
    console.print(f"owner invite link (shown once): {created.owner_invite_url}", soft_wrap=True)


@tenants.command("list")
@_run
async def tenants_list() -> None:
    """List every tenant with its plan and status."""
    from tenants.onboarding import list_tenants

    kernel = await _kernel()
    try:
        async with kernel.db.transaction() as db:
            rows = await list_tenants(db)
    finally:
        await kernel.close()
    table = Table("slug", "name", "plan", "status", "timezone", "currency", "created")
    for t in rows:
        table.add_row(t.slug, t.name, t.plan, t.status, t.timezone, t.currency, t.created_at.isoformat())
    console.print(table)


async def _set_status(slug: str, status: str, reason: str) -> None:
    from core.errors import NotFound
    from tenants.onboarding import set_status
    from tenants.registry import get_tenant_by_slug

    kernel = await _kernel()
    try:
        async with kernel.db.transaction() as db:
            tenant = await get_tenant_by_slug(db, slug)
            if tenant is None:
                raise NotFound(f"No tenant with slug {slug!r}", f"不存在标识为 {slug!r} 的租户", code="tenant_not_found")
            out = await set_status(db, tenant.id, status, reason)
    finally:
        await kernel.close()
    console.print(f"tenant {out.slug} is now [bold]{out.status}[/bold]")


@tenants.command("suspend")
@click.argument("slug")
@click.option("--reason", default="", help="Shown to the operator and kept in the audit chain.")
@_run
async def tenants_suspend(slug: str, reason: str) -> None:
    """Suspend a tenant: its API and console refuse; nothing is deleted."""
    await _set_status(slug, "suspended", reason)


@tenants.command("resume")
@click.argument("slug")
@click.option("--reason", default="")
@_run
async def tenants_resume(slug: str, reason: str) -> None:
    """Resume a suspended tenant."""
    await _set_status(slug, "active", reason)


async def _tenant_id(kernel: Any, slug: str) -> Any:
    from core.errors import NotFound
    from tenants.registry import get_tenant_by_slug

    async with kernel.db.transaction() as db:
        tenant = await get_tenant_by_slug(db, slug)
    if tenant is None:
        raise NotFound(f"No tenant with slug {slug!r}", f"不存在标识为 {slug!r} 的租户", code="tenant_not_found")
    return tenant.id


@main.group()
def clients() -> None:
    """A tenant's API clients (OAuth2 client credentials)."""


@clients.command("create")
@click.option("--tenant", "slug", required=True, help="Tenant slug.")
@click.option("--name", required=True, help="What the client is for (shown in the console).")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="A scope to give (repeat the option); see docs/api.md for the list.")
@_run
async def clients_create(slug: str, name: str, scopes: tuple[str, ...]) -> None:
    """Create an API client; prints its client_id and its secret, once (only a digest is stored)."""
    import msgspec

    from core.db.context import tenant_context
    from tenants.clients import create_client
    from tenants.schemas import ApiClientCreate

    try:
        data = msgspec.convert({"name": name, "scopes": list(scopes)}, ApiClientCreate)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc)) from None
    kernel = await _kernel()
    try:
        tenant_id = await _tenant_id(kernel, slug)
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                client, secret = await create_client(db, data.name, data.scopes)
    finally:
        await kernel.close()
    console.print(f"[green]API client created[/green] {client.name} ({', '.join(client.scopes)})", soft_wrap=True)
    console.print(f"client_id      {client.client_id}", soft_wrap=True)
    console.print(f"client_secret  {secret}", soft_wrap=True)
    console.print("The secret is shown this once; store it now.", soft_wrap=True)


@clients.command("list")
@click.option("--tenant", "slug", required=True, help="Tenant slug.")
@_run
async def clients_list(slug: str) -> None:
    """List a tenant's API clients (never a secret)."""
    from core.db.context import tenant_context
    from tenants.clients import list_clients

    kernel = await _kernel()
    try:
        tenant_id = await _tenant_id(kernel, slug)
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                rows = await list_clients(db)
    finally:
        await kernel.close()
    # Plain lines, never truncated: people copy the ids.
    for c in rows:
        status = f"revoked {c.revoked_at.isoformat()}" if c.revoked_at else "active"
        console.print(f"{c.client_id}  {c.name}  [{status}]  scopes: {' '.join(c.scopes)}  id: {c.id}",
                      soft_wrap=True, markup=False)
    if not rows:
        console.print("no API clients")


@clients.command("revoke")
@click.option("--tenant", "slug", required=True, help="Tenant slug.")
@click.argument("client")
@_run
async def clients_revoke(slug: str, client: str) -> None:
    """Revoke an API client (by its client_id or id) and every token it holds."""
    import uuid

    from sqlalchemy import select

    from core.db.context import tenant_context
    from core.errors import NotFound
    from tenants.clients import revoke_client
    from tenants.models import ApiClient

    kernel = await _kernel()
    try:
        tenant_id = await _tenant_id(kernel, slug)
        with tenant_context(tenant_id):
            async with kernel.db.transaction() as db:
                try:
                    pk = uuid.UUID(client)
                except ValueError:
                    pk = (await db.execute(select(ApiClient.id).where(ApiClient.client_id == client))).scalar()
                if pk is None:
                    raise NotFound("API client not found", "API 客户端不存在", code="api_client_not_found")
                row = await revoke_client(db, pk)
    finally:
        await kernel.close()
    console.print(f"API client {row.name} ({row.client_id}) is [bold]revoked[/bold]", soft_wrap=True)


@main.group()
def keys() -> None:
    """Master key and data keys."""


@keys.command("rotate")
@_run
async def keys_rotate() -> None:
    """Re-wrap every tenant data key under the current KAQUAN_MASTER_KEY (old keys in
    KAQUAN_PREVIOUS_MASTER_KEYS). Online: no downtime, safe to re-run."""
    kernel = await _kernel()
    try:
        count = await kernel.keys.rotate(kernel.db)
    finally:
        await kernel.close()
    console.print(f"[green]re-wrapped {count} data key(s)[/green] under master key {kernel.keys.keyring.current_id}")


@main.group()
def audit() -> None:
    """The audit chain."""


@audit.command("verify")
@click.option("--tenant", "slug", default=None, help="Only this tenant (slug); default all tenants.")
@click.option("--settle", default=10.0, show_default=True,
              help="Seconds to wait for open transactions before what they wrote counts as pending.")
@_run
async def audit_verify(slug: str | None, settle: float) -> None:
    """Seal, then recompute each tenant's audit chain block by block; exit 1 and name the first broken
    block if any. Events not sealed yet are counted as pending, never as broken."""
    from sqlalchemy import select

    from core.audit.services import verify_chain
    from core.db.context import cross_tenant
    from core.errors import NotFound
    from tenants.models import Tenant

    kernel = await _kernel()
    broken = 0
    try:
        async with kernel.db.transaction() as db:
            q = select(Tenant).order_by(Tenant.slug)
            if slug:
                q = q.where(Tenant.slug == slug)
            tenants_ = list((await db.execute(q)).scalars())
        if slug and not tenants_:
            raise NotFound(f"No tenant with slug {slug!r}", f"不存在标识为 {slug!r} 的租户", code="tenant_not_found")
        table = Table("tenant", "blocks", "events", "pending", "result")
        for t in tenants_:
            with cross_tenant("audit verify"):
                async with kernel.db.transaction() as db:
                    report = await verify_chain(db, t.id, settle)
            counts = (str(report.blocks_checked), str(report.events_checked), str(report.events_pending))
            if report.ok:
                table.add_row(t.slug, *counts, "[green]ok[/green]")
            else:
                broken += 1
                table.add_row(t.slug, *counts,
                              f"[red]broken at block {report.first_broken_block}: {report.reason}[/red]")
        console.print(table)
    finally:
        await kernel.close()
    if broken:
        sys.exit(1)


@main.group()
def codes() -> None:
    """Card keys (卡密): import a supplier's file."""


def _print_import_report(imp: Any, shown: int = 20) -> None:
    report = imp.report or {}
    summary = Table("file", "format", "encoding", "rows", "valid", "with problems", title="validation report")
    summary.add_row(
        imp.filename, imp.file_format, imp.encoding or "-", str(report.get("total_rows", 0)),
        f"[green]{report.get('valid_rows', 0)}[/green]", f"[red]{report.get('invalid_rows', 0)}[/red]",
    )
    console.print(summary)
    columns = report.get("columns") or {}
    console.print("columns: " + ", ".join(f"{k} ← {v}" for k, v in columns.items() if v))
    counts = report.get("problem_counts") or {}
    if counts:
        table = Table("problem", "rows")
        for code, n in counts.items():
            table.add_row(code, str(n))
        console.print(table)
        rows = Table("row", "column", "problem", "message")
        zh = _locale() == "zh-CN"
        for p in (report.get("problems") or [])[:shown]:
            rows.add_row(str(p["row"]), p["column"], p["code"], p["message_zh"] if zh else p["message_en"])
        console.print(rows)
    for name, n in (report.get("warnings") or {}).items():
        console.print(f"[yellow]warning[/yellow] {name}: {n} row(s)")


@codes.command("import")
@click.option("--tenant", "slug", required=True, help="Tenant slug.")
@click.option("--product", "sku", required=True, help="SKU of the product the codes belong to.")
@click.option("--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV, TXT or Excel file from the supplier.")
@click.option("--supplier", default="", help="Supplier (free text).")
@click.option("--unit-cost", type=click.IntRange(min=0), default=0, show_default=True, help="Unit cost in fen.")
@click.option("--currency", default=None, help="ISO currency (default: the product's).")
@click.option("--purchase-ref", default="", help="Purchase order or invoice reference.")
@click.option("--expires", default=None, help="Batch expiry YYYY-MM-DD (a row's own expiry wins).")
@click.option("--notes", default="")
@click.option("--mapping", default=None, help='Column mapping as JSON, e.g. {"number": "卡号", "pin": "卡密"}.')
@click.option("--encoding", default=None, help="Text encoding (default: detected).")
@click.option("--mode", type=click.Choice(["valid_only", "all_or_nothing"]), default="valid_only", show_default=True,
              help="Import the valid rows, or nothing if any row has a problem.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_run
async def codes_import(slug: str, sku: str, path: Path, supplier: str, unit_cost: int, currency: str | None,
                       purchase_ref: str, expires: str | None, notes: str, mapping: str | None,
                       encoding: str | None, mode: ConfirmMode, yes: bool) -> None:
    """Validate a supplier's file, show the report, then import it as one batch with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from core.catalog.services import get_product_by_sku
    from core.db.context import tenant_context
    from core.errors import NotFound, ValidationFailed
    from core.inventory.importing import services
    from core.inventory.importing.schemas import ImportRequest
    from tenants.registry import get_tenant_by_slug

    kernel = await _kernel()
    try:
        async with kernel.db.transaction() as db:
            tenant = await get_tenant_by_slug(db, slug)
        if tenant is None:
            raise NotFound(f"No tenant with slug {slug!r}", f"不存在标识为 {slug!r} 的租户", code="tenant_not_found")
        with tenant_context(tenant.id):
            async with kernel.db.transaction() as db:
                product = await get_product_by_sku(db, sku)
                fields = services.to_request(
                    dict(product_id=str(product.id), supplier=supplier, unit_cost=unit_cost, currency=currency,
                         purchase_ref=purchase_ref, expires_at=expires, notes=notes, encoding=encoding),
                    ImportRequest,
                )
                fields.mapping = services.parse_mapping(mapping)
                with path.open("rb") as fh:
                    imp = await services.create_import(db, kernel.keys, fh, path.name, fields,
                                                       max_bytes=kernel.settings.max_import_bytes)
            _print_import_report(imp)
            if imp.valid_rows == 0:
                raise ValidationFailed("No row can be imported", "没有可导入的行", code="import_nothing_valid")
            if not yes and not click.confirm(f"Import {imp.valid_rows} code(s) ({mode})?", default=False):
                console.print("nothing imported")
                return
            async with kernel.db.transaction() as db:
                await services.confirm_import(db, imp.id, mode, enqueue=False)
            with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          console=console) as bar:
                task = bar.add_task("import", total=imp.valid_rows)
                outcome = await services.run_import(
                    kernel.db, kernel.keys, imp.id, on_progress=lambda done, _total: bar.update(task, completed=done)
                )
        if outcome.status != "imported":
            raise ValidationFailed(outcome.error_en or "The import failed", outcome.error_zh,
                                   code=outcome.error_code or "import_failed")
        console.print(f"[green]imported {outcome.imported} code(s)[/green] into batch [bold]{outcome.batch_ref}[/bold]"
                      + (f" ({outcome.skipped_duplicates} duplicate(s) skipped)" if outcome.skipped_duplicates else ""))
    finally:
        await kernel.close()


# -- plugins ------------------------------------------------------------------------------------------

_PLUGIN_STATES = {
    "enabled": ("[green]enabled[/green]", "[green]已启用[/green]"),
    "blocklisted": ("[yellow]disabled[/yellow]: blocklisted by KAQUAN_DISABLED_PLUGINS",
                    "[yellow]已停用[/yellow]：被 KAQUAN_DISABLED_PLUGINS 屏蔽"),
    "failed": ("[red]disabled[/red]: failed to load (see below)", "[red]已停用[/red]：加载失败（见下文）"),
}


@main.group()
def plugins() -> None:
    """Installed plugins and their connectors."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def plugins_list(as_json: bool) -> None:
    """Every installed plugin: its connectors, kind, version, and whether it is enabled (and why not).

    Exits with status 1 when a plugin fails to load (kaquan would refuse to start).
    """
    import logging

    import msgspec
    import structlog

    from core.plugin_host import disable_hint, inspect_plugins

    saved = structlog.get_config()
    structlog.configure(  # the list is the output: keep the loader's log lines out of it
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        rows = inspect_plugins(_settings().disabled_plugin_names)
    finally:
        structlog.configure(**saved)
    lang = 1 if _locale() == "zh-CN" else 0
    failed = [r for r in rows if r.reason == "failed"]
    if as_json:
        click.echo(msgspec.json.encode(rows).decode())
    else:
        table = Table(title="kaquan plugins", show_lines=True)
        table.add_column("plugin", no_wrap=True)
        table.add_column("connector", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("version", no_wrap=True)
        table.add_column("state", min_width=16, overflow="fold")
        for r in rows:
            version = r.version or "-"
            if not r.enabled or not r.connectors:
                state = _PLUGIN_STATES[r.reason or "enabled"][lang]
                if r.reason == "blocklisted":
                    state = state.replace("KAQUAN_DISABLED_PLUGINS", r.detail)
                table.add_row(r.name, "-", "-", version, state)
            for c in r.connectors:
                state = _PLUGIN_STATES[c.reason or "enabled"][lang]
                if c.reason:
                    state = state.replace("KAQUAN_DISABLED_PLUGINS", c.detail)
                table.add_row(r.name, c.id, c.kind, version, state)
        console.print(table)
    for r in failed:
        err_console.print(f"[red]{r.name}[/red]: {r.detail}", soft_wrap=True, highlight=False)
    if failed:
        hint = disable_hint(r.name for r in failed)
        err_console.print(
            f"kaquan 不会启动，除非修复或停用这些插件：{hint}" if lang
            else f"kaquan will not start until these plugins are fixed or disabled: {hint}",
            soft_wrap=True, highlight=False,
        )
        sys.exit(1)

def command_names() -> set[str]:
    """Every command path, e.g. ``{"serve", "tenants list", ...}`` (used by the compose test)."""
    names: set[str] = set()

    def walk(group: click.Group, prefix: str) -> None:
        for name, cmd in group.commands.items():
            path = f"{prefix}{name}"
            if isinstance(cmd, click.Group):
                walk(cmd, path + " ")
            else:
                names.add(path)

    walk(main, "")
    return names


if __name__ == "__main__":
    main()
