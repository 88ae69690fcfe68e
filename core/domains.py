"""The list of domains, and the one declaration each domain makes of itself.

A domain is a package (``core.catalog``, ``tenants`` …) with a ``plugin.py`` that defines
``domain = Domain(...)``: its API controllers, console and H5 pages, model and job modules, periodic
tasks, event types, API scopes and console permissions. The app, the console, the H5 router, the worker,
the scheduler, the migrations environment, the OAuth server and the event feed all collect from
:data:`DOMAINS`, so adding a domain is one folder plus one line here.

Code objects are named by ``"module:attribute"`` strings and imported only when collected. That keeps
``plugin.py`` free of imports (so the event and scope tables can be read while any module is still
importing), and it lets a domain name its console pages without importing the presentation packages
(``admin_ui``, ``h5``), which domain code must never do.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

#: Every domain, in the order their routes, pages and tables are collected. A new domain adds one line.
DOMAINS: tuple[str, ...] = (
    "tenants",
    "core.crypto",
    "core.audit",
    "core.jobs",
    "core.http",
    "core.events",
    "core.notifications",
    "core.catalog",
    "core.inventory",
    "core.members",
    "core.grants",
    "core.bulk_grants",
    "core.reminders",
    "core.claims",
    "core.campaigns",
    "core.stores",
    "core.redemption",
    "core.webhooks",
    "core.risk",
    "core.connectors",
    "core.channels",
    "core.splits",
    "core.channel_orders",
    "core.settlement",
    "core.kpis",
)

#: The console roles, most powerful first; the clerk (核销员) only redeems, at the stores bound to them.
ROLES: tuple[str, ...] = ("owner", "admin", "operator", "finance", "viewer", "clerk")
#: Every back-office role: all but the clerk, who sees only the redeem page and their own redemptions.
EVERYONE = frozenset(ROLES) - {"clerk"}
#: The store clerk (核销员).
CLERKS = frozenset({"clerk"})
#: Owners and admins: govern the tenant (users, clients, rollback, webhooks, risk rules, reveal).
ADMINS = frozenset({"owner", "admin"})
#: Owners, admins and operators: run the stock and the distribution day to day.
OPERATORS = ADMINS | {"operator"}
#: Finance reads what it reconciles, besides what everyone reads.
FINANCE = frozenset({"finance"})

_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Periodic:
    """A periodic task: the job ``actor`` is enqueued for every tenant each ``every``."""

    name: str
    actor: str
    every: dt.timedelta

    def window(self, now: dt.datetime) -> dt.datetime:
        """The start of the window ``now`` falls in (windows are aligned to a fixed epoch)."""
        n = (now - _EPOCH) // self.every
        return _EPOCH + n * self.every

    def business_key(self, now: dt.datetime) -> str:
        """The outbox business key of this window: a second scheduler or a restart never queues twice."""
        return f"{self.name}:{self.window(now).isoformat()}"


@dataclass(frozen=True)
class Domain:
    """What a domain brings to the application. Code is named as ``"package.module:Attribute"``."""

    name: str
    #: API controllers (mounted at their own ``/api/v1/...`` paths).
    api: tuple[str, ...] = ()
    #: Tenant console controllers, mounted under ``/console``.
    console: tuple[str, ...] = ()
    #: Operator console controllers, mounted under ``/platform``.
    platform: tuple[str, ...] = ()
    #: Mobile H5 controllers, mounted under ``/h5``.
    h5: tuple[str, ...] = ()
    #: Modules that define ORM models (imported so ``Base.metadata`` is complete).
    models: tuple[str, ...] = ()
    #: Modules that declare jobs with :func:`core.jobs.registry.job`.
    jobs: tuple[str, ...] = ()
    periodic: tuple[Periodic, ...] = ()
    #: Event types this domain emits, with the description the API and console show.
    events: Mapping[str, str] = field(default_factory=dict)
    #: API scopes this domain checks, with their documented meaning.
    scopes: Mapping[str, str] = field(default_factory=dict)
    #: Console permissions this domain checks, and the roles that hold each.
    permissions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: What this domain plugs into another's extension points: point name → objects implementing it.
    #: A lower domain calls a higher one only this way (see :func:`extensions`), never by importing it.
    provides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def resolve(ref: str) -> Any:
    """Import ``"package.module:attribute"``."""
    module, _, attribute = ref.partition(":")
    if not attribute:
        raise ValueError(f"{ref!r} is not of the form 'package.module:attribute'")
    return getattr(importlib.import_module(module), attribute)


@cache
def domains() -> tuple[Domain, ...]:
    """Every domain's declaration, in :data:`DOMAINS` order (each ``<package>.plugin.domain``)."""
    found: list[Domain] = []
    for package in DOMAINS:
        declared = getattr(importlib.import_module(f"{package}.plugin"), "domain", None)
        if not isinstance(declared, Domain):
            raise TypeError(f"{package}.plugin must define `domain = Domain(...)`")
        found.append(declared)
    return tuple(found)


def _merged(kind: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for d in domains():
        for key, value in getattr(d, kind).items():
            if key in merged:
                raise ValueError(f"{kind[:-1]} {key!r} is declared by two domains")
            merged[key] = value
    return merged


def handlers(kind: str) -> list[Any]:
    """The controllers of one kind (``api``, ``console``, ``platform``, ``h5``), imported."""
    return [resolve(ref) for d in domains() for ref in getattr(d, kind)]


def extensions(point: str) -> list[Any]:
    """The objects every domain provides for the extension point ``point``, imported, in domain order.

    The domain that owns a point names it ``"<domain>.<what>"`` and documents the protocol its
    implementations follow (e.g. ``inventory.code_holders`` in :mod:`core.inventory.custody`): the
    inventory voids codes that grants hold without importing the grants package, which imports it.
    """
    return [resolve(ref) for d in domains() for ref in d.provides.get(point, ())]


def model_modules() -> tuple[str, ...]:
    """Every module that defines models."""
    return tuple(m for d in domains() for m in d.models)


def job_modules() -> tuple[str, ...]:
    """Every module that declares jobs."""
    return tuple(m for d in domains() for m in d.jobs)


def periodic_tasks() -> tuple[Periodic, ...]:
    """Every periodic task (names are unique)."""
    tasks = tuple(p for d in domains() for p in d.periodic)
    names = [p.name for p in tasks]
    if len(names) != len(set(names)):
        raise ValueError("two periodic tasks share a name")
    return tasks


def event_types() -> dict[str, str]:
    """Every event type with its description."""
    return _merged("events")


def scopes() -> dict[str, str]:
    """Every API scope with its description."""
    return _merged("scopes")


def role_permissions() -> dict[str, frozenset[str]]:
    """Each role's console permissions."""
    granted: dict[str, set[str]] = {role: set() for role in ROLES}
    for permission, roles in _merged("permissions").items():
        for role in roles:
            if role not in granted:
                raise ValueError(f"permission {permission!r} names unknown role {role!r}")
            granted[role].add(permission)
    return {role: frozenset(perms) for role, perms in granted.items()}
