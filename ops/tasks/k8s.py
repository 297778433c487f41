"""Invoke collection: k8s."""
