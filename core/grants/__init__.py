"""Grants: codes handed to a member or a contact, drawn from the inventory allocation service."""
