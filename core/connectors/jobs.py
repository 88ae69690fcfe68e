"""Connector-account jobs: the periodic refresh of OAuth2 tokens before they expire."""

from __future__ import annotations

import structlog

from core.connectors import oauth
from core.jobs.context import current_env
from core.jobs.registry import job

log = structlog.get_logger("kaquan.connectors")

REFRESH_ACTOR = "refresh_connector_tokens"


@job(REFRESH_ACTOR, queue="maintenance", max_retries=3)
async def refresh_connector_tokens() -> None:
    """Refresh the tenant's account tokens expiring within :data:`core.connectors.oauth.REFRESH_MARGIN`;
    a refusal pauses the account and alerts the tenant (see :mod:`core.connectors.oauth`)."""
    env = current_env()
    report = await oauth.refresh_due(env.db(), env.keys, env.plugins, env.settings)
    if report.refreshed or report.paused or report.retry_later:
        log.info(
            "connector_tokens_refreshed",
            refreshed=len(report.refreshed),
            paused=len(report.paused),
            retry_later=len(report.retry_later),
        )
