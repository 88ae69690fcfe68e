"""The tenant console's grouped navigation (the sidebar), as data.

Adding a page to the menu is one ``Link(...)`` line in :data:`CONSOLE_MENU`: its key, its path, its label
(marked for the catalog) and the permission a user needs to see it (the page's controller guards the same
permission). ``also`` lists further path prefixes that belong to the link (a batch page is part of 库存).
The current link is found from the request path (longest prefix); a page may still name it with
``{% set active = "key" %}`` when its path belongs to no link.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from admin_ui.i18n import N_


@dataclass(frozen=True, slots=True)
class Link:
    key: str
    href: str
    label: str
    permission: str
    also: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Group:
    key: str
    label: str
    links: tuple[Link, ...]


CONSOLE_MENU: tuple[Group, ...] = (
    Group("overview", N_("Overview"), (Link("dashboard", "/console", N_("Dashboard"), "tenant.read"),)),
    Group(
        "catalog",
        N_("Products and stock"),
        (
            Link("products", "/console/products", N_("Products"), "catalog.read"),
            Link(
                "stock",
                "/console/stock",
                N_("Stock"),
                "inventory.read",
                also=("/console/imports", "/console/codes"),
            ),
            Link("batches", "/console/batches", N_("Batches"), "inventory.read"),
        ),
    ),
    Group(
        "distribution",
        N_("Grants and campaigns"),
        (
            Link("grants", "/console/grants", N_("Grants"), "members.read"),
            Link("bulk_grants", "/console/bulk-grants", N_("Bulk grants"), "grants.manage"),
            Link("campaigns", "/console/campaigns", N_("Campaigns"), "grants.manage"),
            Link("reminders", "/console/reminders", N_("Expiry reminders"), "grants.manage"),
        ),
    ),
    Group(
        "channels",
        N_("Channel consignment"),
        (
            Link("connectors", "/console/connectors", N_("Connectors"), "connectors.manage"),
            Link("listings", "/console/listings", N_("Channel listings"), "listings.read"),
            Link("channel_orders", "/console/channel-orders", N_("Channel orders"), "channel_orders.read"),
            Link("kpis", "/console/kpis", N_("Channel KPIs"), "kpis.read"),
        ),
    ),
    Group(
        "settlement",
        N_("Settlement"),
        (
            Link("settlement", "/console/settlements", N_("Settlements"), "settlement.read"),
            Link("reconciliation", "/console/reconciliation", N_("Reconciliation"), "settlement.read"),
            Link("statements", "/console/statements", N_("Statements"), "settlement.read"),
            Link("split_rules", "/console/split-rules", N_("Split rules"), "splits.read"),
        ),
    ),
    Group("members", N_("Members"), (Link("members", "/console/members", N_("Members"), "members.read"),)),
    Group(
        "redeem",
        N_("Redeem"),
        (
            Link("redeem", "/console/redeem", N_("Redeem"), "redemptions.redeem"),
            Link("stores", "/console/stores", N_("Stores"), "stores.read"),
            Link("redemption_report", "/console/reports/redemptions", N_("Redemption report"), "stores.read"),
        ),
    ),
    Group(
        "settings",
        N_("Settings"),
        (
            Link("users", "/console/users", N_("Users"), "users.manage"),
            Link("branding", "/console/settings/branding", N_("Shop display and SMS"), "connectors.manage"),
            Link("clients", "/console/clients", N_("API clients"), "clients.manage"),
            Link("webhooks", "/console/webhooks", N_("Webhooks"), "webhooks.manage"),
            Link("risk", "/console/risk", N_("Risk control"), "risk.read"),
            Link("audit", "/console/audit", N_("Audit log"), "audit.read"),
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Menu:
    """The groups a user may see (groups with no visible link are left out) and the current link's key."""

    groups: tuple[Group, ...]
    current: str | None = None


def _matches(path: str, prefix: str) -> bool:
    if prefix == "/console":
        return path.rstrip("/") == "/console"
    return path == prefix or path.startswith(prefix + "/")


def build_menu(can: Callable[[str], bool], path: str, menu: tuple[Group, ...] = CONSOLE_MENU) -> Menu:
    """The menu of a user whose permissions ``can`` answers, with the link of ``path`` marked current."""
    groups: list[Group] = []
    best: tuple[int, str] | None = None
    for group in menu:
        links = tuple(link for link in group.links if can(link.permission))
        if not links:
            continue
        groups.append(Group(group.key, group.label, links))
        for link in links:
            for prefix in (link.href, *link.also):
                if _matches(path, prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), link.key)
    return Menu(tuple(groups), best[1] if best else None)
