"""One settings Struct, read from ``KAQUAN_*`` environment variables and an optional TOML/JSON file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import msgspec


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Runtime configuration. Every field maps to ``KAQUAN_<FIELD>`` in upper case."""

    data_dir: str = "./data"
    database_url: str = ""
    database_owner_url: str = ""
    redis_url: str = ""
    redis_namespace: str = "kaquan"
    master_key: str = ""
    previous_master_keys: str = ""
    base_url: str = ""
    """Public URL of the app (links in messages, printed URLs, secure cookies). When unset it follows
    ``host`` and ``port``: ``http://<host>:<port>`` (a wildcard bind address shows as 127.0.0.1)."""
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key: str = ""
    env: str = "embedded"
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = 1_048_576
    max_import_bytes: int = 64 * 1024 * 1024
    token_ttl_seconds: int = 3600
    session_ttl_seconds: int = 8 * 3600
    login_max_failures: int = 5
    login_lockout_seconds: int = 900
    default_rate_limit_per_minute: int = 600
    disabled_plugins: str = ""
    in_process_worker: bool = True
    in_process_scheduler: bool = True
    outbox_poll_seconds: float = 1.0
    outbox_redeliver_seconds: float = 300.0
    worker_heartbeat_timeout_seconds: float = 30.0
    broker_maintenance_seconds: float = 10.0
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_sender: str = "kaquan@localhost"
    webhook_allow_private: bool = False
    sms_gateway_url: str = ""
    sms_gateway_key: str = ""
    demo_channel: str = "sandbox"
    """The sales-channel connector ``kaquan demo`` lists the demo product on (the built-in simulated shop)."""
    fallback_notifier: str = "log_notifier"
    """The notifier for a channel no platform connector account delivers (the built-in log notifier)."""
    db_pool_size: int = 10
    """PostgreSQL connections each API process keeps open (its main pool; workers keep smaller pools)."""
    db_max_overflow: int = 20
    """Connections a pool may open beyond ``db_pool_size`` under load (closed again when returned)."""
    db_statement_cache_size: int = 100
    """Prepared statements cached per PostgreSQL connection (asyncpg); 0 prepares every statement anew."""
    db_pgbouncer: bool = False
    """The database URL points at PgBouncer in transaction pooling mode: statements get unique names and
    no statement cache (``docs/scaling.md``). Not needed for PgBouncer 1.21+ with ``max_prepared_statements``."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_path / 'kaquan.db'}"

    @property
    def owner_db_url(self) -> str:
        return self.database_owner_url or self.db_url

    @property
    def is_postgres(self) -> bool:
        return self.db_url.startswith("postgresql")

    @property
    def disabled_plugin_names(self) -> set[str]:
        return {p.strip() for p in self.disabled_plugins.split(",") if p.strip()}

    @property
    def connector_settings(self) -> dict[str, Any]:
        """The settings connectors read to set up their platform-wide accounts, by name (no other setting
        ever reaches a plugin; see ``plugins.PlatformConfigurable``)."""
        return {name: getattr(self, name) for name in CONNECTOR_SETTINGS}


#: Settings that belong to connectors, not to kaquan: handed to plugins (``platform_config``) and read
#: nowhere in core. Per-tenant connector accounts hold the same kind of config under the tenant's key.
CONNECTOR_SETTINGS: tuple[str, ...] = (
    "smtp_host",
    "smtp_port",
    "smtp_sender",
    "sms_gateway_url",
    "sms_gateway_key",
)


def _coerce(field_type: Any, raw: str) -> Any:
    if field_type is bool or field_type == "bool":
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if field_type is int or field_type == "int":
        return int(raw)
    if field_type is float or field_type == "float":
        return float(raw)
    return raw


def load_settings(env: dict[str, str] | None = None, file: str | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional file (``KAQUAN_CONFIG``), the environment, then overrides."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    path = file or env.get("KAQUAN_CONFIG")
    if path:
        text = Path(path).read_text(encoding="utf-8")
        loaded = tomllib.loads(text) if path.endswith(".toml") else msgspec.json.decode(text)
        values.update(loaded.get("kaquan", loaded))
    fields = {f.name: f.type for f in msgspec.structs.fields(Settings)}
    for name, ftype in fields.items():
        key = f"KAQUAN_{name.upper()}"
        if key in env:
            try:
                values[name] = _coerce(ftype, env[key])
            except ValueError as exc:
                raise SystemExit(f"Invalid value for {key}: {env[key]!r} ({exc})") from exc
    values.update(overrides)
    settings = msgspec.convert(values, Settings)
    if not settings.base_url:
        settings = msgspec.structs.replace(settings, base_url=derived_base_url(settings.host, settings.port))
    return settings


_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


def derived_base_url(host: str, port: int) -> str:
    """The base URL a browser on this machine reaches a server bound to ``host:port`` at."""
    shown = "127.0.0.1" if host in _WILDCARD_HOSTS else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"  # an IPv6 literal
    return f"http://{shown}:{port}"
