"""Channel orders: callbacks and polling, fulfilment with codes, refunds and two-way redemption."""
