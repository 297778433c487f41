"""Checking a release directory (dist/<version>/) before anyone ships or installs from it.

``invoke release.verify --dir dist/<version>`` checks, and lists every problem it finds, each
naming the artefact and the fix:

- SHA256SUMS lists every file of the directory and nothing else, and every checksum matches;
- the SBOM is CycloneDX JSON that validates against its schema (cyclonedx-python-lib's strict
  validator) and lists exactly the locked runtime dependencies of what is shipped: the same
  ``uv export`` of ``uv.lock`` the release built it from (so run it from the released commit);
- the chart archive's Chart.yaml ``version`` and ``appVersion`` equal the release version;
- every pex is named ``<dist>-<version>-<platform>.pex``, requires ``<dist>==<version>`` and
  carries only wheels that install on its platform(s);
- package and image archive names (and an image archive's tag) carry the version;
- each image archive has its SBOM (``<image>-<version>.cdx.json``, made by syft): schema-valid
  CycloneDX naming the image and the version, listing the image's package and the locked Python
  dependencies it ships (a sanity check: not every OS package), a package the image builds in
  place of a locked one standing for it (``ops/docker/build_context.py``);
- with ``--key`` or a keyless identity, SHA256SUMS carries a valid signature (SHA256SUMS.sig)
  or keyless bundle (SHA256SUMS.cosign.bundle).

With ``--registry`` it also checks, with cosign, that every image and the chart pushed there at
the version carry a valid signature for that version: by the release's public key (``--key``), or
by the release workflow's keyless identity (``--certificate-identity`` and
``--certificate-oidc-issuer``); and that every image carries a verified CycloneDX attestation
whose SBOM names it (and, with ``--dir``, equals the release's SBOM file).
"""

from __future__ import annotations

import json
import re
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from invoke.exceptions import Exit

from ops.build import artifacts
from ops.core import project, python_tools
from ops.core.runner import Runner
from ops.release import cut, image_sbom, sign, versioning

SUMS = "SHA256SUMS"
SBOM = "sbom.cdx.json"
NOTES = "RELEASE_NOTES.md"
SUMS_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
REBUILD = "rebuild the release (invoke release.build) or download it again"
# Validates an SBOM against the CycloneDX JSON schema of its specVersion (run in the release
# group's environment, where cyclonedx-bom brings cyclonedx-python-lib[validation]).
VALIDATE_SBOM = """\
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
failed = False
for path in sys.argv[1:]:
    text = open(path).read()
    try:
        schema = SchemaVersion.from_version(json.loads(text)["specVersion"])
        error = JsonStrictValidator(schema).validate_str(text)
    except Exception as exception:
        error = exception
    if error is not None:
        print(path, str(error).replace(chr(10), " "), sep=chr(9))
        failed = True
sys.exit(1 if failed else 0)
"""


@dataclass
class Report:
    """The problems found in a release (directory, registry), each naming artefact and fix."""

    subject: str
    problems: list[str] = field(default_factory=list)

    def add(self, artefact: str, problem: str, fix: str) -> None:
        self.problems.append(f"{artefact}: {problem}; {fix}")

    def raise_if_failed(self) -> None:
        if self.problems:
            lines = "\n".join(f"  - {problem}" for problem in self.problems)
            raise Exit(
                f"release {self.subject} failed verification ({len(self.problems)} "
                f"problems):\n{lines}",
                code=1,
            )


# SHA256SUMS and what signs it (a signature cannot list itself).
UNLISTED = frozenset({SUMS, sign.SUMS_SIGNATURE, sign.SUMS_BUNDLE})


def release_files(directory: Path) -> set[str]:
    """Every file of the release directory but SHA256SUMS (and its signature), as POSIX paths
    relative to it."""
    return {
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.relative_to(directory).as_posix() not in UNLISTED
    }


