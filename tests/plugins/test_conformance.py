"""Every built-in connector passes the conformance kit."""

from __future__ import annotations

import pytest

from plugins.builtin.log_notifier import LogNotifier
from plugins.builtin.smtp_notifier import SmtpConfig, SmtpNotifier
from plugins.testing import notifier_conformance

TestLogNotifier = notifier_conformance(LogNotifier, entry_point="log_notifier")


class TestSmtpNotifier(notifier_conformance(SmtpNotifier(), entry_point="smtp_notifier")):
    @pytest.fixture
    def connector_config(self, smtp_sink) -> SmtpConfig:
        return SmtpConfig(host=smtp_sink.host, port=smtp_sink.port, sender="kaquan@example.com")
