"""Invoke collection: deploy."""
