"""Webhooks to the tenant's systems: subscriptions (URL, event types, signing secret), one delivery row per
(event, subscription), signed POSTs through the outbox with retries and backoff, a delivery log and resend.

Flow: :func:`core.events.services.emit` writes an outbox message per event in the event's transaction;
the ``fan_out_webhooks`` job creates a :class:`~core.webhooks.models.WebhookDelivery` for every matching
active subscription and queues ``deliver_webhook`` for attempt 1; each attempt is claimed atomically, so
a redelivered message never POSTs twice, and a failed attempt queues the next one with backoff.
"""
