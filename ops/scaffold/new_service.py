"""``invoke new-service``: render ``templates/service`` into ``services/<name>`` and register it.

Plan → show → act → check. Every refusal (a bad name, an existing directory, a port another
service or the contract already uses) happens in the plan, before anything is written; a failure
while acting (rendering, ``uv add``) removes what was written and restores ``pyproject.toml``
and ``uv.lock``.

Registration is one ``uv add --group test <name>`` (the workspace glob ``services/*`` already
makes it a member; the ``test`` group installs it into the lint/typecheck/tests environments).
Everything else finds the service by its files: nox (``services/*/src`` and
``services/*/tests``), the image table (``ops/core/workspace.py`` →
``ops.docker.build_context.IMAGES``),
the chart (an ``extraServices`` item of its values, printed here).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml
from invoke.exceptions import Exit

from ops.core import project
from ops.core import workspace as services
from ops.core.runner import Runner
from ops.docker import base_image

TEMPLATE_DIR = project.ROOT / "templates" / "service"
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
NAME_MAX = 40
# Words the tooling already uses for something else (image keys, top-level directories, tasks).
RESERVED = frozenset(
    {"all", "service", "services", "cli", "ops", "tests", "templates", "infra", "docs", "build"}
)
FIRST_PORT, LAST_PORT = 8081, 8999  # the default HTTP port is the first free one here
METRICS_OFFSET = 1000  # metrics port = HTTP port + 1000 (8081 → 9081)


@dataclass(frozen=True)
class Plan:
    """What ``new-service`` will write."""

    name: str
    package: str
    env_prefix: str
    http_port: int
    metrics_port: int
    target: Path

    def context(self) -> dict[str, str]:
        """Cookiecutter's extra context (every template variable, derived here)."""
        return {
            "name": self.name,
            "package": self.package,
            "env_prefix": self.env_prefix,
            "http_port": str(self.http_port),
            "metrics_port": str(self.metrics_port),
            "version": project.version(),
            "base_image": base_image.default_tag(),
            "description": f"The {self.name} service of the LLM Auto Optimizer monorepo.",
        }


def used_ports(services_dir: Path = services.SERVICES_DIR) -> dict[int, str]:
    """port → who uses it: the contract's ports and every generated service's."""
    used = {
        project.HTTP_PORT: "the optimizer's REST API (contract)",
        project.GRPC_PORT: "the optimizer's gRPC API (contract)",
        project.METRICS_PORT: "the optimizer's metrics (contract)",
    }
    for service in services.discover(services_dir):
        used[service.http_port] = f"services/{service.directory.name} (http_port)"
        used[service.metrics_port] = f"services/{service.directory.name} (metrics_port)"
    return used


def _workspace_dists(services_dir: Path) -> set[str]:
    import tomllib

    names = {project.PROJECT + "-ops"}
    for pyproject in services_dir.glob("*/pyproject.toml"):
        with pyproject.open("rb") as fh:
            names.add(str(tomllib.load(fh)["project"]["name"]))
    return names


def check_name(name: str, services_dir: Path = services.SERVICES_DIR) -> str:
    """The name's Python package; Exit naming the problem and the fix otherwise."""
    if not NAME_RE.fullmatch(name) or not 2 <= len(name) <= NAME_MAX:
        raise Exit(
            f"invalid service name {name!r}: use 2-{NAME_MAX} characters, lowercase letters, "
            "digits and single hyphens, starting with a letter (e.g. billing-api)",
            code=1,
        )
    package = name.replace("-", "_")
    if name in RESERVED:
        raise Exit(
            f"invalid service name {name!r}: reserved by the tooling "
            f"({', '.join(sorted(RESERVED))}); choose another",
            code=1,
        )
    if name in _workspace_dists(services_dir):
        raise Exit(f"invalid service name {name!r}: a workspace package has it already", code=1)
    if package in sys.stdlib_module_names or importlib.util.find_spec(package) is not None:
        raise Exit(
            f"invalid service name {name!r}: its package {package!r} would shadow an existing "
            "Python module; choose another",
            code=1,
        )
    return package


def check_port(port: int, used: dict[int, str]) -> None:
    """Exit when ``port`` or its metrics port is out of range or already used."""
    if not 1024 <= port <= 65535 - METRICS_OFFSET:
        raise Exit(
            f"invalid port {port}: use 1024-{65535 - METRICS_OFFSET} (the metrics port is "
            f"port + {METRICS_OFFSET})",
            code=1,
        )
    for wanted, role in ((port, "HTTP"), (port + METRICS_OFFSET, "metrics")):
        if wanted in used:
            raise Exit(
                f"port clash: the {role} port {wanted} is already used by {used[wanted]}; "
                "pass another --port",
                code=1,
            )


