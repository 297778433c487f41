"""Signing: the release's images (by digest) and chart (an OCI artifact) signed with cosign in a
real local registry, `release.verify --registry` accepting them, and refusing each tampering.

Real docker-registry on a run-time port, the catalogued cosign (built from its Go module), the
Docker engine and helm. The images are tiny (one file, ``docker import``ed: signing does not
care what an image holds), saved as the release directory's archives are; the chart is the
repository's, packaged at the test version. The test version is not the repository's, so no
image of a real build is re-tagged. Each test pushes and signs into its own registry.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import httpx
import pytest
from invoke.exceptions import Exit

from ops.core import project
from ops.core.runner import Runner
from ops.docker import engine
from ops.docker import images as docker_images
from ops.k8s import helm
from ops.release import cut, image_sbom, sign, verify
from tests._support import registry
from tests._support.cosign import PASSWORD, generate_key_pair
from tests._support.docker import docker_engine  # noqa: F401
from tests._support.tools import require_tool
from tests.ops.release.conftest import clean_env

pytestmark = pytest.mark.go_tools("cosign")  # Go-built: these run last (tests/conftest.py)
VERSION = "0.0.1-signing.1"  # not the repository's: nothing a real build tagged is touched
IMAGES = sorted(spec.name for spec in docker_images.select("all"))  # publish pushes in this order
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


@pytest.fixture(scope="module", autouse=True)
def _wall_time() -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"\n[test_release_signing] wall time {time.monotonic() - started:.1f} s")


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    other_public: Path  # of another key pair: the wrong key


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    cosign = require_tool("cosign")
    base = tmp_path_factory.mktemp("keys")
    private, public = generate_key_pair(base / "release", cosign)
    _, other = generate_key_pair(base / "other", cosign)
    return Keys(private, public, other)


def one_file_tar(content: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo("marker")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def import_image(reference: str, content: bytes) -> None:
    """A one-file image tagged ``reference`` (docker import through the SDK)."""
    repository, tag = reference.rsplit(":", 1)
    engine.client().api.import_image_from_data(
        one_file_tar(content), repository=repository, tag=tag
    )


def remove_image(reference: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.client().images.remove(reference, force=True)


@pytest.fixture(scope="module")
def release_dir(
    tmp_path_factory: pytest.TempPathFactory,
    docker_engine: engine.EngineStatus,  # noqa: F811 (fixture)
) -> Iterator[Path]:
    """A release directory with what publish pushes: image archives and the chart at VERSION."""
    require_tool("helm")
    directory = tmp_path_factory.mktemp("dist") / VERSION
    directory.mkdir()
    try:
        for name in IMAGES:
            reference = f"{name}:{VERSION}"
            import_image(reference, f"{name} {VERSION}\n".encode())
            with (directory / f"{name}-{VERSION}.tar").open("wb") as archive:
                for chunk in engine.client().images.get(reference).save(named=True):
                    archive.write(chunk)
            remove_image(reference)  # publish loads it from the archive, as it would
        image_sbom.scan_archives(Runner(echo=False), sorted(directory.glob("*.tar")), VERSION)
        package_chart(directory, directory.parent / "helm")
        (directory / "SHA256SUMS").write_text("")  # publish only checks the build happened
        yield directory
    finally:
        for name in IMAGES:
            remove_image(f"{name}:{VERSION}")


def package_chart(destination: Path, helm_home: Path) -> Path:
    subprocess.run(
        [str(require_tool("helm")), *helm.package(destination)[1:], "--version", VERSION,
         "--app-version", VERSION],
        env={**os.environ, **helm.helm_home_env(helm_home)},
        check=True,
        capture_output=True,
    )  # fmt: skip
    return destination / f"{project.CHART_NAME}-{VERSION}.tgz"


@dataclass
class Published:
    registry: str
    pushed: list[str]  # every reference publish signed, by digest
    helm_home: Path


@pytest.fixture
def published(release_dir: Path, keys: Keys, tmp_path: Path) -> Iterator[Published]:
    """The release directory pushed to a fresh local registry and signed with the test key."""
    (tmp_path / "registry").mkdir()
    with registry.local_registry(tmp_path / "registry") as address:
        helm_home = tmp_path / "helm"
        try:
            pushed = cut.push_and_sign(
                Runner(echo=False),
                release_dir,
                VERSION,
                address,
                sign.Signer(keys.private, PASSWORD),
                helm_env=helm.helm_home_env(helm_home),
            )
            yield Published(address, pushed, helm_home)
        finally:
            for name in IMAGES:
                remove_image(f"{address}/{name}:{VERSION}")


def problems(published: Published, public_key: Path) -> list[str]:
    report = verify.Report(published.registry)
    verify.check_signatures(
        Runner(echo=False), published.registry, VERSION, sign.Trust(key=public_key), report
    )
    return report.problems


def attestation_problems(
    published: Published, public_key: Path, directory: Path | None = None
) -> list[str]:
    report = verify.Report(published.registry)
    verify.check_attestations(
        Runner(echo=False),
        published.registry,
        VERSION,
        sign.Trust(key=public_key),
        report,
        directory,
    )
    return report.problems


def invoke_verify(registry_address: str, public_key: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "invoke", "release.verify", "--registry", registry_address,
            "--version", VERSION, "--key", str(public_key)]  # fmt: skip
    return subprocess.run(argv, cwd=project.ROOT, capture_output=True, text=True, check=False)


def manifest_digest(registry_address: str, repository: str, tag: str) -> str:
    response = httpx.head(
        f"http://{registry_address}/v2/{repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
    )
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def push_over_the_tag(published: Published, name: str) -> str:
    """Push another image at the signed tag of ``name``; its digest."""
    target = f"{published.registry}/{name}:{VERSION}"
    import_image(target, b"not what was signed\n")
    for line in engine.client().images.push(target, stream=True, decode=True):
        assert "error" not in line, line
    return manifest_digest(published.registry, name, VERSION)


@pytest.mark.docker
def test_publish_signs_every_image_and_the_chart_by_digest_and_verify_passes(
    published: Published, keys: Keys
) -> None:
    repositories = [*IMAGES, f"charts/{project.CHART_NAME}"]
    assert [ref.split("@")[0] for ref in published.pushed] == [
        f"{published.registry}/{repository}" for repository in repositories
    ]
    for ref, repository in zip(published.pushed, repositories, strict=True):
        assert sign.DIGEST_REF.match(ref), ref
        # what was signed is what the tag names now
        assert ref.endswith(manifest_digest(published.registry, repository, VERSION))
    assert problems(published, keys.public) == []
    result = invoke_verify(published.registry, keys.public)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"release {VERSION}: the signatures of every image and the chart" in result.stdout
    for ref in published.pushed:
        assert f"signed ({ref.split('@')[1]}) by the public key {keys.public}" in result.stdout
    for reference in verify.registry_references(published.registry, VERSION):
        assert re.search(rf"^\+ cosign verify .* --key {keys.public} .* {re.escape(reference)}$",
                         result.stderr, re.MULTILINE)  # fmt: skip
    assert "TUF" not in result.stderr  # offline: the empty trusted root stops cosign fetching one
    for name in IMAGES:
        reference = f"{published.registry}/{name}:{VERSION}"
        assert f"{reference}: SBOM attested by the public key {keys.public}" in result.stdout
        assert re.search(rf"^\+ cosign verify-attestation --type cyclonedx --key {keys.public} "
                         rf".* {re.escape(reference)}$", result.stderr, re.MULTILINE)  # fmt: skip


@pytest.mark.docker
def test_the_attested_sboms_are_the_release_files(
    published: Published, keys: Keys, release_dir: Path
) -> None:
    assert attestation_problems(published, keys.public, release_dir) == []
    for name in IMAGES:
        sboms, problem = image_sbom.verified_sboms(
            Runner(echo=False), f"{published.registry}/{name}:{VERSION}", sign.Trust(keys.public)
        )
        assert problem == ""
        sbom = release_dir / image_sbom.file_name(name, VERSION)
        assert sboms == [json.loads(sbom.read_text())]


@pytest.mark.docker
def test_an_edited_sbom_file_is_refused(
    published: Published, keys: Keys, release_dir: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(release_dir, tmp_path / VERSION, copy_function=os.link))
    name = project.SERVICE_IMAGE
    path = copy / image_sbom.file_name(name, VERSION)
    bom = json.loads(path.read_text())
    bom.setdefault("components", []).append(
        {"type": "library", "name": "harmless", "version": "1.0", "purl": "pkg:pypi/harmless@1.0"}
    )
    path.unlink()  # never write through the hard link
    path.write_text(json.dumps(bom))
    found = attestation_problems(published, keys.public, copy)
    assert found == [
        f"{published.registry}/{name}:{VERSION}: its attested SBOM differs from {path.name}; "
        "do not use the file or the image until you know which one was changed; download the "
        "release again, or publish it again (invoke release.publish)"
    ]


@pytest.mark.docker
def test_an_attestation_made_for_another_image_is_refused(
    published: Published, keys: Keys, release_dir: Path
) -> None:
    """The service image pushed over with a new one, attested (with the release key) with the
    CLI image's SBOM: a valid attestation, of another image."""
    name = project.SERVICE_IMAGE
    new_digest = push_over_the_tag(published, name)
    image_sbom.attest(
        Runner(echo=False),
        {
            f"{published.registry}/{name}@{new_digest}": release_dir
            / image_sbom.file_name(project.CLI_IMAGE, VERSION)
        },
        sign.Signer(keys.private, PASSWORD),
    )
    found = attestation_problems(published, keys.public, release_dir)
    assert len(found) == 1, found
    describes = f"describes {project.CLI_IMAGE} {VERSION}, not {name} {VERSION}"
    assert found[0].startswith(
        f"{published.registry}/{name}:{VERSION}: its attested SBOM {describes}"
    )
    assert "an attestation made for another image" in found[0]


