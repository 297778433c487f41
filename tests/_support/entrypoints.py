"""The repository's entry points as the tools themselves see them: Invoke's task collection
(tasks.py) and nox's session registry (noxfile.py). Tests derive names from here."""

from __future__ import annotations

import copy
from functools import cache

import nox.registry
from invoke.parser import Argument
from invoke.tasks import Task


@cache
def invoke_tasks(*, aliases: bool = True) -> dict[str, Task]:
    """Every task by its dotted name, and by its aliases and collection defaults too unless
    ``aliases`` is false."""
    from tasks import ns

    found: dict[str, Task] = {}
    for name, other_names in ns.task_names.items():
        for each in (name, *(other_names if aliases else ())):
            found[each] = ns[name]
    return found


@cache
def nox_sessions() -> set[str]:
    """Every session noxfile.py defines, default or not (parametrized ones by base name)."""
    import noxfile  # registers its sessions

    del noxfile
    return set(nox.registry.get())


def arguments(task: Task) -> list[Argument]:
    """The task's arguments. Invoke's ``get_arguments`` pops each help text off the task as it
    goes, so it runs on a copy: the real task keeps its help for the tests that check it."""
    clone = copy.copy(task)
    clone.help = dict(task.help)
    return clone.get_arguments()
