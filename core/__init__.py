"""kaquan core: the tenant-scoped engine."""