@pytest.mark.docker
def test_an_attestation_copied_from_another_digest_is_refused(
    published: Published, keys: Keys
) -> None:
    name = project.CLI_IMAGE
    signed = next(
        ref for ref in published.pushed if ref.startswith(f"{published.registry}/{name}@")
    )
    old_digest = signed.split("@")[1]
    new_digest = push_over_the_tag(published, name)
    base = f"http://{published.registry}/v2/{name}/manifests"
    attestation = httpx.get(
        f"{base}/{old_digest.replace(':', '-')}.att", headers={"Accept": MANIFEST_TYPES}
    )
    attestation.raise_for_status()
    copied = httpx.put(
        f"{base}/{new_digest.replace(':', '-')}.att",
        content=attestation.content,
        headers={"Content-Type": attestation.headers["Content-Type"]},
    )
    assert copied.status_code == 201, copied.text
    found = attestation_problems(published, keys.public)
    assert len(found) == 1, found
    assert found[0].startswith(
        f"{published.registry}/{name}:{VERSION}: SBOM attestation check failed"
    )
    assert "for another digest and copied onto this one" in found[0]


@pytest.mark.docker
def test_an_image_pushed_over_without_attestation_is_refused(
    published: Published, keys: Keys
) -> None:
    name = project.CLI_IMAGE
    push_over_the_tag(published, name)
    found = attestation_problems(published, keys.public)
    assert len(found) == 1, found
    assert found[0].startswith(
        f"{published.registry}/{name}:{VERSION}: SBOM attestation check failed: no matching "
        "attestations"
    )
    assert "carries no SBOM attestation (pushed over after publishing" in found[0]