def first_free_port(used: dict[int, str]) -> int:
    """The lowest HTTP port in 8081-8999 whose metrics port is free as well."""
    for port in range(FIRST_PORT, LAST_PORT + 1):
        if port not in used and port + METRICS_OFFSET not in used:
            return port
    raise Exit(f"no free port in {FIRST_PORT}-{LAST_PORT}; pass --port", code=1)


def plan(name: str, port: int | None = None, root: Path = project.ROOT) -> Plan:
    """Validate everything and say what would be written; writes nothing."""
    services_dir = root / "services"
    package = check_name(name, services_dir)
    target = services_dir / name
    if target.exists():
        raise Exit(
            f"{target.relative_to(root)} exists already; new-service never overwrites — "
            "choose another name or remove that directory first",
            code=1,
        )
    used = used_ports(services_dir)
    if port is None:
        port = first_free_port(used)
    check_port(port, used)
    return Plan(
        name=name,
        package=package,
        env_prefix=package.upper() + "_",
        http_port=port,
        metrics_port=port + METRICS_OFFSET,
        target=target,
    )


def chart_entry(plan: Plan) -> dict[str, object]:
    """The service's item for the chart's ``extraServices`` value (printed by ``create``)."""
    return {
        "name": plan.name,
        "image": {"repository": plan.name},
        "httpPort": plan.http_port,
        "metricsPort": plan.metrics_port,
    }


def render(plan: Plan, template: Path = TEMPLATE_DIR) -> list[Path]:
    """Render the template into ``plan.target`` (via a temporary directory, then one move)."""
    from cookiecutter.main import cookiecutter

    with tempfile.TemporaryDirectory(dir=plan.target.parent, prefix=".new-service-") as tmp:
        rendered = Path(
            cookiecutter(
                str(template),
                no_input=True,
                extra_context=plan.context(),
                output_dir=tmp,
                # its replay file and clone cache stay in the temporary directory too
                default_config={"replay_dir": f"{tmp}/.replay", "cookiecutters_dir": tmp},
            )
        )
        shutil.move(rendered, plan.target)
    return sorted(p for p in plan.target.rglob("*") if p.is_file())


def register(runner: Runner, plan: Plan, root: Path = project.ROOT) -> None:
    """Add the new member to the ``test`` group (and so to uv.lock)."""
    runner.run(
        ["uv", "add", "--no-sync", "--group=test", plan.name],
        cwd=root,
        hint=f"uv could not add services/{plan.name} to the workspace (its output above says "
        "why); the new directory was removed and pyproject.toml and uv.lock restored",
    )


def create(runner: Runner, name: str, port: int | None = None, root: Path = project.ROOT) -> Plan:
    """Plan, show, render and register; on a failure while acting, undo what was written."""
    chosen = plan(name, port, root)
    print(
        f"new service {chosen.name}: package {chosen.package}, env prefix {chosen.env_prefix}, "
        f"HTTP port {chosen.http_port}, metrics port {chosen.metrics_port}"
    )
    if runner.dry_run:
        print(f"[dry-run] render {TEMPLATE_DIR.relative_to(project.ROOT)} into {chosen.target}")
        register(runner, chosen, root)
        return chosen
    saved = {f: f.read_bytes() for f in (root / "pyproject.toml", root / "uv.lock") if f.exists()}
    try:
        files = render(chosen)
        register(runner, chosen, root)
    except BaseException:
        shutil.rmtree(chosen.target, ignore_errors=True)
        for path, content in saved.items():
            path.write_bytes(content)
        raise
    rel = chosen.target.relative_to(root)
    print(f"wrote {len(files)} files under {rel}/:")
    for path in files:
        print(f"  {path.relative_to(root)}")
    print(
        f"registered: `uv add --group test {chosen.name}` (pyproject.toml, uv.lock)\n"
        "picked up with no further edits:\n"
        f"  nox: lint/typecheck/tests (services/*/src, services/*/tests); "
        f"just this one: uv run nox -s lint typecheck tests -- {rel}\n"
        f"  image: uv run invoke docker.build --image {chosen.name}\n"
        "  chart: add this to your Helm values (docs/adding-a-service.md):\n"
        + textwrap.indent(yaml.safe_dump({"extraServices": [chart_entry(chosen)]}), "    ")
    )
    return chosen
