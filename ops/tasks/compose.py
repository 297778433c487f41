"""Invoke collection: compose."""
