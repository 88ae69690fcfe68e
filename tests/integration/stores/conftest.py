"""Fixtures the store tests share with the console tests (Browser, users)."""

from tests.integration.console.conftest import browser, make_user, new_browser  # noqa: F401
