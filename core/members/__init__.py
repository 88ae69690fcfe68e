"""Members: the tenant's end users who receive, hold, transfer and redeem codes."""
