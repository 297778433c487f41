"""Invoke collection: helm."""
