"""Recipient checks shared by the built-in notifiers (SDK-level code only)."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$")
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_URL = re.compile(r"^https?://[^\s]+$")


def recipient_problem(channel: str, to: str) -> str | None:
    """Why ``to`` cannot be a recipient on ``channel`` (``None`` when it looks deliverable)."""
    to = to.strip()
    if not to:
        return "empty recipient"
    if channel == "email" and not _EMAIL.match(to):
        return "not an e-mail address"
    if channel == "sms" and not _PHONE.match(to.replace(" ", "").replace("-", "")):
        return "not a phone number"
    if channel == "webhook" and not _URL.match(to):
        return "not an http(s) URL"
    return None
