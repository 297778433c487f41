"""Invoke collection: release — bump the single version, build every artefact, tag, publish.

``invoke release --version X.Y.Z`` checks the preconditions, builds everything into
dist/X.Y.Z/ and tags vX.Y.Z; ``--dry-run`` does everything except the tag. ``release.publish``
pushes, signs and attests; ``release.sign`` signs pushed references; ``release.attest`` scans and
attests pushed images' SBOMs; ``release.verify`` checks a release directory and the signatures
and attestations in a registry. See docs/releasing.md.
"""

from __future__ import annotations

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.build import artifacts
from ops.core import project
from ops.core.runner import runner_for
from ops.release import cut, sign, versioning

PLATFORM_CHOICES = ", ".join([*artifacts.PLATFORMS, artifacts.UNIVERSAL])


def _platforms(platform: list[str] | None) -> list[str]:
    chosen = platform or [*artifacts.PLATFORMS, artifacts.UNIVERSAL]
    unknown = [p for p in chosen if p not in artifacts.PLATFORMS and p != artifacts.UNIVERSAL]
    if unknown:
        raise Exit(f"unknown platform {', '.join(unknown)}; choose from {PLATFORM_CHOICES}", 2)
    return chosen


@task(
    help={
        "part": "bump this part of the current version: major, minor or patch",
        "version": "set this exact SemVer version instead",
        "dry_run": "print the files that would change and change nothing",
    }
)
def bump(c: Context, part: str = "", version: str = "", dry_run: bool = False) -> None:
    """Move the repository to a new version: packages, Chart.yaml, image tags, uv.lock."""
    if bool(part) == bool(version):
        raise Exit("give exactly one of --part major|minor|patch or --version X.Y.Z", code=2)
    new = (
        versioning.validate(version)
        if version
        else versioning.next_version(project.version(), part)
    )
    runner = runner_for(c, dry_run=dry_run)
    changed = versioning.bump(new, runner)
    verb = "would change" if runner.dry_run else "changed"
    print(f"{new}: {verb} {len(changed)} files")
    for path in changed:
        print(f"  {path.relative_to(project.ROOT)}")


@task(
    help={
        "version": "the version to release; must equal the repository version",
        "tests": "run the nox default sessions as the 'tests green' precondition (default on)",
    }
)
def prepare(c: Context, version: str, tests: bool = True) -> None:
    """Check every release precondition (SemVer, tools, clean tree, on main, not tagged, tests)."""
    cut.check_preconditions(runner_for(c), version, run_tests=tests)
    print(f"release {version}: preconditions met")


@task(
    help={
        "version": "the version to build (default: the repository version)",
        "platform": f"pex platform to build (repeat; default all: {PLATFORM_CHOICES})",
        "images": "also build the images as docker save archives when an engine answers",
        "reuse": "keep packages and pex files already in dist/<version>/ (built elsewhere)",
    },
    iterable=["platform"],
)
def build(
    c: Context,
    version: str = "",
    platform: list[str] | None = None,
    images: bool = True,
    reuse: bool = False,
) -> None:
    """Build every release artefact into dist/<version>/ with SHA256SUMS and RELEASE_NOTES.md."""
    version = versioning.validate(version or project.version())
    if version != project.version():
        raise Exit(f"can only build the repository version {project.version()}", code=1)
    out = cut.build_all(
        runner_for(c), version, platforms=_platforms(platform), with_images=images, reuse=reuse
    )
    print(f"release artefacts in {out}")


@task(
    default=True,
    help={
        "version": "the version to release (SemVer; must equal the repository version)",
        "dry_run": "build everything, but do not tag (and never publish)",
        "tests": "run the nox default sessions first (default on)",
        "platform": f"pex platform to build (repeat; default all: {PLATFORM_CHOICES})",
        "images": "include docker save archives when an engine answers (default on)",
    },
    iterable=["platform"],
)
def release(
    c: Context,
    version: str,
    dry_run: bool = False,
    tests: bool = True,
    platform: list[str] | None = None,
    images: bool = True,
) -> None:
    """Cut a release: preconditions → dist/<version>/ (every artefact, SHA256SUMS) → tag."""
    runner = runner_for(c)
    cut.check_preconditions(runner, version, run_tests=tests)
    out = cut.build_all(runner, version, platforms=_platforms(platform), with_images=images)
    if dry_run:
        print(f"[dry-run] would tag {cut.tag_name(version)}; artefacts in {out}")
        return
    cut.tag(runner, version)
    print(f"tagged {cut.tag_name(version)}; artefacts in {out}; next: invoke release.publish")


@task(
    help={
        "version": "the released version to publish (default: the repository version)",
        "dry_run": "print every push, signature and upload, do none",
    }
)
def publish(c: Context, version: str = "", dry_run: bool = False) -> None:
    """Push images and chart (OCI), sign each by digest (cosign), create the GitHub release.

    Credentials and the signing key come from the environment only: COSIGN_KEY (a private key
    file; its password in COSIGN_PASSWORD or the file COSIGN_PASSWORD_FILE), or keyless without it.
    """
    version = versioning.validate(version or project.version())
    settings = cut.publish_settings()
    cut.publish(runner_for(c, dry_run=dry_run), version, settings, sign.signer_from_env())


