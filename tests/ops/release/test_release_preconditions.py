"""Bad input stops a release before anything is written, with a message that names the fix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit
from invoke.runners import Result

from ops.core import project, tools
from ops.core.runner import CommandFailedError, Runner
from ops.release import cut as release
from tests.ops.release.conftest import clean_env, git

VERSION = project.version()


def check(repo: Path, version: str = VERSION, *, run_tests: bool = False) -> None:
    release.check_preconditions(Runner(echo=False), version, run_tests=run_tests, root=repo)


def failure_of(repo: Path, version: str = VERSION) -> str:
    with pytest.raises(Exit) as excinfo:
        check(repo, version)
    assert not (repo / "dist").exists(), "a refused release must write nothing"
    return str(excinfo.value.message)


def test_a_clean_clone_on_main_passes(clone: Path) -> None:
    check(clone)


def test_dirty_tree_is_refused(clone: Path) -> None:
    (clone / "README.md").write_text("edited\n")
    assert "working tree is not clean" in failure_of(clone)


def test_other_branch_is_refused(clone: Path) -> None:
    git(clone, "checkout", "--quiet", "-b", "feature")
    message = failure_of(clone)
    assert "releases are cut from 'main', not 'feature'" in message


def test_existing_tag_is_refused(clone: Path) -> None:
    git(clone, "tag", release.tag_name(VERSION))
    assert f"{release.tag_name(VERSION)} is already tagged" in failure_of(clone)


def test_other_version_is_refused(clone: Path) -> None:
    assert "invoke release.bump --version 9.9.9" in failure_of(clone, "9.9.9")


def test_missing_tool_is_refused(clone: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = tools.which
    monkeypatch.setattr(tools, "which", lambda name: None if name == "helm" else real_which(name))
    message = failure_of(clone)
    assert "tool 'helm' is missing; install it with:" in message
    assert tools.CATALOGUE["helm"].install_hint() in message


def test_every_failure_is_listed_at_once(clone: Path) -> None:
    (clone / "README.md").write_text("edited\n")
    git(clone, "tag", release.tag_name(VERSION))
    message = failure_of(clone)
    assert "not clean" in message
    assert "already tagged" in message


def test_red_tests_stop_the_release(clone: Path) -> None:
    # Git answers "clean tree on main, no tag"; the nox run (the tests) exits 1.
    ctx = MockContext(
        run={
            re.compile(r".*git rev-parse --abbrev-ref HEAD$"): Result(stdout="main"),
            re.compile(r".*git (status|tag) .*"): Result(stdout=""),
            re.compile(r".* -m nox$"): Result(exited=1),
        },
        repeat=True,
    )
    with pytest.raises(CommandFailedError) as excinfo:
        release.check_preconditions(
            Runner(ctx=ctx, echo=False), VERSION, run_tests=True, root=clone
        )
    assert "tests are not green" in str(excinfo.value.message)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["release", "--version", "1.2"], "is not a SemVer version"),
        (["release.bump", "--part", "huge"], "unknown part 'huge'"),
        (["release.bump"], "give exactly one of --part"),
        (["release.build", "--platform", "windows-x86"], "unknown platform windows-x86"),
        (["release.publish"], "set: LLM_OPTIMIZER_REGISTRY"),
    ],
)
def test_bad_arguments_exit_non_zero_with_the_fix(
    clone: Path, args: list[str], expected: str
) -> None:
    env = {k: v for k, v in clean_env().items() if not k.startswith(("LLM_OPTIMIZER_", "GITHUB_"))}
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project.ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout
    assert not (project.ROOT / "dist" / "1.2").exists()
