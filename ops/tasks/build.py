"""Invoke collection: build — sdists and wheels of the service packages (services/*) with uv."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

OUT_HELP = "output directory, relative to the repository root (default: dist)"


@task(default=True, help={"out": OUT_HELP, "clear": "empty the output directory first"})
def build(c: Context, out: str = "dist", clear: bool = False) -> None:
    """Build an sdist and a wheel of every package under services/ (uv build)."""
    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    runner = runner_for(c)
    target = project.ROOT / out
    for number, package in enumerate(python_tools.service_packages()):
        argv = python_tools.uv("build", "--out-dir", str(target), "--no-create-gitignore")
        if clear and number == 0:
            argv.append("--clear")  # uv empties the output directory before the first build
        runner.run([*argv, str(package.relative_to(project.ROOT))], cwd=project.ROOT)
    if not runner.dry_run:
        _show_artifacts(target)


@task(help={"out": "output directory, relative to the repository root (default: dist/debug)"})
def debug(c: Context, out: str = "dist/debug") -> None:
    """Build the wheels verbosely (every build-backend step shown) and list each wheel's files."""
    import zipfile

    from ops.core import project, python_tools
    from ops.core.runner import runner_for

    runner = runner_for(c)
    target = project.ROOT / out
    for package in python_tools.service_packages():
        runner.run(
            [
                *python_tools.uv("build", "--verbose", "--wheel", "--out-dir", str(target)),
                "--no-create-gitignore",
                "--clear",
                str(package.relative_to(project.ROOT)),
            ],
            cwd=project.ROOT,
        )
        if runner.dry_run:
            continue
        wheels = sorted(target.glob("*.whl"))
        if not wheels:
            raise Exit(f"uv build reported success but wrote no wheel into {target}", code=1)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                print(f"{wheel.name}:")
                for info in archive.infolist():
                    print(f"  {info.file_size:>9}  {info.filename}")


def _show_artifacts(target: Path) -> None:
    found = target.iterdir() if target.is_dir() else iter(())
    artifacts = sorted(p for p in found if p.suffix in (".whl", ".gz"))
    if not artifacts:
        raise Exit(f"uv build reported success but wrote nothing into {target}", code=1)
    for artifact in artifacts:
        print(f"{artifact.stat().st_size:>10}  {artifact}")
