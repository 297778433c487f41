"""The command each developer task builds (build, test, lint, fmt, ci, …), with MockContext."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from invoke.exceptions import Exit

from ops.core import project
from ops.tasks import build, db, test, workflow
from tests._support.invoke_context import Recorder


def nox_args(argv: list[str]) -> list[str]:
    """The arguments after `python -m nox`."""
    assert argv[1:3] == ["-m", "nox"], argv
    return argv[3:]


def test_build_makes_sdist_and_wheel_of_each_service_package() -> None:
    c = Recorder(run={"dry": False})
    with pytest.raises(Exit, match="wrote nothing"):  # the mock writes no files: checked
        build.build(c, out="dist-test-never-written")
    packages = sorted(
        str(p.relative_to(project.ROOT))
        for p in project.ROOT.glob("services/*")
        if (p / "pyproject.toml").exists()
    )
    assert len(packages) >= 2
    built = [argv for argv in c.commands if argv[1:2] == ["build"]]
    assert [argv[-1] for argv in built] == packages
    assert built[0][2:4] == ["--out-dir", str(project.ROOT / "dist-test-never-written")]


def test_build_dry_run_shows_every_package_and_runs_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = Recorder(run={"dry": True})
    build.build(c, clear=True)
    err = capsys.readouterr().err
    assert c.commands == []
    assert "--clear services/cli" in err
    assert re.search(r"uv build --out-dir \S+/dist --no-create-gitignore services/optimizer", err)


def test_test_task_runs_the_nox_tests_session_with_pytest_options() -> None:
    c = Recorder()
    test.suite(c, path="tests/ops", k="deploy", exitfirst=True)
    assert nox_args(c.commands[-1]) == [
        "--sessions",
        "tests",
        "--",
        "tests/ops",
        "-k",
        "deploy",
        "-x",
    ]


def test_coverage_adds_pytest_cov_options() -> None:
    c = Recorder()
    test.coverage(c, html=True, fail_under=80)
    args = nox_args(c.commands[-1])
    assert args[:3] == ["--sessions", "tests", "--"]
    assert {"--cov=ops", "--cov=llm_optimizer_service", "--cov=llm_optimizer_cli"} <= set(args)
    assert "--cov-fail-under=80" in args
    assert any(a.startswith("--cov-report=html:") for a in args)


def test_watch_reruns_pytest_through_watchfiles() -> None:
    c = Recorder()
    test.watch(c, k="runner")
    argv = c.commands[-1]
    assert argv[1:5] == ["run", "--locked", "--group=test", "--group=infra"]
    assert argv[5:8] == ["watchfiles", "--filter", "python"]
    assert argv[8] == "pytest -q -k runner -x"
    assert {"ops", "services", "tests"} <= set(argv[9:])


def test_bench_runs_the_nox_bench_session_with_the_scenario() -> None:
    c = Recorder()
    test.bench(c, scenario="decide")
    assert nox_args(c.commands[-1]) == ["--sessions", "bench", "--", "decide"]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (workflow.lint, ["--sessions", "lint"]),
        (workflow.pre_commit, ["--sessions", "lint", "typecheck"]),
        (workflow.ci, []),
    ],
)
def test_checks_run_the_nox_sessions(task: Any, expected: list[str]) -> None:
    c = Recorder()
    task(c)
    assert nox_args(c.commands[-1]) == expected


def test_install_syncs_every_package_and_group_from_the_lock() -> None:
    c = Recorder()
    workflow.install(c)
    assert c.commands[-1][1:] == ["sync", "--locked", "--all-packages", "--all-groups"]
    workflow.install(c, group=["lint", "test"])
    assert c.commands[-1][1:] == [
        "sync",
        "--locked",
        "--all-packages",
        "--group=lint",
        "--group=test",
    ]


def test_fmt_fixes_then_formats_and_check_only_reports() -> None:
    c = Recorder()
    workflow.fmt(c)
    assert [argv[4:] for argv in c.commands] == [
        ["ruff", "check", "--fix", "."],
        ["ruff", "format", "."],
    ]
    c = Recorder()
    workflow.fmt(c, check=True)
    assert [argv[4:] for argv in c.commands] == [
        ["ruff", "format", "--check", "--diff", "."],
        ["ruff", "check", "."],
    ]


def test_all_runs_ci_then_build() -> None:
    c = Recorder(run={"dry": False})
    with pytest.raises(Exit, match="wrote nothing"):
        workflow.all_(c)
    assert nox_args(c.commands[0]) == []
    assert c.commands[1][1] == "build"


def test_clean_dry_run_lists_and_removes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = project.ROOT / ".pytest_cache"
    existed = marker.exists()
    workflow.clean(Recorder(), dry_run=True)
    out = capsys.readouterr().out
    assert ".venv" not in out
    assert marker.exists() == existed
    assert all(
        line.startswith("[dry-run] would remove")
        for line in out.splitlines()
        if line != "nothing to clean"
    )


def test_db_tasks_need_a_local_deployment_or_print_the_command_in_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides: dict[str, dict[str, Any]] = {
        "llm_optimizer": {"local": {"state_dir": str(tmp_path)}}
    }
    with pytest.raises(Exit, match="nothing is deployed locally yet; run: uv run invoke deploy"):
        db.migrate(Recorder(**overrides))
    db.backup(Recorder(**overrides), dry_run=True)
    assert f"{tmp_path}/venv/bin/llm-optimizer-service backup create" in capsys.readouterr().err
    with pytest.raises(Exit, match="run again with --yes"):
        db.restore(Recorder(**overrides), path="backup.db")
    db.restore(Recorder(**overrides), path="backup.db", yes=True, dry_run=True)
    assert "llm-optimizer-service backup restore backup.db --force" in capsys.readouterr().err
    with pytest.raises(Exit, match=r"unknown --target 'nomad'"):
        db.migrate(Recorder(**overrides), target="nomad")


def test_health_check_needs_a_local_deployment(tmp_path: Path) -> None:
    overrides: dict[str, dict[str, Any]] = {
        "llm_optimizer": {"local": {"state_dir": str(tmp_path)}}
    }
    with pytest.raises(Exit, match="nothing is deployed locally yet"):
        workflow.health_check(Recorder(**overrides))


def test_dev_dry_run_shows_install_then_the_local_deploy_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides: dict[str, dict[str, Any]] = {
        "llm_optimizer": {"local": {"state_dir": str(tmp_path / "state")}}
    }
    c = Recorder(**overrides)
    workflow.dev(c, dry_run=True)
    out = capsys.readouterr().out
    assert out.index("[dry-run] would run: invoke install") < out.index("local deploy (dev)")
    assert "dry run: nothing was changed" in out
    assert c.commands == []
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("task", "kwargs"),
    [
        (build.build, {}),
        (build.debug, {}),
        (test.suite, {}),
        (test.watch, {}),
        (test.coverage, {}),
        (workflow.install, {}),
        (workflow.lint, {}),
        (workflow.fmt, {}),
        (workflow.audit, {}),
        (workflow.clean, {}),
        (workflow.ci, {}),
        (workflow.pre_commit, {}),
        (workflow.all_, {}),
        (workflow.dev, {}),
        (db.migrate, {}),
        (db.backup, {}),
        (db.restore, {"path": "x.db", "yes": True}),
    ],
    ids=lambda v: getattr(v, "name", "") if not isinstance(v, dict) else "",
)
def test_invoke_dry_runs_no_command(
    task: Any, kwargs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`invoke --dry TASK` (config run.dry) is safe: commands are printed, none is run."""
    c = Recorder(run={"dry": True}, llm_optimizer={"local": {"state_dir": str(tmp_path / "state")}})
    task(c, **kwargs)
    assert c.commands == []
    assert not (tmp_path / "state").exists()
