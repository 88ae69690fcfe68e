"""The audit chain: per-tenant, hash-linked events written in the transaction of the change."""
