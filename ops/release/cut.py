"""Cutting a release: preconditions, every artefact into dist/<version>/, tag, publish.

``invoke release`` = preconditions → build → notes → SHA256SUMS → tag; ``--dry-run`` does all of
it except the tag (and never publishes). Artefacts: sdists and wheels, pex executables per
platform (and the universal client pex), the images as ``docker save`` archives when an engine
answers (each with its CycloneDX SBOM, made by syft), the Helm chart ``.tgz``, a CycloneDX SBOM
of the locked Python dependencies, the installer (scripts/install.sh),
SHA256SUMS and RELEASE_NOTES.md. ``release.publish`` pushes images and the chart (OCI), signs
each by its digest with cosign (``ops.release.sign``), attests each image's SBOM to it, signs
SHA256SUMS (SHA256SUMS.sig, or a keyless bundle) and creates the GitHub release, with
credentials taken from the environment only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from invoke.exceptions import Exit

from ops.build import artifacts
from ops.core import project, python_tools
from ops.core.runner import Runner
from ops.release import image_sbom, sign, versioning

RELEASE_BRANCH = "main"
TAG_PREFIX = "v"
# Tools a release needs, whatever it builds (docker is optional: images only when it answers).
REQUIRED_TOOLS = ("git", "helm")
# The one-line installer, shipped with every release (it verifies a pex against SHA256SUMS).
INSTALLER = Path("scripts") / "install.sh"
# Environment variables release.publish reads (never arguments).
PUBLISH_ENV = {
    "registry": project.env("registry"),
    "registry_user": project.env("registry_user"),
    "registry_password": project.env("registry_password"),
    "github_token": "GITHUB_TOKEN",
    "github_repository": "GITHUB_REPOSITORY",
}


def tag_name(version: str) -> str:
    return f"{TAG_PREFIX}{version}"


def dist_dir(version: str, root: Path = project.ROOT) -> Path:
    return root / "dist" / version


@dataclass
class Preconditions:
    """What a release needs before anything is written; ``failures`` says which failed."""

    failures: list[str] = field(default_factory=list)

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)

    def raise_if_failed(self) -> None:
        if self.failures:
            lines = "\n".join(f"  - {failure}" for failure in self.failures)
            raise Exit(f"release preconditions failed; nothing was written:\n{lines}", code=1)


def check_preconditions(
    runner: Runner, version: str, *, run_tests: bool, root: Path = project.ROOT
) -> None:
    """Check version, tools, tree, branch, tag and tests; raise Exit naming every failure."""
    versioning.validate(version)
    checks = Preconditions()
    current = project.version()
    checks.require(
        version == current,
        f"--version {version} is not the repository version {current}; run "
        f"`invoke release.bump --version {version}`, commit, then release",
    )
    from ops.core import tools

    for name in REQUIRED_TOOLS:
        found = tools.which(name)
        hint = tools.CATALOGUE[name].install_hint() if name in tools.CATALOGUE else name
        checks.require(found is not None, f"tool '{name}' is missing; install it with: {hint}")
    status = runner.output(["git", "status", "--porcelain"], cwd=root)
    checks.require(not status, "the working tree is not clean; commit or stash your changes")
    branch = runner.output(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=root)
    checks.require(
        branch == RELEASE_BRANCH,
        f"releases are cut from '{RELEASE_BRANCH}', not '{branch}'; check out {RELEASE_BRANCH}",
    )
    tagged = runner.output(["git", "tag", "--list", tag_name(version)], cwd=root)
    checks.require(
        not tagged,
        f"{tag_name(version)} is already tagged; bump the version (invoke release.bump)",
    )
    checks.raise_if_failed()
    if run_tests:
        runner.run(
            python_tools.nox(),
            cwd=root,
            hint="the tests are not green; fix them before releasing (or see `nox --list`)",
        )


def release_notes(runner: Runner, version: str, target: Path) -> Path:
    """RELEASE_NOTES.md from the unreleased news fragments (towncrier, draft: nothing consumed)."""
    notes = runner.output(
        python_tools.uv_run(["release"], "towncrier", "build", "--draft", "--version", version),
        cwd=project.ROOT,
    )
    target.write_text(f"# LLM Auto Optimizer {version}\n\n{notes}\n")
    return target


def locked_requirements(runner: Runner, root: Path = project.ROOT, package: str = "") -> str:
    """Every package's (or one ``package``'s) locked third-party runtime requirements, from
    uv.lock.

    What the SBOM lists; ``release.verify`` compares an SBOM with the same export (and an image
    SBOM with its package's).
    """
    which = ["--package", package] if package else ["--all-packages"]
    return runner.output(
        python_tools.uv(
            "export",
            "--frozen",
            "--no-hashes",
            "--no-dev",
            *which,
            "--no-emit-workspace",
            "--no-header",
            "--no-annotate",
        ),
        cwd=root,
    )


def sbom(runner: Runner, target: Path, workdir: Path) -> Path:
    """A CycloneDX SBOM (JSON) of every package's locked third-party dependencies."""
    requirements = workdir / "sbom-requirements.txt"
    locked = locked_requirements(runner)
    requirements.write_text(locked + "\n")
    runner.run(
        python_tools.uv_run(
            ["release"],
            "cyclonedx-py",
            "requirements",
            "--output-reproducible",
            "--output-format",
            "JSON",
            "--output-file",
            str(target),
            str(requirements),
        ),
        cwd=project.ROOT,
    )
    return target


def chart(runner: Runner, destination: Path, workdir: Path) -> Path:
    """The Helm chart .tgz (version and appVersion are the repository version)."""
    from ops.k8s import helm

    runner.run(helm.package(destination), env=helm.helm_home_env(workdir / "helm"))
    return destination / f"{project.CHART_NAME}-{project.version()}.tgz"


def images(runner: Runner, destination: Path) -> list[Path]:
    """``docker save`` archives of every image, when an engine answers; [] otherwise."""
    from ops.docker import engine as docker_engine
    from ops.docker import images as docker_images

    if not docker_engine.status().answering:
        print("no Docker engine answers: images are not part of this release build")
        return []
    archives = []
    for spec in docker_images.select("all"):
        ref = f"{spec.name}:{project.version()}"
        docker_images.build(runner, spec, tags=[ref], quiet=True)
        archive = destination / f"{spec.name}-{project.version()}.tar"
        runner.run(["docker", "save", "--output", archive, ref])
        archives.append(archive)
    return archives


def build_all(
    runner: Runner,
    version: str,
    *,
    platforms: Sequence[str] = (*artifacts.PLATFORMS, artifacts.UNIVERSAL),
    with_images: bool = True,
    reuse: bool = False,
    root: Path = project.ROOT,
) -> Path:
    """Build every artefact into dist/<version>/ (replacing it atomically) and SHA256SUMS.

    ``reuse`` keeps the packages and pex files already in dist/<version>/ (e.g. built by the
    release workflow's platform matrix) and adds the rest.
    """
    final = dist_dir(version, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
    workdir = Path(tempfile.mkdtemp(prefix="llm-optimizer-release-"))
    try:
        packages = staging / "packages"
        if reuse and final.is_dir():
            shutil.copytree(final, staging, dirs_exist_ok=True)
        else:
            artifacts.build_packages(runner, packages)
            for platform in platforms:
                for package, target in artifacts.pex_targets(platform):
                    artifacts.build_pex(runner, package, target, packages, staging, workdir)
        chart(runner, staging, workdir)
        shutil.copy2(root / INSTALLER, staging / INSTALLER.name)
        if with_images:
            image_sbom.scan_archives(runner, images(runner, staging), version)
        sbom(runner, staging / "sbom.cdx.json", workdir)
        release_notes(runner, version, staging / "RELEASE_NOTES.md")
        unlisted = {"SHA256SUMS", sign.SUMS_SIGNATURE, sign.SUMS_BUNDLE}
        files = [p for p in staging.rglob("*") if p.is_file() and p.name not in unlisted]
        artifacts.write_sha256sums(staging, files)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return final


def tag(runner: Runner, version: str) -> None:
    runner.run(
        ["git", "tag", "--annotate", tag_name(version), "--message", f"Release {version}"],
        cwd=project.ROOT,
    )


def publish_settings(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Publishing credentials from the environment; Exit naming every missing variable."""
    missing = [name for name in PUBLISH_ENV.values() if not env.get(name)]
    if missing:
        raise Exit(
            "release.publish needs credentials from the environment (never arguments); "
            f"set: {', '.join(missing)}",
            code=1,
        )
    return {key: env[name] for key, name in PUBLISH_ENV.items()}


def publish(
    runner: Runner,
    version: str,
    settings: Mapping[str, str],
    signer: sign.Signer,
    directory: Path | None = None,
) -> None:
    """Push, sign and attest the images, push and sign the chart, sign SHA256SUMS, then
    create the GitHub release.

    Runs only what the release build produced (dist/<version>/); the runner prints each command
    (secrets go through stdin or the environment, never argv).
    """
    directory = directory or dist_dir(version)
    if not (directory / "SHA256SUMS").is_file():
        raise Exit(f"{directory} has no release build; run `invoke release` first", code=1)
    registry = settings["registry"].rstrip("/")
    host = registry.split("/", 1)[0]
    runner.run(
        ["docker", "login", host, "--username", settings["registry_user"], "--password-stdin"],
        stdin=settings["registry_password"],
    )
    from ops.k8s import helm

    with tempfile.TemporaryDirectory() as home:
        env = helm.helm_home_env(Path(home))
        runner.run(
            [
                "helm",
                "registry",
                "login",
                host,
                "--username",
                settings["registry_user"],
                "--password-stdin",
            ],
            stdin=settings["registry_password"],
            env=env,
        )
        push_and_sign(runner, directory, version, registry, signer, helm_env=env)
    sign.sign_sums(runner, directory, signer)
    github_release(version, directory, settings, dry_run=runner.dry_run)


HELM_DIGEST = re.compile(r"^Digest:\s*(sha256:[0-9a-f]{64})\s*$", re.MULTILINE)


def push_images(runner: Runner, directory: Path, version: str, registry: str) -> list[str]:
    """Load and push every image archive of ``directory``; each pushed image by digest."""
    pushed = []
    for archive in sorted(directory.glob("*.tar")):
        runner.run(["docker", "load", "--input", archive])
        name = archive.name.removesuffix(f"-{version}.tar")
        target = f"{registry}/{name}:{version}"
        runner.run(["docker", "tag", f"{name}:{version}", target])
        runner.run(["docker", "push", target])
        repository = f"{registry}/{name}"
        if runner.dry_run:
            pushed.append(f"{repository}@{sign.PUSHED_DIGEST}")
            continue
        digests = json.loads(
            runner.output(
                ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", target]
            )
            or "[]"
        )
        mine = [d for d in digests or [] if d.startswith(f"{repository}@")]
        if len(mine) != 1:
            raise Exit(f"docker push {target} left no single digest ({digests}); push it again", 1)
        pushed.append(mine[0])
    return pushed


def push_chart(
    runner: Runner, directory: Path, version: str, registry: str, helm_env: Mapping[str, str]
) -> str:
    """Push the chart archive as an OCI artifact to ``registry``/charts; the chart by digest."""
    chart_archive = directory / f"{project.CHART_NAME}-{version}.tgz"
    argv: list[str | os.PathLike[str]] = ["helm", "push", chart_archive, f"oci://{registry}/charts"]
    if sign.is_loopback(registry):
        argv.append("--plain-http")
    result = runner.run(argv, env=helm_env, capture=True)
    repository = f"{registry}/charts/{project.CHART_NAME}"
    if result is None:
        return f"{repository}@{sign.PUSHED_DIGEST}"
    match = HELM_DIGEST.search(f"{result.stdout}\n{result.stderr}")
    if match is None:
        raise Exit(f"helm push printed no digest for {chart_archive.name}: {result.stderr}", 1)
    print(f"pushed {repository}:{version} ({match.group(1)})")
    return f"{repository}@{match.group(1)}"


def push_and_sign(
    runner: Runner,
    directory: Path,
    version: str,
    registry: str,
    signer: sign.Signer,
    *,
    helm_env: Mapping[str, str],
) -> list[str]:
    """Push the images and the chart of a release directory and sign each by its digest;
    attest each image's SBOM (``<image>-<version>.cdx.json``) to the image's digest."""
    archives = sorted(directory.glob("*.tar"))
    sboms = [directory / image_sbom.file_name(a.name.removesuffix(f"-{version}.tar"), version)
             for a in archives]  # fmt: skip
    missing = [p.name for p in sboms if not p.is_file()]
    if missing:
        raise Exit(
            f"{directory} has no SBOM {', '.join(missing)} for its image archives; rebuild the "
            "release (invoke release.build) so that nothing is pushed without its SBOM",
            code=1,
        )
    if not runner.dry_run:
        from ops.core import tools

        tools.require("cosign")  # before anything is pushed: nothing goes out unsigned
    images_pushed = push_images(runner, directory, version, registry)
    pushed = [*images_pushed, push_chart(runner, directory, version, registry, helm_env)]
    sign.sign(runner, pushed, signer, version)
    image_sbom.attest(runner, dict(zip(images_pushed, sboms, strict=True)), signer)
    return pushed


def github_release(
    version: str, directory: Path, settings: Mapping[str, str], *, dry_run: bool
) -> None:
    """Create the GitHub release for the tag and upload every artefact to it."""
    import httpx

    repository = settings["github_repository"]
    files = sorted(p for p in directory.iterdir() if p.is_file())
    if dry_run:
        print(f"[dry-run] create GitHub release {tag_name(version)} on {repository} with:")
        for path in files:
            print(f"[dry-run]   {path.name}")
        return
    headers = {
        "Authorization": f"Bearer {settings['github_token']}",
        "Accept": "application/vnd.github+json",
    }
    with httpx.Client(headers=headers, timeout=60) as client:
        response = client.post(
            f"https://api.github.com/repos/{repository}/releases",
            json={
                "tag_name": tag_name(version),
                "name": f"LLM Auto Optimizer {version}",
                "body": (directory / "RELEASE_NOTES.md").read_text(),
            },
        )
        response.raise_for_status()
        upload = response.json()["upload_url"].split("{", 1)[0]
        for path in files:
            with path.open("rb") as fh:
                client.post(
                    upload,
                    params={"name": path.name},
                    content=fh.read(),
                    headers={"Content-Type": "application/octet-stream"},
                ).raise_for_status()
