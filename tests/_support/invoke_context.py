"""An Invoke MockContext that records every command a task runs and answers it by regex."""

from __future__ import annotations

import re
import shlex
from typing import Any

from invoke.config import Config
from invoke.context import MockContext
from invoke.runners import Result

from ops.tasks.root import DEFAULT_CONFIG


class Recorder(MockContext):
    """The tasks' real default config plus ``overrides``; every command is recorded (as argv)
    and answered by the first ``answers`` pattern it matches, else with exit 0."""

    def __init__(self, answers: dict[str, Result] | None = None, **overrides: Any) -> None:
        config = Config(overrides=overrides)
        config.load_collection(DEFAULT_CONFIG)
        super().__init__(config=config, run=Result(), repeat=True)
        # Context proxies attribute writes to its config; _set makes real attributes.
        self._set(answers=answers or {}, commands=[])
        self.answers: dict[str, Result]
        self.commands: list[list[str]]

    def run(self, command: str, *args: Any, **kwargs: Any) -> Result:
        self.commands.append(shlex.split(command))
        for pattern, result in self.answers.items():
            if re.search(pattern, command):
                return result
        return Result(command=command)
