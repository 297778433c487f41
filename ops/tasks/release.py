"""Invoke collection: release."""
