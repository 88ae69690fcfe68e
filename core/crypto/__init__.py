"""Envelope encryption: per-tenant data keys wrapped by a master key."""
