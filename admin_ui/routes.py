"""Console route handlers: the operator console under ``/platform``, the tenant console under ``/console``.

Both routers render errors as HTML pages (see :mod:`admin_ui.errors`) instead of problem+json.
"""

from __future__ import annotations

from litestar import Router

from admin_ui.bulk_grants_pages import BulkGrantsController
from admin_ui.campaigns_pages import CampaignsController
from admin_ui.catalog_pages import ProductsController
from admin_ui.console_auth import ConsoleAuthController
from admin_ui.console_pages import (
    AuditPageController,
    ClientsController,
    DashboardController,
    UsersController,
)
from admin_ui.errors import HTML_EXCEPTION_HANDLERS
from admin_ui.grants_pages import GrantsController
from admin_ui.i18n import LOCALES, translations
from admin_ui.imports_pages import ImportsController
from admin_ui.inventory_pages import BatchesController, CodesController, StockController
from admin_ui.members_pages import MembersController
from admin_ui.platform import PlatformAuthController, PlatformConsoleController
from admin_ui.redemption_pages import RedeemController
from admin_ui.reminders_pages import RemindersController
from admin_ui.risk_pages import RiskPageController
from admin_ui.webhooks_pages import WebhooksController


def console_routes() -> list[Router]:
    """The two console routers (catalogs are compiled here, so a broken catalog fails at start-up)."""
    for locale in LOCALES:
        translations(locale)
    return [
        Router(
            path="/platform",
            route_handlers=[PlatformAuthController, PlatformConsoleController],
            exception_handlers=HTML_EXCEPTION_HANDLERS,
            include_in_schema=False,
        ),
        Router(
            path="/console",
            route_handlers=[
                ConsoleAuthController,
                DashboardController,
                UsersController,
                ClientsController,
                AuditPageController,
                ProductsController,
                StockController,
                BatchesController,
                CodesController,
                ImportsController,
                BulkGrantsController,
                RemindersController,
                RedeemController,
                MembersController,
                GrantsController,
                CampaignsController,
                WebhooksController,
                RiskPageController,
            ],
            exception_handlers=HTML_EXCEPTION_HANDLERS,
            include_in_schema=False,
        ),
    ]