@pytest.mark.docker
def test_an_image_pushed_over_the_signed_tag_is_refused(published: Published, keys: Keys) -> None:
    name = project.CLI_IMAGE
    push_over_the_tag(published, name)
    found = problems(published, keys.public)
    assert len(found) == 1, found
    assert found[0].startswith(f"{published.registry}/{name}:{VERSION}: signature check failed")
    assert "no signatures found" in found[0]
    assert "pushed over after signing" in found[0]


@pytest.mark.docker
def test_a_signature_copied_from_another_digest_is_refused(
    published: Published, keys: Keys
) -> None:
    """The attacker pushes over the tag and gives the new digest the old digest's signature."""
    name = project.SERVICE_IMAGE
    signed = next(
        ref for ref in published.pushed if ref.startswith(f"{published.registry}/{name}@")
    )
    signed_digest = signed.split("@")[1]
    new_digest = push_over_the_tag(published, name)
    base = f"http://{published.registry}/v2/{name}/manifests"
    signature = httpx.get(
        f"{base}/{signed_digest.replace(':', '-')}.sig", headers={"Accept": MANIFEST_TYPES}
    )
    signature.raise_for_status()
    copied = httpx.put(
        f"{base}/{new_digest.replace(':', '-')}.sig",
        content=signature.content,
        headers={"Content-Type": signature.headers["Content-Type"]},
    )
    assert copied.status_code == 201, copied.text
    found = problems(published, keys.public)
    assert len(found) == 1, found
    assert found[0].startswith(f"{published.registry}/{name}:{VERSION}: signature check failed")
    assert f"invalid or missing digest in claim: {signed_digest}" in found[0]
    assert "the signature it carries was made for another digest" in found[0]


