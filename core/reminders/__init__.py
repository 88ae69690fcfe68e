"""Expiry reminders (沉睡券): members holding unredeemed codes hear once, N days before they expire."""
