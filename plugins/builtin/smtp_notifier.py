"""The built-in ``smtp_email`` notifier: sends e-mail through an SMTP server (stdlib ``smtplib``).

Platform-wide it is set up by ``KAQUAN_SMTP_HOST`` (with ``KAQUAN_SMTP_PORT`` and ``KAQUAN_SMTP_SENDER``):
:meth:`SmtpNotifier.platform_config` turns those settings into its config, and the host then routes e-mail
to it. A refused recipient is ``rejected``; a connection or server error is ``failed`` and retryable. The
password is a marked secret.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import msgspec

from plugins import (
    ConnectorContext,
    ConnectorInfo,
    DeliveryResult,
    Notification,
    Secret,
    hookimpl,
    mask_recipient,
)
from plugins.builtin._recipients import recipient_problem


class SmtpConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how to submit mail. ``starttls`` upgrades a plain connection; ``ssl`` connects with TLS."""

    host: str = "localhost"
    port: int = 25
    sender: str = "kaquan@localhost"
    username: str = ""
    password: Secret = ""
    starttls: bool = False
    ssl: bool = False
    timeout_seconds: float = 10.0


class SmtpNotifier:
    """One SMTP session per message (simple and robust; volume is low: invites, alerts)."""

    info = ConnectorInfo(
        id="smtp_email",
        kind="notifier",
        display_name="E-mail (SMTP)",
        display_name_zh="电子邮件（SMTP）",
        description="Sends e-mail through the configured SMTP server.",
        description_zh="通过配置的 SMTP 服务器发送电子邮件。",
        config=SmtpConfig,
        capabilities=frozenset({"email"}),
    )

    def platform_config(self, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """The platform's SMTP account: ``smtp_host`` (required), ``smtp_port`` and ``smtp_sender``."""
        if not settings.get("smtp_host"):
            return None
        config = {"host": settings["smtp_host"]}
        for name in ("port", "sender"):
            if f"smtp_{name}" in settings:
                config[name] = settings[f"smtp_{name}"]
        return config

    async def send(self, ctx: ConnectorContext, message: Notification) -> DeliveryResult:
        if message.channel != "email":
            return DeliveryResult(status="rejected", detail=f"unsupported channel {message.channel!r}")
        problem = recipient_problem("email", message.to)
        if problem:
            return DeliveryResult(status="rejected", detail=problem)
        config = ctx.config if isinstance(ctx.config, SmtpConfig) else SmtpConfig()
        mail = EmailMessage()
        mail["From"] = config.sender
        mail["To"] = message.to.strip()
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(ctx.now().timestamp(), localtime=False)
        domain = config.sender.rpartition("@")[2] or "localhost"
        message_id = make_msgid(idstring=message.reference[:40] or None, domain=domain)
        mail["Message-ID"] = message_id
        mail.set_content(message.body, charset="utf-8")
        try:
            await asyncio.to_thread(self._submit, config, mail)
        except smtplib.SMTPRecipientsRefused:
            ctx.log.warning("smtp_recipient_refused", to=mask_recipient(message.to))
            return DeliveryResult(status="rejected", detail="recipient refused by the mail server")
        except smtplib.SMTPAuthenticationError:
            ctx.log.error("smtp_auth_failed", host=config.host, port=config.port)
            return DeliveryResult(status="failed", detail="SMTP authentication failed", retryable=True)
        except (smtplib.SMTPException, OSError) as exc:
            ctx.log.warning("smtp_failed", host=config.host, port=config.port, error=type(exc).__name__)
            return DeliveryResult(status="failed", detail=f"SMTP error: {type(exc).__name__}", retryable=True)
        ctx.log.info("smtp_sent", to=mask_recipient(message.to), message_id=message_id)
        return DeliveryResult(status="sent", provider_message_id=message_id)

    @staticmethod
    def _submit(config: SmtpConfig, mail: EmailMessage) -> None:
        smtp_cls = smtplib.SMTP_SSL if config.ssl else smtplib.SMTP
        with smtp_cls(config.host, config.port, timeout=config.timeout_seconds) as smtp:
            if config.starttls and not config.ssl:
                smtp.starttls(context=ssl.create_default_context())
            if config.username:
                smtp.login(config.username, config.password)
            smtp.send_message(mail)


CONNECTOR = SmtpNotifier()


@hookimpl
def kaquan_connectors() -> list[SmtpNotifier]:
    return [CONNECTOR]