@pytest.mark.docker
def test_a_signed_image_of_another_version_re_tagged_is_refused(
    published: Published, keys: Keys
) -> None:
    """An image signed (with the release key) for another version, pushed at this version's tag:
    the signature is valid for its digest, but vouches for another version."""
    name = project.CLI_IMAGE
    older = "0.0.0-older.1"
    target = f"{published.registry}/{name}:{older}"
    import_image(target, b"an older release\n")
    try:
        for line in engine.client().images.push(target, stream=True, decode=True):
            assert "error" not in line, line
        digest = manifest_digest(published.registry, name, older)
        sign.sign(
            Runner(echo=False),
            [f"{published.registry}/{name}@{digest}"],
            sign.Signer(keys.private, PASSWORD),
            older,
        )
        retagged = f"{published.registry}/{name}:{VERSION}"
        engine.client().images.get(target).tag(retagged)
        for line in engine.client().images.push(retagged, stream=True, decode=True):
            assert "error" not in line, line
        assert manifest_digest(published.registry, name, VERSION) == digest
    finally:
        remove_image(target)
    found = problems(published, keys.public)
    assert len(found) == 1, found
    assert found[0].startswith(f"{published.registry}/{name}:{VERSION}: signature check failed")
    assert "missing or incorrect annotation" in found[0]  # cosign's words
    assert "it is signed, but for another version" in found[0]


@pytest.mark.docker
def test_a_re_pushed_chart_is_refused(published: Published, keys: Keys, tmp_path: Path) -> None:
    other = package_chart(tmp_path, published.helm_home)
    with tarfile.open(other, "r:gz") as archive:  # the same chart, one byte of values changed
        members = [(m, archive.extractfile(m)) for m in archive.getmembers()]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as changed:
            for member, data in members:
                content = data.read() if data else b""
                if member.name == f"{project.CHART_NAME}/values.yaml":
                    content += b"\n# re-pushed\n"
                    member.size = len(content)
                changed.addfile(member, io.BytesIO(content) if data else None)
    other.write_bytes(out.getvalue())
    subprocess.run(
        [str(require_tool("helm")), "push", str(other), f"oci://{published.registry}/charts",
         "--plain-http"],
        env={**os.environ, **helm.helm_home_env(published.helm_home)},
        check=True,
        capture_output=True,
    )  # fmt: skip
    found = problems(published, keys.public)
    chart = f"{published.registry}/charts/{project.CHART_NAME}:{VERSION}"
    assert len(found) == 1, found
    assert found[0].startswith(f"{chart}: signature check failed: no signatures found")