def check_sums(directory: Path, report: Report) -> None:
    """SHA256SUMS lists every file and nothing else, and every listed checksum matches."""
    sums = directory / SUMS
    if not sums.is_file():
        report.add(SUMS, "missing", REBUILD)
        return
    listed: dict[str, str] = {}
    for number, line in enumerate(sums.read_text().splitlines(), 1):
        match = SUMS_LINE.match(line)
        if not match:
            report.add(SUMS, f"line {number} is not `<sha256>  <path>`: {line!r}", REBUILD)
            continue
        listed[match.group(2)] = match.group(1)
    present = release_files(directory)
    for name in sorted(set(listed) - present):
        report.add(name, f"listed in {SUMS} but missing from the directory", REBUILD)
    for name in sorted(present - set(listed)):
        report.add(
            name, f"not listed in {SUMS}", "remove it, or rebuild the release if it belongs there"
        )
    for name in sorted(set(listed) & present):
        actual = artifacts.sha256(directory / name)
        if actual != listed[name]:
            report.add(
                name,
                f"sha256 {actual} does not match {SUMS} ({listed[name]}): corrupt or tampered",
                REBUILD,
            )


def locked_dependencies(
    runner: Runner, root: Path, package: str = "", *, on_linux: bool = False
) -> dict[str, str]:
    """Name (normalised) -> version of every locked runtime dependency the release ships (or
    ``package`` ships; ``on_linux``: only those its markers install in a Linux image)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    linux = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
    locked: dict[str, str] = {}
    for line in cut.locked_requirements(runner, root, package).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        if on_linux and requirement.marker and not requirement.marker.evaluate(linux):
            continue
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        locked[canonicalize_name(requirement.name)] = pins[0] if pins else ""
    return locked


def schema_errors(runner: Runner, paths: list[Path], root: Path) -> dict[Path, str]:
    """Each SBOM of ``paths`` that fails the CycloneDX JSON schema of its specVersion, with the
    validator's error (one run of the validator for all of them)."""
    if not paths:
        return {}
    with tempfile.TemporaryDirectory(prefix="llm-optimizer-verify-") as work:
        script = Path(work) / "validate_sbom.py"
        script.write_text(VALIDATE_SBOM)
        result = runner.run(
            python_tools.uv_run(["release"], "python", str(script), *map(str, paths)),
            cwd=root,
            check=False,
            capture=True,
        )
    if result is None or result.exited == 0:
        return {}
    errors = {}
    for line in result.stdout.splitlines():
        path, _, error = line.partition("\t")
        if error:
            errors[Path(path)] = error
    if not errors:  # the validator itself failed
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        errors = dict.fromkeys(paths, " ".join(last))
    return errors


def schema_check(path: Path, errors: dict[Path, str], report: Report) -> None:
    if path in errors:
        report.add(path.name, f"fails the CycloneDX schema: {errors[path]}", REBUILD)


def load_bom(path: Path, report: Report) -> dict[str, Any] | None:
    """The CycloneDX document at ``path``, or None (reported) if it is not one."""
    try:
        bom = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        report.add(path.name, f"is not JSON ({error})", REBUILD)
        return None
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        report.add(path.name, "is not a CycloneDX document (bomFormat != CycloneDX)", REBUILD)
        return None
    return bom


def image_sbom_paths(directory: Path, version: str) -> dict[str, Path]:
    """Image name -> the SBOM file of it in a release directory."""
    found = {}
    for path in sorted(directory.glob("*.cdx.json")):
        image = image_sbom.image_of(path.name, version)
        if image is not None:
            found[image] = path
    return found


def check_image_sboms(
    runner: Runner,
    directory: Path,
    version: str,
    report: Report,
    root: Path,
    errors: dict[Path, str],
) -> None:
    """Each image archive has its SBOM; each image SBOM is schema-valid CycloneDX naming its
    image at the version and listing the image package and its locked Python dependencies."""
    from ops.docker import images as docker_images

    specs = {spec.name: spec for spec in docker_images.select("all")}
    expected = {
        path.name.removesuffix(f"-{version}.tar") for path in directory.glob(f"*-{version}.tar")
    }
    present = set(image_sbom_paths(directory, version))
    for image in sorted(expected - present):
        report.add(
            image_sbom.file_name(image, version),
            f"missing: the image archive {image}-{version}.tar has no SBOM",
            REBUILD,
        )
    fix = f"rebuild the release from the commit whose uv.lock it ships ({REBUILD})"
    for image in sorted(present):
        path = directory / image_sbom.file_name(image, version)
        if image not in specs:
            report.add(path.name, f"is the SBOM of {image}, not an image of this release", fix)
            continue
        bom = load_bom(path, report)
        if bom is None:
            continue
        schema_check(path, errors, report)
        named = image_sbom.subject(bom)
        if named != (image, version):
            report.add(
                path.name,
                f"describes {named[0] or '?'} {named[1] or '?'}, not the image {image} {version}",
                fix,
            )
        listed = image_sbom.python_packages(bom)
        spec = specs[image]
        locked = {
            **locked_dependencies(runner, root, spec.dist, on_linux=True),
            spec.dist: version,
        }
        # A package the image builds from source in place of a locked one (psycopg-c for
        # psycopg-binary, ops/docker/build_context.py) ships instead of it, at the same version,
        # on the build host's platform; an image for another platform ships the locked one.
        instead = {b.replaces: b.name for b in spec.from_source if b.replaces}
        for name in sorted(locked):
            shipped = name if name in listed or name not in instead else instead[name]
            if shipped not in listed:
                built = f" (or {instead[name]}, built in its place)" if name in instead else ""
                report.add(path.name, f"does not list the Python package {name}{built}", fix)
            elif locked[name] and listed[shipped] != locked[name]:
                report.add(
                    path.name, f"lists {shipped}=={listed[shipped]} but the release ships "
                    f"{locked[name]}", fix,
                )  # fmt: skip


