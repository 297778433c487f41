"""Invoke collections, one module per area; ``tasks.py`` mounts them."""