@pytest.mark.docker
def test_the_wrong_public_key_is_refused_for_every_artefact(
    published: Published, keys: Keys
) -> None:
    found = problems(published, keys.other_public)
    assert len(found) == len(IMAGES) + 1, found
    for problem in found:
        assert "invalid signature" in problem  # cosign's words
        assert "does not verify against the public key" in problem
        assert str(keys.other_public) in problem
    attested = attestation_problems(published, keys.other_public)
    assert len(attested) == len(IMAGES), attested
    for problem, name in zip(sorted(attested), IMAGES, strict=True):
        assert problem.startswith(
            f"{published.registry}/{name}:{VERSION}: SBOM attestation check failed"
        )
        assert "accepted signatures do not match threshold" in problem  # cosign's words
        assert f"no SBOM attestation of it verifies against the public key {keys.other_public}" in (
            problem
        )
    result = invoke_verify(published.registry, keys.other_public)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{published.registry}/{project.CLI_IMAGE}:{VERSION}: signature check failed" in (
        result.stderr
    )
    assert f"({2 * len(IMAGES) + 1} problems)" in result.stderr


# -- without a registry: what is signed and how, refused input, dry runs ---------------------

DIGEST = "sha256:" + "ab" * 32


def test_only_references_by_digest_are_signed() -> None:
    tag = f"ghcr.io/o/{project.CLI_IMAGE}:{VERSION}"
    with pytest.raises(Exit, match=r"is not a reference by digest.*never by a tag"):
        sign.sign(Runner(dry_run=True), [tag], sign.Signer(), VERSION)


def test_signer_comes_from_the_environment(tmp_path: Path) -> None:
    assert sign.signer_from_env({}).keyless
    key = tmp_path / "cosign.key"
    key.write_text("not read here\n")
    password_file = tmp_path / "password"
    password_file.write_text("from the file\n")
    from_file = sign.signer_from_env(
        {
            sign.KEY_ENV: str(key),
            sign.PASSWORD_ENV: "ignored",
            sign.PASSWORD_FILE_ENV: str(password_file),
        }
    )
    assert from_file == sign.Signer(key, "from the file")
    assert sign.signer_from_env({sign.KEY_ENV: str(key), sign.PASSWORD_ENV: "p"}).password == "p"
    with pytest.raises(
        Exit, match=r"COSIGN_KEY=/nonexistent is not a file.*unset it to sign keyless"
    ):
        sign.signer_from_env({sign.KEY_ENV: "/nonexistent"})
    with pytest.raises(Exit, match="COSIGN_PASSWORD_FILE=/nonexistent cannot be read"):
        sign.signer_from_env({sign.KEY_ENV: str(key), sign.PASSWORD_FILE_ENV: "/nonexistent"})


def test_verify_needs_exactly_one_thing_to_trust(keys: Keys) -> None:
    with pytest.raises(Exit, match=r"--key cosign\.pub .* or --certificate-identity"):
        sign.trust_from_options("", "", "")
    with pytest.raises(Exit, match="either --key or"):
        sign.trust_from_options(str(keys.public), "someone", sign.GITHUB_ISSUER)
    with pytest.raises(Exit, match=r"--key /nonexistent\.pub is not a file"):
        sign.trust_from_options("/nonexistent.pub", "", "")


