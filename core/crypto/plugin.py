"""The crypto domain: per-tenant data keys under the master key (envelope encryption)."""

from core.domains import Domain

domain = Domain(name="crypto", models=("core.crypto.models",))
