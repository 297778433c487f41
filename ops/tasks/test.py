"""Invoke collection: test — the pytest suite through nox, watch mode, benchmarks, coverage."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

PATH_HELP = "test file or directory (default: the whole suite)"
K_HELP = "only tests matching this pytest -k expression"
WATCHED = ("ops", "services", "tests", "tasks.py", "noxfile.py")


def _pytest_args(path: str, k: str, exitfirst: bool) -> list[str]:
    args = [path] if path else []
    if k:
        args += ["-k", k]
    if exitfirst:
        args.append("-x")
    return args


@task(default=True, help={"path": PATH_HELP, "k": K_HELP, "exitfirst": "stop at the first failure"})
def suite(c: Context, path: str = "", k: str = "", exitfirst: bool = False) -> None:
    """Run the test suite (the nox `tests` session, as CI does)."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    runner_for(c).run(
        python_tools.nox(["tests"], _pytest_args(path, k, exitfirst)), cwd=project.ROOT
    )


@task(help={"path": PATH_HELP, "k": K_HELP})
def watch(c: Context, path: str = "", k: str = "") -> None:
    """Re-run pytest (stopping at the first failure) whenever a Python file changes; Ctrl-C ends."""
    import shlex

    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    pytest = shlex.join(["pytest", "-q", *_pytest_args(path, k, exitfirst=True)])
    runner_for(c).run(
        python_tools.uv_run(
            ["test", "infra"], "watchfiles", "--filter", "python", pytest, *WATCHED
        ),
        cwd=project.ROOT,
    )


@task(help={"scenario": "benchmark scenario to run (default: all of them)"})
def bench(c: Context, scenario: str = "") -> None:
    """Run the benchmarks (the nox `bench` session)."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    runner_for(c).run(python_tools.nox(["bench"], [scenario] if scenario else []), cwd=project.ROOT)


@task(
    help={
        "path": PATH_HELP,
        "html": "also write an HTML report (directory under the cache dir, printed at the end)",
        "fail_under": "fail when total coverage is below this percentage (0: never)",
    }
)
def coverage(c: Context, path: str = "", html: bool = False, fail_under: int = 0) -> None:
    """Run the test suite under coverage (nox `tests` with pytest-cov) and print the report."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    args = [
        "--cov=ops",
        "--cov=llm_optimizer_service",
        "--cov=llm_optimizer_cli",
        "--cov-report=term-missing:skip-covered",
        f"--cov-fail-under={fail_under}",
    ]
    if html:
        args.append(f"--cov-report=html:{project.cache_dir() / 'htmlcov'}")
    runner_for(c).run(
        python_tools.nox(["tests"], [*args, *_pytest_args(path, "", False)]), cwd=project.ROOT
    )