def run_invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=project.ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_release_sign_dry_run_prints_the_cosign_commands(keys: Keys) -> None:
    ref = f"ghcr.io/owner/{project.SERVICE_IMAGE}@{DIGEST}"
    keyless = run_invoke("release.sign", "--dry-run", "--ref", ref, env={sign.KEY_ENV: ""})
    assert keyless.returncode == 0, keyless.stderr
    annotation = f"-a {sign.VERSION_ANNOTATION}={project.version()}"  # the repository version
    assert f"[dry-run] cosign sign --yes {annotation} {ref}" in keyless.stderr
    keyed = run_invoke(
        "release.sign", "--dry-run", "--ref", ref,
        env={sign.KEY_ENV: str(keys.private), sign.PASSWORD_ENV: PASSWORD},
    )  # fmt: skip
    assert keyed.returncode == 0, keyed.stderr
    line = f"cosign sign --yes {annotation} --key {keys.private} --tlog-upload=false {ref}"
    assert line in keyed.stderr
    assert PASSWORD not in keyed.stdout + keyed.stderr
    refused = run_invoke("release.sign", "--dry-run", "--ref", ref.replace(f"@{DIGEST}", ":1.0.0"))
    assert refused.returncode == 2
    assert "is not a reference by digest" in refused.stderr


def test_keyless_verify_checks_the_release_workflow_identity() -> None:
    identity = "https://github.com/owner/repo/.github/workflows/release.yml@refs/tags/v1.2.3"
    trust = sign.trust_from_options("", identity, sign.GITHUB_ISSUER)
    ref = f"ghcr.io/owner/{project.SERVICE_IMAGE}:1.2.3"
    assert sign.verify_command(ref, trust, "1.2.3", None) == [
        "cosign", "verify", "--output", "json", "-a", f"{sign.VERSION_ANNOTATION}=1.2.3",
        "--certificate-identity", identity,
        "--certificate-oidc-issuer", "https://token.actions.githubusercontent.com", ref,
    ]  # fmt: skip
    result = run_invoke(
        "--dry", "release.verify", "--registry", "ghcr.io/owner", "--version", "1.2.3",
        "--certificate-identity", identity, "--certificate-oidc-issuer", sign.GITHUB_ISSUER,
    )  # fmt: skip
    for reference in verify.registry_references("ghcr.io/owner", "1.2.3"):
        assert f"--certificate-oidc-issuer {sign.GITHUB_ISSUER} {reference}" in result.stderr


