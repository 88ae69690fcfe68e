"""Consignment listings on sales channels: price rules, quotas and stock sync."""