def check_sbom(
    runner: Runner, directory: Path, report: Report, root: Path, errors: dict[Path, str]
) -> None:
    """The SBOM is schema-valid CycloneDX listing exactly the locked runtime dependencies."""
    from packaging.utils import canonicalize_name

    path = directory / SBOM
    if not path.is_file():
        report.add(SBOM, "missing", REBUILD)
        return
    try:
        bom = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        report.add(SBOM, f"is not JSON ({error})", REBUILD)
        return
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        report.add(SBOM, "is not a CycloneDX document (bomFormat != CycloneDX)", REBUILD)
        return
    schema_check(path, errors, report)
    listed: dict[str, str] = {}
    for component in bom.get("components", []):
        name, version = component.get("name"), component.get("version")
        if isinstance(name, str) and isinstance(version, str):
            listed[canonicalize_name(name)] = version
    locked = locked_dependencies(runner, root)
    fix = "rebuild the release from the commit whose uv.lock it ships (invoke release.build)"
    for name in sorted(set(locked) - set(listed)):
        report.add(SBOM, f"does not list the locked dependency {name}=={locked[name]}", fix)
    for name in sorted(set(listed) - set(locked)):
        report.add(SBOM, f"lists {name}=={listed[name]}, which uv.lock does not ship", fix)
    for name in sorted(set(listed) & set(locked)):
        if listed[name] != locked[name]:
            report.add(SBOM, f"lists {name}=={listed[name]} but uv.lock locks {locked[name]}", fix)


def check_chart(directory: Path, version: str, report: Report) -> None:
    """The chart archive exists and its Chart.yaml version and appVersion are the release's."""
    name = f"{project.CHART_NAME}-{version}.tgz"
    fix = f"package the chart at version {version} (invoke release.bump, then release.build)"
    for other in sorted(directory.glob(f"{project.CHART_NAME}-*.tgz")):
        if other.name != name:
            report.add(other.name, f"is not the chart of release {version}", fix)
    path = directory / name
    if not path.is_file():
        report.add(name, "the chart archive is missing", REBUILD)
        return
    try:
        with tarfile.open(path, "r:gz") as archive:
            member = archive.extractfile(f"{project.CHART_NAME}/Chart.yaml")
            chart = yaml.safe_load(member.read()) if member else None
    except (tarfile.TarError, KeyError, OSError, yaml.YAMLError) as error:
        report.add(name, f"has no readable {project.CHART_NAME}/Chart.yaml ({error})", REBUILD)
        return
    if not isinstance(chart, dict):
        report.add(name, "Chart.yaml is not a mapping", REBUILD)
        return
    for key in ("version", "appVersion"):
        if str(chart.get(key)) != version:
            report.add(name, f"Chart.yaml {key} is {chart.get(key)!r}, not {version}", fix)


def pex_platform(name: str, version: str) -> tuple[str, str] | None:
    """(distribution, platform) of a release pex file name, or None if it is not one."""
    for package in artifacts.packages():
        prefix = f"{package.dist}-{version}-"
        if name.startswith(prefix) and name.endswith(".pex"):
            platform = name.removeprefix(prefix).removesuffix(".pex")
            if platform in artifacts.PLATFORMS or platform == artifacts.UNIVERSAL:
                return package.dist, platform
            if platform in artifacts.CLIENT_PLATFORMS and package.lean:
                return package.dist, platform
    return None


