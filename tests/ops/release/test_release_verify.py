"""`invoke release.verify` accepts the dry-run release and refuses each kind of tampering.

Each test tampers with a copy of the session's dry-run release (hard links, so copying is cheap;
a tampered file is replaced, never written through the link). Where a test re-signs SHA256SUMS
after tampering, it proves the check behind it (SBOM, chart, pex) catches what the checksums
alone would not.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from ops.build import artifacts
from ops.core import project
from ops.core.runner import Runner
from ops.release import image_sbom, sign, verify
from tests._support.cosign import PASSWORD, generate_key_pair
from tests._support.tools import require_tool
from tests.ops.release.conftest import VERSION, clean_env

CLI_PEX = f"{project.CLI_DIST}-{VERSION}-linux-x86_64.pex"
CHART = f"{project.CHART_NAME}-{VERSION}.tgz"
CLI_SBOM = image_sbom.file_name(project.CLI_IMAGE, VERSION)
SERVICE_SBOM = image_sbom.file_name(project.SERVICE_IMAGE, VERSION)


@pytest.fixture
def release(released: Path, tmp_path: Path) -> Path:
    """A private copy of the release directory (hard-linked files; replace, never edit)."""
    return Path(shutil.copytree(released, tmp_path / VERSION, copy_function=os.link))


def replace(path: Path, data: bytes) -> None:
    """Give ``path`` new content without touching the file it is hard-linked to."""
    path.unlink()
    path.write_bytes(data)


def resum(release: Path) -> None:
    """Rewrite SHA256SUMS over the directory as it is now (as a careful attacker would)."""
    (release / verify.SUMS).unlink()
    files = [p for p in release.rglob("*") if p.is_file() and p.name not in verify.UNLISTED]
    artifacts.write_sha256sums(release, files)


Check = Callable[[Path], list[str]]


@pytest.fixture
def check(released: Path) -> Check:
    """Problems verify reports for a directory, comparing its SBOM with the clone's uv.lock."""
    clone = released.parent.parent
    return lambda directory: verify.verify(Runner(echo=False), directory, root=clone).problems


def test_the_dry_run_release_verifies(release: Path, check: Check) -> None:
    assert check(release) == []


