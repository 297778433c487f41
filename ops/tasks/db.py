"""Invoke collection: db."""
