"""The webhooks domain: subscriptions, signed deliveries with retries, the delivery log."""

import datetime as dt

from core.domains import ADMINS, Domain, Periodic

domain = Domain(
    name="webhooks",
    api=("core.webhooks.api:WebhooksController", "core.webhooks.api:WebhookDeliveriesController"),
    console=("admin_ui.webhooks_pages:WebhooksController",),
    models=("core.webhooks.models",),
    jobs=("core.webhooks.jobs",),
    periodic=(Periodic("sweep_webhook_deliveries", "sweep_webhook_deliveries", dt.timedelta(minutes=5)),),
    scopes={"webhooks:manage": "Manage webhook subscriptions, read the delivery log and resend deliveries."},
    permissions={"webhooks.manage": ADMINS},
)
