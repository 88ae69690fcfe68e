"""Connector accounts: a tenant's connection to a notifier, sales channel or supplier connector."""
