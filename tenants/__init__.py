"""Platform level: tenant registry, plans and quotas, users, roles, auth and the tenant context."""
