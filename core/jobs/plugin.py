"""The jobs domain: the outbox, job progress, and the housekeeping purges."""

import datetime as dt

from core.domains import FINANCE, OPERATORS, Domain, Periodic

domain = Domain(
    name="jobs",
    api=("core.jobs.api:JobsController",),
    models=("core.jobs.models",),
    jobs=("core.jobs.actors",),
    periodic=(
        Periodic("purge_idempotency_keys", "purge_expired_idempotency_keys", dt.timedelta(hours=1)),
        Periodic("purge_access_tokens", "purge_expired_access_tokens", dt.timedelta(hours=1)),
        Periodic("purge_job_ledgers", "purge_job_ledgers", dt.timedelta(days=1)),
    ),
    scopes={"jobs:read": "Read background job progress."},
    permissions={"jobs.read": OPERATORS | FINANCE},
)
