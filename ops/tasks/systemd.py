"""Invoke collection: systemd."""
