"""Invoke collection: build."""
