"""install.sh and uninstall.sh on this machine: shellcheck, argument errors, and a real install
into a scratch root (``--destdir``), twice, compared by file checksums."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.deploy import systemd as systemd_target
from tests._support.tools import require_tool

SCRIPTS = (systemd_target.INSTALL_SCRIPT, systemd_target.UNINSTALL_SCRIPT)
# Not the default (the VM test installs there): proves --prefix reaches the unit and the venv.
PREFIX = "srv/llm-optimizer"
UNIT_PATH = f"etc/systemd/system/{systemd_target.UNIT}"
ENV_PATH = "etc/llm-optimizer/llm-optimizer.env"


def sh(*argv: str | Path, uid: int | None = None) -> subprocess.CompletedProcess[str]:
    command = ["bash", *map(str, argv)]
    if uid is not None:
        command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)


def ok(*argv: str | Path) -> str:
    result = sh(*argv)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def tree(root: Path) -> dict[str, str]:
    """path -> sha256 of content (files), target (links) or mode (dirs), for every path."""
    state: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        mode = oct(path.lstat().st_mode)
        if path.is_symlink():
            state[key] = f"link {os.readlink(path)}"
        elif path.is_file():
            state[key] = f"{mode} {hashlib.sha256(path.read_bytes()).hexdigest()}"
        else:
            state[key] = mode
    return state


@pytest.fixture(scope="module")
def staged(wheel_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One real install into a scratch root, shared by the tests below."""
    root = tmp_path_factory.mktemp("destdir")
    ok(
        systemd_target.INSTALL_SCRIPT,
        "--destdir",
        root,
        "--wheel-dir",
        wheel_dir,
        "--prefix",
        f"/{PREFIX}",
    )
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_is_clean(script: Path) -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run(
        [str(shellcheck), "--enable=all", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_and_strict_mode(script: Path) -> None:
    text = script.read_text()
    assert "set -Eeuo pipefail" in text
    result = sh(script, "--help")
    assert result.returncode == 0
    for option in ("--prefix", "--destdir", "--help"):
        assert option in result.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown argument '--bogus'"),
        (["--prefix", "relative/dir"], "--prefix must be an absolute path"),
        (["--prefix", "/opt/with space"], "--prefix must be an absolute path"),
        (["--destdir", "scratch"], "--destdir must be an absolute path"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(
    script: Path, args: list[str], message: str
) -> None:
    result = sh(script, *args)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_non_root_is_told_to_use_root_or_destdir(script: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root")
    result = sh(script, uid=65534)  # nobody
    assert result.returncode != 0
    assert "run as root" in result.stderr
    assert "--destdir" in result.stderr


def test_missing_wheels_name_the_command_that_builds_them(tmp_path: Path) -> None:
    result = sh(systemd_target.INSTALL_SCRIPT, "--destdir", tmp_path, "--wheel-dir", tmp_path)
    assert result.returncode != 0
    assert "invoke systemd.wheels" in result.stderr


def test_staged_install_layout(staged: Path) -> None:
    unit = (staged / UNIT_PATH).read_text()
    shipped = systemd_target.SYSTEMD_DIR.joinpath(systemd_target.UNIT).read_text()
    assert unit == shipped.replace(f"{systemd_target.DEFAULT_PREFIX}/", f"/{PREFIX}/")
    assert f"ExecStart=/{PREFIX}/venv/bin/llm-optimizer-service serve" in unit
    wants = staged / "etc/systemd/system/multi-user.target.wants" / systemd_target.UNIT
    assert wants.is_symlink()
    assert os.readlink(wants) == f"/{UNIT_PATH}"
    assert "llm-optimizer:" in (staged / "etc/passwd").read_text()
    command = staged / PREFIX / "venv/bin/llm-optimizer-service"
    # Relocated: the staged venv's scripts point at where it will run, not at the staging root.
    assert command.read_text().splitlines()[0] == f"#!/{PREFIX}/venv/bin/python"
    assert (staged / ENV_PATH).read_text() == (
        systemd_target.SYSTEMD_DIR / "llm-optimizer.env.example"
    ).read_text()
    assert oct((staged / ENV_PATH).stat().st_mode & 0o777) == "0o640"
    assert (staged / PREFIX / "share/llm-optimizer/uninstall.sh").is_file()
    result = subprocess.run(
        [str(staged / PREFIX / "venv/bin/python"), "-c", "import llm_optimizer_service"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_second_install_changes_nothing(staged: Path, wheel_dir: Path) -> None:
    first = tree(staged)
    output = ok(
        systemd_target.INSTALL_SCRIPT,
        "--destdir",
        staged,
        "--wheel-dir",
        wheel_dir,
        "--prefix",
        f"/{PREFIX}",
    )
    second = tree(staged)
    changed = sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
    print(f"compared {len(first)} paths by checksum/target/mode after a second install")
    assert changed == []
    assert "installed" not in output  # nothing was (re)installed


def test_operator_config_is_never_overwritten(staged: Path, wheel_dir: Path) -> None:
    env = staged / ENV_PATH
    original = env.read_text()
    try:
        env.write_text(original + "LLM_OPTIMIZER_LOG__LEVEL=DEBUG\n")
        output = ok(
            systemd_target.INSTALL_SCRIPT,
            "--destdir",
            staged,
            "--wheel-dir",
            wheel_dir,
            "--prefix",
            f"/{PREFIX}",
        )
        assert env.read_text().endswith("LLM_OPTIMIZER_LOG__LEVEL=DEBUG\n")
        assert "kept your /etc/llm-optimizer/llm-optimizer.env" in output
    finally:
        env.write_text(original)


def test_uninstall_keeps_data_and_edited_config_purge_removes_all(
    staged: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    # uninstall.sh removes the prefix wholesale: the copies can skip the installed packages.
    skip_packages = shutil.ignore_patterns("site-packages")
    shutil.copytree(staged, root, symlinks=True, ignore=skip_packages)
    data = root / "var/lib/llm-optimizer"
    data.mkdir(parents=True)
    (data / "llm-optimizer.db").write_text("state")
    ok(systemd_target.UNINSTALL_SCRIPT, "--destdir", root, "--prefix", f"/{PREFIX}")
    assert not (root / PREFIX).exists()
    assert not (root / UNIT_PATH).exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants" / systemd_target.UNIT).exists()
    assert not (root / "etc/llm-optimizer").exists()  # unchanged env file: removed with the rest
    assert (data / "llm-optimizer.db").read_text() == "state"
    ok(systemd_target.UNINSTALL_SCRIPT, "--destdir", root, "--prefix", f"/{PREFIX}")  # idempotent

    # An edited env file survives a plain uninstall; --purge removes it, the data and the user.
    shutil.rmtree(root)
    shutil.copytree(staged, root, symlinks=True, ignore=skip_packages)
    data.mkdir(parents=True)
    (root / ENV_PATH).write_text("LLM_OPTIMIZER_LOG__LEVEL=DEBUG\n")
    output = ok(systemd_target.UNINSTALL_SCRIPT, "--destdir", root, "--prefix", f"/{PREFIX}")
    assert "kept /etc/llm-optimizer" in output
    assert (root / ENV_PATH).is_file()
    ok(systemd_target.UNINSTALL_SCRIPT, "--destdir", root, "--prefix", f"/{PREFIX}", "--purge")
    assert not (root / "etc/llm-optimizer").exists()
    assert not data.exists()
    assert "llm-optimizer:" not in (root / "etc/passwd").read_text()


def test_uninstall_refuses_a_prefix_it_did_not_install(tmp_path: Path) -> None:
    precious = tmp_path / "usr"
    (precious / "bin").mkdir(parents=True)
    result = sh(systemd_target.UNINSTALL_SCRIPT, "--destdir", tmp_path, "--prefix", "/usr")
    assert result.returncode != 0
    assert "does not look like an llm-optimizer installation" in result.stderr
    assert (precious / "bin").is_dir()
