"""Domain events (stock.low, stock.near_expiry, …): written in the transaction of the change, readable as a
feed (``GET /api/v1/events``) and the source that webhook delivery (issue 4) relays from."""
