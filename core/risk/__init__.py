"""Risk control: tenant-configurable limits, lockouts, blocklists and flags guarding grants, claims,
transfers and redemptions. Callers use :mod:`core.risk.gate`; the rules live in :mod:`core.risk.engine`."""
