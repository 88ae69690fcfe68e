"""Settlement with sales channels: statements, reconciliation against our order lines and split ledger,
and settlements per channel account and period."""
