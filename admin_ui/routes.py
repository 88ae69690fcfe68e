"""Console route handlers (operator console, tenant console)."""

from __future__ import annotations

from typing import Any


def console_routes() -> list[Any]:
    return []
