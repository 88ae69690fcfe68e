"""The HTTP domain: stored idempotency keys (the rest of the pipeline is kernel, not a domain)."""

from core.domains import Domain

domain = Domain(name="http", models=("core.http.models",))
