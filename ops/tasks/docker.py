"""Invoke collection: docker."""
