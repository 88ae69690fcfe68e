"""Fixtures the redemption tests share with the console tests (Browser, users) and the browser tests
(live server, Chromium page)."""

from tests.e2e.conftest import chromium, live_server, operator_account, page  # noqa: F401
from tests.integration.console.conftest import browser, make_user, new_browser  # noqa: F401
