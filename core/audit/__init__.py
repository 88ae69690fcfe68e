"""The audit chain: per-tenant events written in the transaction of the change, sealed after commit in
hash-linked blocks (one ``audit_seals`` row per block; events are never updated)."""
