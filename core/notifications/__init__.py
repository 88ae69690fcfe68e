"""Notifications: render a template, deliver it through a notifier connector, from a job."""