def check_pex(path: Path, version: str, report: Report) -> None:
    """The pex's name and its PEX-INFO carry the version; its wheels install on its platform."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    fix = f"rebuild it for {version} (invoke release.build)"
    parsed = pex_platform(path.name, version)
    if parsed is None:
        report.add(
            path.name,
            f"is not named <dist>-{version}-<platform>.pex for a known platform",
            fix,
        )
        return
    dist, platform = parsed
    try:
        with zipfile.ZipFile(path) as archive:
            info = json.loads(archive.read("PEX-INFO"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        report.add(path.name, f"is not a pex with a readable PEX-INFO ({error})", REBUILD)
        return
    if f"{dist}=={version}" not in info.get("requirements", []):
        report.add(path.name, f"does not require {dist}=={version} (PEX-INFO)", fix)
    compatible = set(artifacts.compatible_tags(platform))
    for wheel in info.get("distributions", {}):
        try:
            tags = {str(tag) for tag in parse_wheel_filename(wheel)[3]}
        except InvalidWheelFilename:
            report.add(path.name, f"carries {wheel}, which is not a wheel", fix)
            continue
        if not tags & compatible:
            report.add(path.name, f"carries {wheel}, which does not install on {platform}", fix)


def check_names(directory: Path, version: str, report: Report) -> None:
    """Packages and image archives carry the version in their names (and the image its tag)."""
    fix = f"rebuild it for {version} (invoke release.build)"
    stems = {p.dist.replace("-", "_") for p in artifacts.packages()}
    for path in sorted((directory / "packages").glob("*")):
        if not any(path.name.startswith(f"{stem}-{version}") for stem in stems):
            report.add(f"packages/{path.name}", f"is not a package of release {version}", fix)
    for path in sorted(directory.glob("*.tar")):
        if not path.name.endswith(f"-{version}.tar"):
            report.add(path.name, f"is not an image archive of release {version}", fix)
            continue
        ref = f"{path.name.removesuffix(f'-{version}.tar')}:{version}"
        try:
            with tarfile.open(path) as archive:
                member = archive.extractfile("manifest.json")
                manifest = json.loads(member.read()) if member else []
        except (tarfile.TarError, KeyError, OSError, ValueError) as error:
            report.add(path.name, f"is not a docker save archive ({error})", REBUILD)
            continue
        tags = {tag for image in manifest for tag in image.get("RepoTags") or []}
        if not any(tag.endswith(ref) for tag in tags):
            report.add(path.name, f"does not hold the image {ref} (has {sorted(tags)})", fix)


def verify(
    runner: Runner, directory: Path, version: str = "", *, root: Path = project.ROOT
) -> Report:
    """Check every artefact of a release directory; the report lists every problem found."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise Exit(f"{directory} is not a directory; give --dir dist/<version>", code=1)
    version = versioning.validate(version or directory.name)
    report = Report(str(directory))
    check_sums(directory, report)
    if not (directory / NOTES).is_file():
        report.add(NOTES, "missing", REBUILD)
    pexes = sorted(directory.glob("*.pex"))
    if not pexes:
        report.add(f"{directory.name}/*.pex", "no pex file in the release", REBUILD)
    for pex in pexes:
        check_pex(pex, version, report)
    check_chart(directory, version, report)
    check_names(directory, version, report)
    sboms = [directory / SBOM, *image_sbom_paths(directory, version).values()]
    errors = schema_errors(runner, [p for p in sboms if p.is_file()], root)
    check_sbom(runner, directory, report, root, errors)
    check_image_sboms(runner, directory, version, report, root, errors)
    return report


def check_sums_signature(
    runner: Runner, directory: Path, trust: sign.Trust, report: Report
) -> None:
    """SHA256SUMS carries a valid signature (key) or bundle (keyless) by ``trust``."""
    from ops.core import tools

    tools.require("cosign")
    problem = sign.verify_blob(runner, directory.resolve() / SUMS, trust)
    if problem:
        report.add(
            SUMS,
            f"signature check failed: {problem}",
            f"do not install from it: its checksums are not vouched for by {trust.describe()}; "
            "download the release again from its official location",
        )


