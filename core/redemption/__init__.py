"""Redemption (核销): exactly-once redemption, reusable codes, stored-value cards, rollback."""
