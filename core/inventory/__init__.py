"""Card-key inventory: batches of costed, expiring, secret codes; allocation; alerts (issue 3)."""
