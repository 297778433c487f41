"""Invoke collection: monitoring."""