@pytest.mark.docker
def test_publish_dry_run_pushes_then_signs_each_push_by_its_digest(
    release_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cut.push_and_sign(
        Runner(dry_run=True), release_dir, VERSION, "ghcr.io/owner", sign.Signer(), helm_env={}
    )
    err = capfd.readouterr().err
    for repository in [*IMAGES, f"charts/{project.CHART_NAME}"]:
        pending = f"ghcr.io/owner/{repository}@{sign.PUSHED_DIGEST}"
        annotation = f"-a {sign.VERSION_ANNOTATION}={VERSION}"
        assert f"[dry-run] cosign sign --yes {annotation} {shlex.quote(pending)}" in err
    assert err.index("helm push") < err.index("cosign sign")
    for name in IMAGES:  # keyless: each image's SBOM attested to the digest of its push
        pending = f"ghcr.io/owner/{name}@{sign.PUSHED_DIGEST}"
        sbom = release_dir / image_sbom.file_name(name, VERSION)
        assert (
            f"[dry-run] cosign attest --yes --type cyclonedx --predicate {sbom} "
            f"{shlex.quote(pending)}"
        ) in err
    assert err.index("cosign sign") < err.index("cosign attest")


def test_sha256sums_is_signed_beside_itself_with_a_key_or_keyless(tmp_path: Path) -> None:
    sums = tmp_path / "SHA256SUMS"
    assert sign.sign_blob_command(sums, sign.Signer()) == [
        "cosign", "sign-blob", "--yes", "--bundle", str(tmp_path / sign.SUMS_BUNDLE), str(sums),
    ]  # fmt: skip
    key = tmp_path / "cosign.key"
    assert sign.sign_blob_command(sums, sign.Signer(key, "p")) == [
        "cosign", "sign-blob", "--yes", "--key", str(key), "--tlog-upload=false",
        "--output-signature", str(tmp_path / sign.SUMS_SIGNATURE), str(sums),
    ]  # fmt: skip
    identity = "https://github.com/owner/repo/.github/workflows/release.yml@refs/tags/v1.2.3"
    keyless = sign.Trust(identity=identity, issuer=sign.GITHUB_ISSUER)
    assert sign.verify_blob_command(sums, keyless) == [
        "cosign", "verify-blob", "--bundle", str(tmp_path / sign.SUMS_BUNDLE),
        "--certificate-identity", identity, "--certificate-oidc-issuer", sign.GITHUB_ISSUER,
        str(sums),
    ]  # fmt: skip


@pytest.mark.docker
def test_publish_refuses_image_archives_without_their_sbom(
    release_dir: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(release_dir, tmp_path / VERSION, copy_function=os.link))
    (copy / image_sbom.file_name(project.CLI_IMAGE, VERSION)).unlink()
    with pytest.raises(Exit, match=rf"has no SBOM {project.CLI_IMAGE}-{re.escape(VERSION)}\.cdx"
                                   r"\.json .* nothing is pushed without its SBOM"):  # fmt: skip
        cut.push_and_sign(
            Runner(dry_run=True), copy, VERSION, "ghcr.io/owner", sign.Signer(), helm_env={}
        )


@pytest.mark.docker
def test_release_verify_checks_a_directory_and_its_registry_in_one_run(
    docker_engine: engine.EngineStatus,  # noqa: F811 (fixture)
    released: Path,
    keys: Keys,
    tmp_path: Path,
) -> None:
    """What the release workflow runs after publishing: --dir and --registry together, from the
    released commit. The registry holds the release's own chart and one-file images at its
    version (tagged only under the registry's name: no local tag of a real build is touched),
    each image attested with the release's own SBOM of it; SHA256SUMS is signed as publish
    signs it (on a copy of the release)."""
    version = released.name
    release = Path(shutil.copytree(released, tmp_path / version, copy_function=os.link))
    signer = sign.Signer(keys.private, PASSWORD)
    runner = Runner(echo=False)
    sign.sign_sums(runner, release, signer)
    (tmp_path / "registry").mkdir()
    with registry.local_registry(tmp_path / "registry") as address:
        pushed = []
        try:
            for name in IMAGES:
                target = f"{address}/{name}:{version}"
                import_image(target, f"{name} {version}\n".encode())
                for line in engine.client().images.push(target, stream=True, decode=True):
                    assert "error" not in line, line
                pushed.append(f"{address}/{name}@{manifest_digest(address, name, version)}")
            helm_env = helm.helm_home_env(tmp_path / "helm")
            pushed.append(cut.push_chart(runner, release, version, address, helm_env))
            sign.sign(runner, pushed, signer, version)
            sboms = [release / image_sbom.file_name(name, version) for name in IMAGES]
            image_sbom.attest(runner, dict(zip(pushed, sboms, strict=False)), signer)
            argv = [sys.executable, "-m", "invoke", "release.verify", "--dir", str(release),
                    "--registry", address, "--key", str(keys.public)]  # fmt: skip
            result = subprocess.run(
                argv, cwd=released.parent.parent, env=clean_env(), capture_output=True, text=True
            )
        finally:
            for name in IMAGES:
                remove_image(f"{address}/{name}:{version}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"release {version}: SHA256SUMS, SBOMs, chart, pex files and packages and the signature "
        "of SHA256SUMS and the signatures of every image and the chart and the SBOM attestations "
        f"of every image in {address} verified"
    ) in result.stdout
