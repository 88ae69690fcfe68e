"""Every built-in connector passes the conformance kit (SMTP also on a refused connection; the sandbox channel
against its in-process shop)."""

from __future__ import annotations

import socket

import pytest

from plugins.builtin.log_notifier import LogNotifier
from plugins.builtin.sandbox_channel import SandboxChannel, SandboxConfig
from plugins.builtin.smtp_notifier import SmtpConfig, SmtpNotifier
from plugins.testing import channel_conformance, notifier_conformance
from tests.plugins.sandbox_simulator import SandboxSimulator

TestLogNotifier = notifier_conformance(LogNotifier, entry_point="log_notifier")


class TestSmtpNotifier(notifier_conformance(SmtpNotifier(), entry_point="smtp_notifier")):
    @pytest.fixture
    def connector_config(self, smtp_sink) -> SmtpConfig:
        return SmtpConfig(host=smtp_sink.host, port=smtp_sink.port, sender="kaquan@example.com")

    @pytest.fixture
    def unreachable_config(self) -> SmtpConfig:
        """A port nothing listens on: the connection is refused."""
        return SmtpConfig(host="127.0.0.1", port=_closed_port(), sender="kaquan@example.com", timeout_seconds=2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestSandboxChannel(channel_conformance(SandboxChannel(), SandboxSimulator, entry_point="sandbox_channel")):
    @pytest.fixture
    def connector_config(self) -> SandboxConfig:
        return SandboxConfig(signing_secret="kit-signing-secret", page_size=5)
