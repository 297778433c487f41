"""Shared test support: tool lookup, free ports, server fixtures' helpers."""
