"""The floor of the house: base classes, ids, the tenant context, sessions and RLS helpers."""