def test_invoke_release_verify_passes_then_refuses_with_the_artefact_named(
    released: Path, release: Path
) -> None:
    clone = released.parent.parent  # the released commit: its tasks and its uv.lock
    argv = [sys.executable, "-m", "invoke", "release.verify", "--dir"]
    ok = subprocess.run(
        [*argv, str(released)], cwd=clone, env=clean_env(), capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verified" in ok.stdout
    (release / "notes.txt").write_text("not part of the release\n")
    refused = subprocess.run(
        [*argv, str(release)], cwd=clone, env=clean_env(), capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert "notes.txt: not listed in SHA256SUMS; remove it" in refused.stderr


def flip_a_byte(release: Path) -> None:
    data = bytearray((release / CLI_PEX).read_bytes())
    data[len(data) // 2] ^= 0xFF
    replace(release / CLI_PEX, bytes(data))


def add_a_file(release: Path) -> None:
    (release / "extra.pex").write_bytes(b"#!/bin/sh\necho owned\n")


def remove_a_file(release: Path) -> None:
    (release / CHART).unlink()


def change_an_sbom_version(release: Path) -> None:
    bom = json.loads((release / verify.SBOM).read_text())
    component = next(c for c in bom["components"] if c["name"] == "httpx")
    component["version"] = "0.0.1"
    replace(release / verify.SBOM, json.dumps(bom).encode())
    resum(release)


def drop_an_sbom_component(release: Path) -> None:
    bom = json.loads((release / verify.SBOM).read_text())
    bom["components"] = [c for c in bom["components"] if c["name"] != "sqlalchemy"]
    replace(release / verify.SBOM, json.dumps(bom).encode())
    resum(release)


def break_the_sbom_schema(release: Path) -> None:
    bom = json.loads((release / verify.SBOM).read_text())
    del bom["components"][0]["type"]
    replace(release / verify.SBOM, json.dumps(bom).encode())
    resum(release)


def repackage_the_chart_at_another_version(release: Path) -> None:
    source = release / CHART
    out = io.BytesIO()
    with tarfile.open(source, "r:gz") as old, tarfile.open(fileobj=out, mode="w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member)
            content = data.read() if data else b""
            if member.name == f"{project.CHART_NAME}/Chart.yaml":
                chart = yaml.safe_load(content)
                chart["version"] = "9.9.9"
                content = yaml.safe_dump(chart).encode()
                member.size = len(content)
            new.addfile(member, io.BytesIO(content) if data else None)
    replace(source, out.getvalue())
    resum(release)


def give_the_pex_another_version(release: Path) -> None:
    source = release / CLI_PEX
    data = source.read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as old, zipfile.ZipFile(out, "w") as new:
        for item in old.infolist():
            content = old.read(item)
            if item.filename == "PEX-INFO":
                info = json.loads(content)
                info["requirements"] = [
                    r.replace(f"=={VERSION}", "==0.0.9") for r in info["requirements"]
                ]
                content = json.dumps(info).encode()
            new.writestr(item, content)
    replace(source, out.getvalue())
    resum(release)


TAMPERING: dict[str, tuple[Callable[[Path], None], str]] = {
    "changed byte in a pex": (flip_a_byte, f"{CLI_PEX}: sha256 "),
    "extra file": (add_a_file, "extra.pex: not listed in SHA256SUMS"),
    "missing file": (remove_a_file, f"{CHART}: listed in SHA256SUMS but missing"),
    "wrong SBOM version": (change_an_sbom_version, "sbom.cdx.json: lists httpx==0.0.1 but"),
    "SBOM entry missing": (
        drop_an_sbom_component,
        "does not list the locked dependency sqlalchemy",
    ),
    "SBOM off schema": (break_the_sbom_schema, "sbom.cdx.json: fails the CycloneDX schema"),
    "chart at another version": (
        repackage_the_chart_at_another_version,
        f"{CHART}: Chart.yaml version is '9.9.9', not {VERSION}",
    ),
    "pex of another version": (
        give_the_pex_another_version,
        f"{CLI_PEX}: does not require {project.CLI_DIST}=={VERSION}",
    ),
}


@pytest.mark.parametrize("tamper", TAMPERING, ids=list(TAMPERING))
def test_verify_refuses_tampering(release: Path, check: Check, tamper: str) -> None:
    change, expected = TAMPERING[tamper]
    change(release)
    found = check(release)
    assert any(expected in problem for problem in found), found
    assert all("; " in problem for problem in found)  # each names its fix


def test_verify_leaves_the_shared_release_untouched(released: Path, check: Check) -> None:
    assert check(released) == []


# -- image SBOMs (made by syft from the release's image archives) -----------------------------


def edit_bom(release: Path, name: str, change: Callable[[dict[str, object]], None]) -> None:
    bom = json.loads((release / name).read_text())
    change(bom)
    replace(release / name, json.dumps(bom).encode())
    resum(release)


def pin_httpx_elsewhere(bom: dict[str, object]) -> None:
    components = bom["components"]
    assert isinstance(components, list)
    next(c for c in components if c.get("purl", "").startswith("pkg:pypi/httpx@"))["version"] = (
        "0.0.1"
    )


def drop_the_python_packages(bom: dict[str, object]) -> None:
    components = bom["components"]
    assert isinstance(components, list)
    bom["components"] = [c for c in components if not c.get("purl", "").startswith("pkg:pypi/")]


def name_the_service_image(bom: dict[str, object]) -> None:
    metadata = bom["metadata"]
    assert isinstance(metadata, dict)
    metadata["component"]["name"] = project.SERVICE_IMAGE


def _is_psycopg_c(component: dict[str, str]) -> bool:
    purl = component.get("purl", "")
    return purl.startswith("pkg:pypi/") and canonicalize_name(purl[9:].split("@")[0]) == "psycopg-c"


def drop_psycopg_c(bom: dict[str, object]) -> None:
    components = bom["components"]
    assert isinstance(components, list)
    assert [c for c in components if _is_psycopg_c(c)], "the image ships psycopg-c"
    bom["components"] = [c for c in components if not _is_psycopg_c(c)]


def pin_psycopg_c_elsewhere(bom: dict[str, object]) -> None:
    components = bom["components"]
    assert isinstance(components, list)
    for component in components:
        if _is_psycopg_c(component):
            component["version"] = "0.0.1"


def break_the_image_sbom_schema(bom: dict[str, object]) -> None:
    bom["specVersion"] = "1.6"
    bom["components"] = [{"name": "no type"}]


def remove_the_image_sbom(release: Path) -> None:
    (release / CLI_SBOM).unlink()
    resum(release)


IMAGE_SBOM_TAMPERING: dict[str, tuple[Callable[[Path], None], str]] = {
    "wrong Python package version": (
        lambda r: edit_bom(r, CLI_SBOM, pin_httpx_elsewhere),
        f"{CLI_SBOM}: lists httpx==0.0.1 but the release ships",
    ),
    "Python packages missing": (
        lambda r: edit_bom(r, CLI_SBOM, drop_the_python_packages),
        f"{CLI_SBOM}: does not list the Python package {project.CLI_DIST}",
    ),
    "psycopg-c, built in place of psycopg-binary, missing": (
        lambda r: edit_bom(r, SERVICE_SBOM, drop_psycopg_c),
        f"{SERVICE_SBOM}: does not list the Python package psycopg-binary (or psycopg-c, built "
        "in its place)",
    ),
    "psycopg-c at another version than the locked psycopg-binary": (
        lambda r: edit_bom(r, SERVICE_SBOM, pin_psycopg_c_elsewhere),
        f"{SERVICE_SBOM}: lists psycopg-c==0.0.1 but the release ships",
    ),
    "another image named": (
        lambda r: edit_bom(r, CLI_SBOM, name_the_service_image),
        f"{CLI_SBOM}: describes {project.SERVICE_IMAGE} {VERSION}, not the image "
        f"{project.CLI_IMAGE} {VERSION}",
    ),
    "off schema": (
        lambda r: edit_bom(r, CLI_SBOM, break_the_image_sbom_schema),
        f"{CLI_SBOM}: fails the CycloneDX schema",
    ),
    "missing": (
        remove_the_image_sbom,
        f"{CLI_SBOM}: missing: the image archive {project.CLI_IMAGE}-{VERSION}.tar has no SBOM",
    ),
}


def require_image_sboms(release: Path) -> None:
    """The session's release has image archives (and SBOMs) only when an engine answered."""
    if not (release / f"{project.CLI_IMAGE}-{VERSION}.tar").is_file():
        reason = "the dry-run release has no image archives (no Docker engine answered)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.docker
def test_image_sboms_name_their_image_and_list_its_python_packages(release: Path) -> None:
    require_image_sboms(release)
    for image, dist, expected in (
        (project.SERVICE_IMAGE, project.SERVICE_DIST, {"fastapi", "sqlalchemy", "grpcio"}),
        (project.CLI_IMAGE, project.CLI_DIST, {"httpx", "typer"}),
    ):
        bom = json.loads((release / image_sbom.file_name(image, VERSION)).read_text())
        assert bom["bomFormat"] == "CycloneDX"
        assert image_sbom.subject(bom) == (image, VERSION)
        assert bom["metadata"]["tools"]["components"][0]["name"] == "syft"
        packages = image_sbom.python_packages(bom)
        assert packages[dist] == VERSION
        assert expected <= set(packages)
    cli = image_sbom.python_packages(json.loads((release / CLI_SBOM).read_text()))
    assert "sqlalchemy" not in cli  # the client image ships no server dependencies


@pytest.mark.docker
@pytest.mark.parametrize("tamper", IMAGE_SBOM_TAMPERING, ids=list(IMAGE_SBOM_TAMPERING))
def test_verify_refuses_a_tampered_image_sbom(release: Path, check: Check, tamper: str) -> None:
    require_image_sboms(release)
    change, expected = IMAGE_SBOM_TAMPERING[tamper]
    change(release)
    found = check(release)
    assert any(expected in problem for problem in found), found
    assert all("; " in problem for problem in found)


# -- the signature of SHA256SUMS --------------------------------------------------------------


@pytest.mark.go_tools("cosign")  # cosign is Go-built: runs last (tests/conftest.py)
def test_sha256sums_signature_is_checked(release: Path, tmp_path: Path) -> None:
    """A signed SHA256SUMS passes; a SHA256SUMS rewritten over a tampered pex (the signature
    kept), a missing signature and the wrong key are refused. (release.verify --dir --key runs
    this check in test_release_signing's one-run test.)"""
    cosign = require_tool("cosign")
    private, public = generate_key_pair(tmp_path / "release-key", cosign)
    _, other = generate_key_pair(tmp_path / "other-key", cosign)
    runner = Runner(echo=False)
    sign.sign_sums(runner, release, sign.Signer(private, PASSWORD))
    assert (release / sign.SUMS_SIGNATURE).is_file()

    def problems(key: Path) -> list[str]:
        report = verify.Report(str(release))
        verify.check_sums_signature(runner, release, sign.Trust(key=key), report)
        return report.problems

    assert problems(public) == []
    wrong = problems(other)
    assert len(wrong) == 1, wrong
    assert wrong[0].startswith("SHA256SUMS: signature check failed: invalid signature")
    assert f"not vouched for by the public key {other}" in wrong[0]
    signature = (release / sign.SUMS_SIGNATURE).read_bytes()
    flip_a_byte(release)
    resum(release)  # the checksums now match the tampered pex; the old signature is kept
    assert (release / sign.SUMS_SIGNATURE).read_bytes() == signature
    tampered = problems(public)
    assert len(tampered) == 1, tampered
    assert tampered[0].startswith("SHA256SUMS: signature check failed: invalid signature")
    (release / sign.SUMS_SIGNATURE).unlink()
    assert problems(public) == [
        "SHA256SUMS: signature check failed: SHA256SUMS.sig is missing; do not install from it: "
        f"its checksums are not vouched for by the public key {public}; download the release "
        "again from its official location"
    ]
