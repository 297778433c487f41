"""scripts/install.sh: the one-line installer, run for real against a release served over HTTP.

A local `python -m http.server` (127.0.0.1, a port picked at run time) serves copies of the
session's dry-run release, its SHA256SUMS signed with a test cosign key (SHA256SUMS.sig, as
release.publish signs it): as built; with one changed byte in the client pex; with that pex and
a SHA256SUMS rewritten to match it (the old signature kept); and without SHA256SUMS.sig. The
installer, with the real cosign on PATH, must install the first (its `version` runs) and refuse
every other, installing nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops.build import artifacts
from ops.core import project
from ops.core.runner import Runner
from ops.release import sign
from tests._support.cosign import PASSWORD, generate_key_pair
from tests._support.tools import free_port, require_tool, stop_process
from tests.ops.release.conftest import VERSION, clean_env

INSTALLER = project.ROOT / "scripts" / "install.sh"
CLI_PEX = f"{project.CLI_DIST}-{VERSION}-linux-x86_64.pex"
SERVED = ("good", "tampered", "resummed", "unsigned")
pytestmark = pytest.mark.go_tools("cosign")  # Go-built: these run last (tests/conftest.py)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(the release's private key, its public key, another key pair's public key)."""
    cosign = require_tool("cosign")
    base = tmp_path_factory.mktemp("installer-keys")
    private, public = generate_key_pair(base / "release", cosign)
    _, other = generate_key_pair(base / "other", cosign)
    return private, public, other


