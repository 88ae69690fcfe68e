"""Background work: dramatiq broker, tenant-carrying middleware, transactional outbox, scheduler."""