def registry_references(registry: str, version: str) -> list[str]:
    """What a release pushes at ``version``: every image and the chart (an OCI artifact)."""
    from ops.docker import images as docker_images

    registry = registry.rstrip("/")
    refs = [f"{registry}/{spec.name}:{version}" for spec in docker_images.select("all")]
    return [*refs, f"{registry}/charts/{project.CHART_NAME}:{version}"]


def signature_fix(problem: str, trust: sign.Trust) -> str:
    """What to do about a signature cosign refused (its error says which case it is)."""
    if "no signatures found" in problem:
        return (
            "the tag points at a digest nobody signed (pushed over after signing, or never "
            "signed): do not use it; publish the release again (invoke release.publish) or sign "
            "what you pushed by its digest (invoke release.sign --ref <name>@sha256:...)"
        )
    if "incorrect annotation" in problem:
        return (
            "do not use it: it is signed, but for another version (an older release re-tagged, "
            "or pushed over); publish the release again (invoke release.publish)"
        )
    if "digest in claim" in problem:
        return (
            "do not use it: the signature it carries was made for another digest (copied onto "
            "this one); publish the release again (invoke release.publish)"
        )
    return (
        f"do not use it: its signature does not verify against {trust.describe()}; check that "
        "you trust the release's own key or identity (docs/releasing.md), otherwise publish the "
        "release again"
    )


def check_signatures(
    runner: Runner, registry: str, version: str, trust: sign.Trust, report: Report
) -> None:
    """Every image and the chart at ``version`` in ``registry`` carry a valid signature."""
    from ops.core import tools

    tools.require("cosign")
    for reference in registry_references(registry, version):
        digest, problem = sign.verify(runner, reference, trust, version)
        if problem:
            report.add(
                reference, f"signature check failed: {problem}", signature_fix(problem, trust)
            )
        elif digest:
            print(f"{reference}: signed ({digest}) by {trust.describe()}")


def check_attestations(
    runner: Runner,
    registry: str,
    version: str,
    trust: sign.Trust,
    report: Report,
    directory: Path | None = None,
) -> None:
    """Every image at ``version`` carries a verified CycloneDX attestation of its SBOM, naming
    the image at the version; with ``directory``, the attested SBOM is the release's file."""
    from ops.docker import images as docker_images

    registry = registry.rstrip("/")
    for spec in docker_images.select("all"):
        reference = f"{registry}/{spec.name}:{version}"
        sboms, problem = image_sbom.verified_sboms(runner, reference, trust)
        if problem:
            report.add(
                reference,
                f"SBOM attestation check failed: {problem}",
                attestation_fix(problem, trust),
            )
            continue
        if runner.dry_run:
            continue
        expected = None
        if directory is not None:
            path = directory / image_sbom.file_name(spec.name, version)
            if path.is_file():
                expected = json.loads(path.read_text())
            else:
                report.add(path.name, "missing: nothing to compare the attested SBOM with", REBUILD)
        named = [bom for bom in sboms if image_sbom.subject(bom) == (spec.name, version)]
        if not named:
            subjects = sorted({" ".join(image_sbom.subject(bom)) for bom in sboms})
            report.add(
                reference,
                f"its attested SBOM describes {', '.join(subjects)}, not {spec.name} {version} "
                "(an attestation made for another image)",
                "do not use it; publish the release again (invoke release.publish)",
            )
        elif expected is not None and expected not in named:
            report.add(
                reference,
                f"its attested SBOM differs from {image_sbom.file_name(spec.name, version)}",
                "do not use the file or the image until you know which one was changed; "
                "download the release again, or publish it again (invoke release.publish)",
            )
        else:
            print(f"{reference}: SBOM attested by {trust.describe()}")


def attestation_fix(problem: str, trust: sign.Trust) -> str:
    """What to do about an SBOM attestation cosign refused (its error says which case it is)."""
    if problem.rstrip().endswith("no matching attestations:"):
        return (
            "the image at this tag carries no SBOM attestation (pushed over after publishing, or "
            "never attested): do not use it; publish the release again (invoke release.publish)"
        )
    return (
        f"do not use it: no SBOM attestation of it verifies against {trust.describe()} (made "
        "with another key or identity, or for another digest and copied onto this one); check "
        "that you trust the release's own key or identity (docs/releasing.md), otherwise "
        "publish the release again (invoke release.publish)"
    )