def tamper_pex(release: Path) -> None:
    pex = release / CLI_PEX
    data = bytearray(pex.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pex.unlink()  # never write through the hard link into the shared release
    pex.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def server(
    released: Path, keys: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of an HTTP server with good/ (the release, SHA256SUMS signed), tampered/ (a
    changed byte in the pex), resummed/ (that pex and a SHA256SUMS to match, the old signature)
    and unsigned/ (no SHA256SUMS.sig)."""
    private = keys[0]
    root = tmp_path_factory.mktemp("served")
    for name in SERVED:
        copy = Path(shutil.copytree(released, root / name, copy_function=os.link))
        (copy / "install.sh").unlink(missing_ok=True)  # this checkout's installer, not HEAD's
        shutil.copy2(INSTALLER, copy / "install.sh")
        sums = copy / "SHA256SUMS"
        sums.unlink()  # the listing includes this checkout's installer
        files = [p for p in copy.rglob("*") if p.is_file()]
        artifacts.write_sha256sums(copy, files)
        sign.sign_sums(Runner(echo=False), copy, sign.Signer(private, PASSWORD))
    tamper_pex(root / "tampered")
    tamper_pex(root / "resummed")
    resummed = root / "resummed"
    (resummed / "SHA256SUMS").unlink()
    files = [p for p in resummed.rglob("*") if p.is_file() and p.name != sign.SUMS_SIGNATURE]
    artifacts.write_sha256sums(resummed, files)  # as a careful attacker would
    (root / "unsigned" / sign.SUMS_SIGNATURE).unlink()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/good/SHA256SUMS", timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                assert process.poll() is None, "the HTTP server exited"
                assert time.monotonic() < deadline, "the HTTP server did not answer in 30 s"
                time.sleep(0.2)
        yield url
    finally:
        stop_process(process)


def path_without_cosign() -> str:
    return os.pathsep.join(
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not (Path(d) / "cosign").exists()
    )


def install(
    tmp_path: Path,
    *args: str,
    pipe_from: str = "",
    cosign: bool = True,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the installer into tmp_path/prefix (piped from curl, as users do, with pipe_from),
    with the catalogued cosign on PATH (``cosign``) or no cosign at all."""
    prefix = tmp_path / "prefix"
    search = path_without_cosign()
    if cosign:
        search = f"{require_tool('cosign').parent}{os.pathsep}{search}"
    env = {
        **clean_env(),
        "PATH": search,
        "HOME": str(tmp_path / "home"),
        "PEX_ROOT": str(tmp_path / "pex-root"),
        "LLM_OPTIMIZER_API_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
        **(extra_env or {}),
    }
    if pipe_from:
        quoted = " ".join(f"'{a}'" for a in (*args, "--prefix", str(prefix)))
        argv = ["/bin/sh", "-c", f"curl -fsSL '{pipe_from}' | sh -s -- {quoted}"]
    else:
        argv = ["/bin/sh", str(INSTALLER), *args, "--prefix", str(prefix)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    return result, prefix


def test_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run(
        [str(shellcheck), "-s", "sh", str(INSTALLER)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_one_line_installs_the_verified_pex_and_runs_version(
    server: str, released: Path, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    require_tool("curl")
    base = f"{server}/good"
    result, prefix = install(
        tmp_path, "--base-url", base, "--key", str(keys[1]), pipe_from=f"{base}/install.sh"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    installed = prefix / "bin" / "llm-optimizer"
    assert os.access(installed, os.X_OK)
    assert artifacts.sha256(installed) == artifacts.sha256(released / CLI_PEX)
    assert f"SHA256SUMS: signature verified with {keys[1]}" in result.stdout
    assert f"{CLI_PEX}: sha256 matches SHA256SUMS" in result.stdout
    assert result.stdout.index("signature verified") < result.stdout.index("downloading")
    assert VERSION in result.stdout  # `llm-optimizer version` ran: {"client": VERSION, ...}
    assert sorted(p.name for p in (prefix / "bin").iterdir()) == ["llm-optimizer"]


def test_a_tampered_pex_is_refused_and_nothing_is_installed(
    server: str, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    result, prefix = install(tmp_path, "--base-url", f"{server}/tampered", "--key", str(keys[1]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{CLI_PEX}: sha256 " in result.stderr
    assert "does not match SHA256SUMS" in result.stderr
    assert "nothing was installed" in result.stderr
    assert not prefix.exists()


def test_a_tampered_sha256sums_matching_a_tampered_pex_is_refused(
    server: str, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    result, prefix = install(tmp_path, "--base-url", f"{server}/resummed", "--key", str(keys[1]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"SHA256SUMS: its signature does not verify with the key {keys[1]}" in result.stderr
    assert "invalid signature" in result.stderr  # cosign's words
    assert "nothing was installed" in result.stderr
    assert "downloading" not in result.stdout  # no checksum was trusted, no pex fetched
    assert not prefix.exists()


def test_the_wrong_key_is_refused(
    server: str, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    result, prefix = install(tmp_path, "--base-url", f"{server}/good", "--key", str(keys[2]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"does not verify with the key {keys[2]}" in result.stderr
    assert not prefix.exists()


def test_a_missing_signature_is_refused(
    server: str, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    result, prefix = install(tmp_path, "--base-url", f"{server}/unsigned", "--key", str(keys[1]))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"could not download {server}/unsigned/SHA256SUMS.sig" in result.stderr
    assert "nothing was installed" in result.stderr
    assert not prefix.exists()


def test_without_cosign_it_refuses_unless_told_loudly_to_skip_the_signature(
    server: str, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    base = f"{server}/good"
    result, prefix = install(tmp_path, "--base-url", base, "--key", str(keys[1]), cosign=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "needs cosign on PATH to verify the signature of SHA256SUMS" in result.stderr
    assert "--insecure-skip-signature" in result.stderr
    assert not prefix.exists()
    result, prefix = install(
        tmp_path, "--base-url", base, "--insecure-skip-signature", cosign=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING: --insecure-skip-signature: the signature of SHA256SUMS is NOT verified" in (
        result.stderr
    )
    assert (prefix / "bin" / "llm-optimizer").is_file()


def test_nothing_to_trust_is_refused_and_a_github_url_implies_the_workflow_identity(
    tmp_path: Path,
) -> None:
    result, _ = install(tmp_path, "--base-url", "http://127.0.0.1:9/x")
    assert result.returncode == 2
    assert "nothing to check SHA256SUMS's signature against" in result.stderr
    # A GitHub release URL: keyless, the repository's release workflow at the tag. (Downloads
    # go to a proxy where nothing listens: nothing leaves the machine, the download fails.)
    url = "https://github.com/owner/repo/releases/download/v1.2.3"
    result, prefix = install(
        tmp_path, "--base-url", url, extra_env={"https_proxy": f"http://127.0.0.1:{free_port()}"}
    )
    assert result.returncode == 1
    assert (
        "SHA256SUMS must be signed keyless by https://github.com/owner/repo/.github/workflows/"
        "release.yml@refs/tags/v1.2.3 (issuer https://token.actions.githubusercontent.com)"
    ) in result.stdout
    assert f"could not download {url}/SHA256SUMS" in result.stderr
    assert not prefix.exists()


def test_a_platform_the_release_lacks_is_refused(
    server: str, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    result, prefix = install(
        tmp_path, "--base-url", f"{server}/good", "--key", str(keys[1]), "--platform", "macos-arm64"
    )
    assert result.returncode == 1
    assert "lists no llm-optimizer-cli pex for macos-arm64" in result.stderr
    assert not prefix.exists()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    result, _ = install(tmp_path, "--component", "gui", "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "--component must be cli or service" in result.stderr
    result, _ = install(tmp_path)
    assert result.returncode == 2
    assert "--base-url URL" in result.stderr
    result, _ = install(tmp_path, "--base-url", "http://127.0.0.1:9", "--key", "/nonexistent.pub")
    assert result.returncode == 2
    assert "--key /nonexistent.pub is not a file" in result.stderr


def fake_musl_host(tmp_path: Path, machine: str = "x86_64") -> dict[str, str]:
    """A PATH whose `uname` says Linux on ``machine`` and whose `ldd --version` says musl, as
    on Alpine (the installer's detection); the real cosign stays on it."""
    fake = tmp_path / "fake-bin"
    fake.mkdir(parents=True)
    (fake / "uname").write_text(
        f"#!/bin/sh\ncase $1 in -m) echo {machine} ;; *) echo Linux ;; esac\n"
    )
    (fake / "ldd").write_text("#!/bin/sh\necho 'musl libc (x86_64)' >&2\n")
    for script in fake.iterdir():
        script.chmod(0o755)
    cosign = require_tool("cosign").parent
    return {"PATH": os.pathsep.join([str(fake), str(cosign), path_without_cosign()])}


def test_on_musl_x86_64_the_client_gets_the_musl_pex(
    server: str, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Chosen and verified; not run: this host's python3 is a glibc one (docs/releasing.md)."""
    result, _ = install(
        tmp_path,
        "--base-url",
        f"{server}/good",
        "--key",
        str(keys[1]),
        extra_env=fake_musl_host(tmp_path),
    )
    musl_pex = f"{project.CLI_DIST}-{VERSION}-linux-x86_64-musl.pex"
    assert f"downloading {musl_pex}\n" in result.stdout, result.stdout + result.stderr
    assert f"{musl_pex}: sha256 matches SHA256SUMS" in result.stdout


def test_on_musl_the_service_and_other_machines_are_refused(
    server: str, keys: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    base = ["--base-url", f"{server}/good", "--key", str(keys[1])]
    result, prefix = install(
        tmp_path, *base, "--component", "service", extra_env=fake_musl_host(tmp_path)
    )
    assert result.returncode == 1
    assert "has no service pex (aiokafka has no musllinux wheel): use the container image" in (
        result.stderr
    )
    assert not prefix.exists()
    result, prefix = install(tmp_path, *base, extra_env=fake_musl_host(tmp_path / "a", "aarch64"))
    assert result.returncode == 1
    assert "musl libc on aarch64 has no pex: use the container image" in result.stderr
    assert not prefix.exists()
