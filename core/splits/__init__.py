"""Revenue splits: versioned split rules and the append-only split ledger of channel order lines."""
