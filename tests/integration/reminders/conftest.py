"""Fixtures for expiry-reminder tests: the job harness (recording notifier) from the jobs tests."""

from __future__ import annotations

from tests.integration.jobs.conftest import jobs, plugin_host, recorder

__all__ = ["jobs", "plugin_host", "recorder"]
