"""The request pipeline: problem+json errors, request logging, rate limits, idempotency."""