@task(
    help={
        "ref": "an image or chart pushed to a registry, by digest: <registry>/<name>@sha256:<hex>"
        " (repeat)",
        "version": "the release version the signatures vouch for (default: the repository's)",
        "dry_run": "print the cosign commands, sign nothing",
    },
    iterable=["ref"],
    name="sign",
)
def sign_(
    c: Context, ref: list[str] | None = None, version: str = "", dry_run: bool = False
) -> None:
    """Sign pushed images or charts by digest with cosign: COSIGN_KEY's key, or keyless."""
    if not ref:
        raise Exit("give at least one --ref <registry>/<name>@sha256:<digest> to sign", code=2)
    version = versioning.validate(version or project.version())
    signer = sign.signer_from_env()
    sign.sign(runner_for(c, dry_run=dry_run), ref, signer, version)
    how = "keyless" if signer.keyless else f"with {signer.key}"
    print(f"{'[dry-run] would sign' if dry_run else 'signed'} {len(ref)} reference(s) {how}")


@task(
    help={
        "ref": "an image pushed to a registry, by digest: <registry>/<image>@sha256:<hex> (repeat)",
        "version": "the release version (default: the repository's)",
        "dir": "where to write each <image>-<version>.cdx.json (default: dist/<version>)",
        "dry_run": "print the syft and cosign commands, run none",
    },
    iterable=["ref"],
)
def attest(
    c: Context,
    ref: list[str] | None = None,
    version: str = "",
    dir: str = "",
    dry_run: bool = False,
) -> None:
    """Scan pushed images (by digest) with syft into CycloneDX SBOMs and attest each with cosign.

    For images pushed straight to a registry (the release workflow); release.publish scans and
    attests the image archives of a release build itself. Signer as release.sign: COSIGN_KEY, or
    keyless without it.
    """
    from pathlib import Path

    from ops.core import tools
    from ops.release import image_sbom

    if not ref:
        raise Exit("give at least one --ref <registry>/<image>@sha256:<digest> to attest", code=2)
    version = versioning.validate(version or project.version())
    runner = runner_for(c, dry_run=dry_run)
    signer = sign.signer_from_env()
    directory = Path(dir) if dir else cut.dist_dir(version)
    if not runner.dry_run:
        directory.mkdir(parents=True, exist_ok=True)
        tools.require("syft")
        tools.require("cosign")
    attestations = {}
    for reference in ref:
        image = sign.by_digest(reference).split("@", 1)[0].rsplit("/", 1)[-1]
        target = directory / image_sbom.file_name(image, version)
        attestations[reference] = image_sbom.scan(
            runner, f"registry:{reference}", image, version, target
        )
    image_sbom.attest(runner, attestations, signer)
    done = "[dry-run] would attest" if runner.dry_run else "attested"
    print(f"{done} {len(ref)} SBOM(s) in {directory}")


@task(
    help={
        "dir": "the release directory to check, e.g. dist/1.2.3",
        "version": "the release's version (default: the directory's name, else the repository's)",
        "registry": "also check the signatures of the images and chart pushed there at the "
        "version, e.g. ghcr.io/OWNER",
        "key": "the cosign public key the release was signed with (key-signed releases)",
        "certificate_identity": "the keyless signer's identity: the release workflow at the tag",
        "certificate_oidc_issuer": "the keyless signer's OIDC issuer (GitHub Actions': "
        f"{sign.GITHUB_ISSUER})",
    }
)
def verify(
    c: Context,
    dir: str = "",
    version: str = "",
    registry: str = "",
    key: str = "",
    certificate_identity: str = "",
    certificate_oidc_issuer: str = "",
) -> None:
    """Check a release: SHA256SUMS (and its signature), SBOMs, chart and pex versions; registry
    signatures and SBOM attestations."""
    from pathlib import Path

    from ops.release import verify as verify_

    if not (dir or registry):
        raise Exit("give --dir dist/<version>, --registry <registry>, or both", code=2)
    runner = runner_for(c)
    checked = []
    trusted = bool(key or certificate_identity or certificate_oidc_issuer)
    trust = (
        sign.trust_from_options(key, certificate_identity, certificate_oidc_issuer)
        if trusted or registry
        else None
    )
    if dir:
        report = verify_.verify(runner, Path(dir), version)
        version = version or Path(dir).resolve().name
        checked.append("SHA256SUMS, SBOMs, chart, pex files and packages")
        if trust is not None:
            verify_.check_sums_signature(runner, Path(dir), trust, report)
            checked.append("the signature of SHA256SUMS")
    else:
        report = verify_.Report(registry)
    if registry and trust is not None:
        version = versioning.validate(version or project.version())
        verify_.check_signatures(runner, registry, version, trust, report)
        verify_.check_attestations(
            runner, registry, version, trust, report, Path(dir).resolve() if dir else None
        )
        checked.append(
            f"the signatures of every image and the chart and the SBOM attestations of every "
            f"image in {registry}"
        )
    report.raise_if_failed()
    print(f"release {version}: {' and '.join(checked)} verified")
