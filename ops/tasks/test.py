"""Invoke collection: test."""
