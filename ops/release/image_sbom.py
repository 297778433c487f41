"""Image SBOMs: a CycloneDX JSON SBOM of each image, made with syft, attested with cosign.

The release scans each image archive it builds (``docker-archive:<image>-<version>.tar``; no
daemon needed) into ``<image>-<version>.cdx.json`` beside it, so the SBOM goes into SHA256SUMS
with everything else; the release workflow, whose images go straight to the registry, scans them
there by digest (``registry:<ref>@sha256:...``). syft names the SBOM's subject
(``metadata.component``) after the image and the release version, not the file it read.

On publish each SBOM is attached to its image's digest as a signed in-toto attestation
(``cosign attest --type cyclonedx``, with the release key or keyless, as the signatures are).
``release.verify`` checks the files (CycloneDX schema, the image they name, the locked Python
packages of what the image ships) and, with ``--registry``, that every image carries a verified
attestation whose SBOM is the release directory's file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ops.core.runner import Runner
from ops.release import sign

PREDICATE_TYPE = "cyclonedx"  # cosign's name for https://cyclonedx.org/bom
# syft asks GitHub for a newer version of itself on every run unless told not to.
SYFT_ENV = {"SYFT_CHECK_FOR_APP_UPDATE": "false"}


def file_name(image: str, version: str) -> str:
    """The SBOM file of ``image`` in a release directory."""
    return f"{image}-{version}.cdx.json"


def image_of(name: str, version: str) -> str | None:
    """The image an SBOM file name is for, or None if it is not one of ``version``."""
    suffix = f"-{version}.cdx.json"
    return name.removesuffix(suffix) if name.endswith(suffix) else None


def scan_command(source: str, image: str, version: str, target: Path) -> list[str]:
    """syft's command: ``source`` (docker-archive:FILE or registry:REF) → CycloneDX JSON."""
    return [
        "syft", "scan", source, "--quiet",
        "--source-name", image, "--source-version", version,
        "--output", f"cyclonedx-json={target}",
    ]  # fmt: skip


def scan(runner: Runner, source: str, image: str, version: str, target: Path) -> Path:
    """Write the SBOM of ``image`` (read from ``source``) to ``target``."""
    runner.run(
        scan_command(source, image, version, target),
        env=SYFT_ENV,
        hint=f"syft could not scan {source}; install it with `uv run invoke setup --only syft`",
    )
    return target


def scan_archives(runner: Runner, archives: Sequence[Path], version: str) -> list[Path]:
    """One SBOM beside each ``<image>-<version>.tar`` archive."""
    from ops.core import tools

    if archives and not runner.dry_run:
        tools.require("syft")
    sboms = []
    for archive in archives:
        image = archive.name.removesuffix(f"-{version}.tar")
        target = archive.parent / file_name(image, version)
        sboms.append(scan(runner, f"docker-archive:{archive}", image, version, target))
    return sboms


def attest_command(
    reference: str, predicate: Path, signer: sign.Signer, *, dry_run: bool = False
) -> list[str]:
    """The cosign command that attests ``predicate`` (an SBOM) to ``reference`` (by digest)."""
    argv = ["cosign", "attest", "--yes", "--type", PREDICATE_TYPE, "--predicate", str(predicate)]
    if signer.key is not None:
        argv += ["--key", str(signer.key), "--tlog-upload=false"]
    return [*argv, *sign.registry_flags(reference), sign.by_digest(reference, dry_run=dry_run)]


def attest(runner: Runner, attestations: Mapping[str, Path], signer: sign.Signer) -> None:
    """Attest each SBOM to its image reference (by digest); a key's password via the env."""
    commands = [
        attest_command(ref, sbom, signer, dry_run=runner.dry_run)
        for ref, sbom in attestations.items()
    ]
    env = {sign.PASSWORD_ENV: signer.password} if signer.key is not None else None
    for argv, reference in zip(commands, attestations, strict=True):
        runner.run(argv, env=env, hint=f"cosign could not attest the SBOM of {reference}")


def verify_command(reference: str, trust: sign.Trust, trusted_root: Path | None) -> list[str]:
    """The cosign command that checks ``reference``'s CycloneDX attestations (``trust``)."""
    argv = ["cosign", "verify-attestation", "--type", PREDICATE_TYPE]
    trusted = sign.trust_flags(trust, trusted_root)
    return [*argv, *trusted, *sign.registry_flags(reference), reference]


def verified_sboms(
    runner: Runner, reference: str, trust: sign.Trust
) -> tuple[list[dict[str, Any]], str]:
    """(the attested SBOMs, "") when ``reference`` carries verified CycloneDX attestations;
    ([], problem) if not, the problem being cosign's own last error line."""
    result, problem = sign.run_verify(
        runner, trust, lambda root: verify_command(reference, trust, root)
    )
    if result is None or problem:
        return [], problem
    sboms = []
    try:
        for line in result.stdout.splitlines():
            if line.strip():
                statement = json.loads(base64.b64decode(json.loads(line)["payload"]))
                sboms.append(statement["predicate"])
    except (ValueError, KeyError, TypeError):
        return [], f"cosign printed no attestation payload: {result.stdout.strip()[:200]}"
    return sboms, ""


def subject(bom: Mapping[str, Any]) -> tuple[str, str]:
    """(name, version) of what an SBOM describes (its metadata.component)."""
    component = bom.get("metadata", {}).get("component", {})
    if not isinstance(component, dict):
        return "", ""
    return str(component.get("name", "")), str(component.get("version", ""))


def python_packages(bom: Mapping[str, Any]) -> dict[str, str]:
    """Name (normalised) -> version of every Python package (pkg:pypi) an SBOM lists."""
    from packaging.utils import canonicalize_name

    listed: dict[str, str] = {}
    for component in bom.get("components", []):
        purl, name, version = (component.get(k) for k in ("purl", "name", "version"))
        if isinstance(purl, str) and purl.startswith("pkg:pypi/") and isinstance(name, str):
            listed[canonicalize_name(name)] = str(version)
    return listed
