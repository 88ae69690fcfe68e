"""The console helpers (cookie-isolated browser, users with roles) for the risk console tests."""

from tests.integration.console.conftest import browser, make_user  # noqa: F401
