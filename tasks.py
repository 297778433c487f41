"""Invoke entry point: a thin root that mounts one collection per area (see docs/tasks.md)."""

from invoke.collection import Collection

from ops.tasks import root

ns = Collection.from_module(root)
ns.configure(root.DEFAULT_CONFIG)
for area in root.collections():
    ns.add_collection(area)
