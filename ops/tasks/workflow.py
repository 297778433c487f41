"""Root-level developer tasks (install, lint, fmt, audit, clean, dev, ci, pre-commit, all, info,
health-check). ``ops.tasks.root`` imports them into the root collection; this module is not an
area of its own.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.deploy.service_cli import TARGET_HELP

# What `invoke clean` removes: build outputs and tool caches, never .venv or state.
CLEAN_PATHS = (
    "dist",
    "build",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".coverage",
    "htmlcov",
)
CLEAN_GLOBS = ("**/__pycache__", "**/*.egg-info", "services/*/dist")


@task(
    help={"group": "install only this dependency group (repeat; default: all groups)"},
    iterable=["group"],
)
def install(c: Context, group: list[str] | None = None) -> None:
    """Install every workspace package (locked versions) and the dependency groups into .venv."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    groups = [f"--group={g}" for g in group] if group else ["--all-groups"]
    runner_for(c).run(
        python_tools.uv("sync", "--locked", "--all-packages", *groups), cwd=project.ROOT
    )


@task
def lint(c: Context) -> None:
    """ruff check and format check, vulture, import contracts (the nox `lint` session)."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    runner_for(c).run(python_tools.nox(["lint"]), cwd=project.ROOT)


@task(help={"check": "only report what would change (exit 1 if anything would)"})
def fmt(c: Context, check: bool = False) -> None:
    """Format the code and apply ruff's safe fixes (ruff format, ruff check --fix)."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    runner = runner_for(c)
    if check:
        runner.run(
            python_tools.uv_run(["lint"], "ruff", "format", "--check", "--diff", "."),
            cwd=project.ROOT,
        )
        runner.run(python_tools.uv_run(["lint"], "ruff", "check", "."), cwd=project.ROOT)
        return
    runner.run(python_tools.uv_run(["lint"], "ruff", "check", "--fix", "."), cwd=project.ROOT)
    runner.run(python_tools.uv_run(["lint"], "ruff", "format", "."), cwd=project.ROOT)


@task(
    help={
        "offline": "licence review only; skip the vulnerability scan, which needs the network",
        "dry_run": "print the commands and run nothing",
    }
)
def audit(c: Context, offline: bool = False, dry_run: bool = False) -> None:
    """Review the shipped dependencies: licences (offline) and known vulnerabilities (network)."""
    from ops.core.runner import runner_for
    from ops.release import audit as audit_

    audit_.run(runner_for(c, dry_run=dry_run), offline=offline)


@task(
    help={
        "nox": "also remove the nox session venvs (.nox)",
        "dry_run": "list what would be removed and remove nothing",
    }
)
def clean(c: Context, nox: bool = False, dry_run: bool = False) -> None:
    """Remove build outputs and tool caches (dist, caches, __pycache__); never .venv or state."""
    import shutil

    from ops.core import project
    from ops.core.runner import runner_for

    dry = runner_for(c, dry_run=dry_run).dry_run
    root = project.ROOT
    paths = [root / p for p in (*CLEAN_PATHS, *([".nox"] if nox else []))]
    paths += [p for pattern in CLEAN_GLOBS for p in root.glob(pattern) if ".venv" not in p.parts]
    removed = 0
    for path in sorted({p for p in paths if p.exists() or p.is_symlink()}):
        print(f"{'[dry-run] would remove' if dry else 'removing'} {path.relative_to(root)}")
        removed += 1
        if dry:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if not removed:
        print("nothing to clean")


@task(help={"dry_run": "print the plan and change nothing"})
def dev(c: Context, dry_run: bool = False) -> None:
    """Set up for development: install every group, then deploy locally (dev) and print the URLs."""
    from ops.core.runner import runner_for
    from ops.deploy import targets as deploy

    if runner_for(c, dry_run=dry_run).dry_run:
        print("[dry-run] would run: invoke install")
    else:
        install(c)
    deploy.run(c, target="local", env="dev", dry_run=dry_run)


@task
def ci(c: Context) -> None:
    """Run what CI runs: the default nox sessions (lint, typecheck, tests)."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    runner_for(c).run(python_tools.nox(), cwd=project.ROOT)


@task(name="pre-commit")
def pre_commit(c: Context) -> None:
    """Quick checks before committing: the nox `lint` and `typecheck` sessions."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    runner_for(c).run(python_tools.nox(["lint", "typecheck"]), cwd=project.ROOT)


@task(name="all")
def all_(c: Context) -> None:
    """Everything: the default nox sessions (lint, typecheck, tests), then build the packages."""
    from ops.tasks import build

    ci(c)
    build.build(c)


@task
def info(c: Context) -> None:
    """Versions, git sha, deploy targets and their availability, and the tools found (doctor)."""
    import platform

    from ops.core import project, provision, python_tools
    from ops.core.runner import runner_for
    from ops.deploy import targets as deploy

    runner = runner_for(c)
    runner.echo = False
    sha = runner.run(
        ["git", "rev-parse", "--short", "HEAD"], capture=True, check=False, cwd=project.ROOT
    )
    uv_version = runner.run([python_tools.uv_executable(), "--version"], capture=True, check=False)
    import invoke

    print(f"{project.PROJECT} {project.version()}")
    git_sha = sha.stdout.strip() if sha and sha.ok else "unknown (not a git checkout?)"
    print(f"  git sha      {git_sha}")
    print(f"  python       {platform.python_version()} ({platform.python_implementation()})")
    print(f"  invoke       {invoke.__version__}")
    uv_text = uv_version.stdout.strip() if uv_version and uv_version.ok else "not found"
    print(f"  uv           {uv_text}")
    for package in python_tools.service_packages():
        import tomllib

        meta = tomllib.loads((package / "pyproject.toml").read_text())["project"]
        print(
            f"  package      {meta['name']} {meta['version']} ({package.relative_to(project.ROOT)})"
        )
    print("deploy targets (invoke deploy --target T):")
    for target in deploy.TARGETS.values():
        print(f"  {target.name:<11} {target.summary}")
    print("environments (invoke deploy --env E):")
    for environment in deploy.ENVIRONMENTS.values():
        print(f"  {environment.name:<11} {environment.summary}")
    statuses = provision.report(runner, provision.select(None))
    print(f"tools (invoke doctor): {provision.summary(statuses)}")
    for status in provision.problems(statuses):
        print(f"  missing or wrong version: {status.tool.name} — {status.tool.install_hint()}")


@task(
    name="health-check",
    help={
        "json": "print the health report as JSON",
        "target": TARGET_HELP,
        "dry_run": "print the command and run nothing",
    },
)
def health_check(
    c: Context, json: bool = False, target: str = "local", dry_run: bool = False
) -> None:
    """Check a deployment with the service's own `health` command (exit 0/1/2: healthy,
    unhealthy, degraded), run where the service runs (ops.deploy.service_cli)."""
    from ops.core.runner import runner_for
    from ops.deploy import service_cli

    call = service_cli.invocation(
        c, target, ["health", *(["--json"] if json else [])], in_running_service=True
    )
    if call.service_command is not None and not dry_run and not call.service_command.exists():
        raise Exit("nothing is deployed locally yet; run: uv run invoke deploy", code=1)
    result = runner_for(c, dry_run=dry_run).run(call.argv, env=call.env, cwd=call.cwd, check=False)
    if result is None:
        return
    meaning = {0: "healthy", 1: "unhealthy", 2: "degraded"}.get(result.exited, "failed")
    if result.exited != 0:
        raise Exit(
            f"the {target} deployment is {meaning} (exit {result.exited}); see above",
            code=result.exited,
        )
    print(f"the {target} deployment is healthy")
