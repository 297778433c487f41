"""Signing the release's images and chart in a registry with cosign, and checking signatures.

Everything is signed by digest (``registry/name@sha256:...``), never by tag: a tag can be
pushed over, a digest cannot. Each signature carries the release version as an annotation
(``org.opencontainers.image.version``) and ``verify`` requires it, so an older release's signed
image re-tagged as a newer version is refused too. Two ways to sign:

- **with a key** (tests, or a team that keeps its own key): ``COSIGN_KEY`` names the private key
  file (``cosign generate-key-pair``), its password comes from ``COSIGN_PASSWORD`` or from the file
  named by ``COSIGN_PASSWORD_FILE``, never from the command line. Nothing goes to a transparency
  log (``--tlog-upload=false``): there is no Rekor here, and a key is its own trust anchor.
- **keyless** (the release workflow): without ``COSIGN_KEY``, cosign signs with a short-lived
  Fulcio certificate for the workflow's OIDC identity (``id-token: write``) and records the
  signature in Rekor.

``verify`` checks an image or chart reference against a public key, or against the keyless
identity and issuer the release workflow signs with. Registries on the loopback (the tests'
local registry) are spoken to over plain HTTP, as docker does for 127.0.0.0/8.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from invoke.exceptions import Exit
from invoke.runners import Result

from ops.core.runner import Runner

KEY_ENV = "COSIGN_KEY"
PASSWORD_ENV = "COSIGN_PASSWORD"  # noqa: S105 (a variable name; cosign's own)
PASSWORD_FILE_ENV = "COSIGN_PASSWORD_FILE"  # noqa: S105 (a variable name)
DIGEST_REF = re.compile(r"^(?P<repository>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
# The identity a release workflow run signs with (keyless): its workflow file at the tag.
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# With a key there is no Sigstore infrastructure to trust: an empty trusted root stops cosign
# from fetching Sigstore's (TUF) one, which it would not use.
EMPTY_TRUSTED_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}
LOOPBACK = ("127.", "localhost", "[::1]")
# The signed payload's annotation that binds a signature to the release version.
VERSION_ANNOTATION = "org.opencontainers.image.version"
# What a dry run shows where the digest of a push would be (nothing was pushed).
PUSHED_DIGEST = "<digest of the push>"
# SHA256SUMS's signature (key-signed releases) and Sigstore bundle (keyless releases): beside
# it in the release directory, never listed in it.
SUMS_SIGNATURE = "SHA256SUMS.sig"
SUMS_BUNDLE = "SHA256SUMS.cosign.bundle"


@dataclass(frozen=True)
class Signer:
    """How to sign: a private key file (and its password), or keyless when ``key`` is None."""

    key: Path | None = None
    password: str = ""

    @property
    def keyless(self) -> bool:
        return self.key is None


def signer_from_env(env: Mapping[str, str] = os.environ) -> Signer:
    """The signer the environment asks for (never arguments); Exit naming a bad setting."""
    key = env.get(KEY_ENV, "")
    if not key:
        return Signer()
    path = Path(key)
    if not path.is_file():
        raise Exit(
            f"{KEY_ENV}={key} is not a file; point it at the private key of "
            "`cosign generate-key-pair`, or unset it to sign keyless",
            code=1,
        )
    password = env.get(PASSWORD_ENV, "")
    password_file = env.get(PASSWORD_FILE_ENV, "")
    if password_file:
        try:
            password = Path(password_file).read_text().rstrip("\n")
        except OSError as error:
            raise Exit(
                f"{PASSWORD_FILE_ENV}={password_file} cannot be read ({error.strerror}); "
                f"point it at the key's password file, or set {PASSWORD_ENV}",
                code=1,
            ) from error
    return Signer(path, password)


def is_loopback(reference: str) -> bool:
    """Whether ``reference`` names a registry on this machine (spoken to over plain HTTP)."""
    return reference.startswith(LOOPBACK)


def registry_flags(reference: str) -> list[str]:
    return ["--allow-http-registry"] if is_loopback(reference) else []


def by_digest(reference: str, *, dry_run: bool = False) -> str:
    """``reference`` if it names an image by digest; Exit naming the fix otherwise.

    A dry run also takes the placeholder of a push it did not make (``PUSHED_DIGEST``).
    """
    if dry_run and reference.endswith(f"@{PUSHED_DIGEST}"):
        return reference
    if not DIGEST_REF.match(reference):
        raise Exit(
            f"{reference} is not a reference by digest (<registry>/<name>@sha256:<64 hex>); "
            "sign what was pushed by its digest, never by a tag that can be pushed over",
            code=2,
        )
    return reference


def sign_command(
    reference: str, signer: Signer, version: str, *, dry_run: bool = False
) -> list[str]:
    """The cosign command that signs ``reference`` (by digest) for ``version``."""
    argv = ["cosign", "sign", "--yes", "-a", f"{VERSION_ANNOTATION}={version}"]
    if signer.key is not None:
        argv += ["--key", str(signer.key), "--tlog-upload=false"]
    return [*argv, *registry_flags(reference), by_digest(reference, dry_run=dry_run)]


def sign(runner: Runner, references: Sequence[str], signer: Signer, version: str) -> None:
    """Sign every reference (each by digest) for ``version``; a key's password goes through the
    environment."""
    commands = [sign_command(r, signer, version, dry_run=runner.dry_run) for r in references]
    env = {PASSWORD_ENV: signer.password} if signer.key is not None else None
    for argv, reference in zip(commands, references, strict=True):
        runner.run(argv, env=env, hint=f"cosign could not sign {reference}")


def sign_blob_command(path: Path, signer: Signer) -> list[str]:
    """The cosign command that signs the file ``path`` (SHA256SUMS) beside itself."""
    if signer.key is not None:
        output = ["--key", str(signer.key), "--tlog-upload=false", "--output-signature"]
        return [
            "cosign",
            "sign-blob",
            "--yes",
            *output,
            str(path.parent / SUMS_SIGNATURE),
            str(path),
        ]
    return ["cosign", "sign-blob", "--yes", "--bundle", str(path.parent / SUMS_BUNDLE), str(path)]


def sign_sums(runner: Runner, directory: Path, signer: Signer) -> Path:
    """Sign ``directory``'s SHA256SUMS: SHA256SUMS.sig (a key) or SHA256SUMS.cosign.bundle."""
    sums = directory / "SHA256SUMS"
    for stale in (SUMS_SIGNATURE, SUMS_BUNDLE):
        (directory / stale).unlink(missing_ok=True)
    env = {PASSWORD_ENV: signer.password} if signer.key is not None else None
    runner.run(sign_blob_command(sums, signer), env=env, hint=f"cosign could not sign {sums}")
    return directory / (SUMS_SIGNATURE if signer.key is not None else SUMS_BUNDLE)


@dataclass(frozen=True)
class Trust:
    """What a signature must chain to: a public key, or a keyless identity and its issuer."""

    key: Path | None = None
    identity: str = ""
    issuer: str = ""

    def describe(self) -> str:
        if self.key is not None:
            return f"the public key {self.key}"
        return f"the identity {self.identity} (issuer {self.issuer})"


def trust_from_options(key: str, identity: str, issuer: str) -> Trust:
    """Exactly one of a public key file or (identity, issuer); Exit naming the fix."""
    if key and (identity or issuer):
        raise Exit("give either --key or --certificate-identity/--certificate-oidc-issuer", 2)
    if key:
        path = Path(key)
        if not path.is_file():
            raise Exit(f"--key {key} is not a file; give the release's cosign public key", 2)
        return Trust(key=path)
    if not (identity and issuer):
        raise Exit(
            "signatures need something to trust: --key cosign.pub (a key-signed release) or "
            "--certificate-identity and --certificate-oidc-issuer (a keyless release; see "
            "docs/releasing.md)",
            2,
        )
    return Trust(identity=identity, issuer=issuer)


def verify_blob_command(path: Path, trust: Trust) -> list[str]:
    """The cosign command that checks the signature (or keyless bundle) of the file ``path``."""
    if trust.key is not None:
        signature = str(path.parent / SUMS_SIGNATURE)
        flags = ["--key", str(trust.key), "--signature", signature, "--insecure-ignore-tlog=true"]
        return ["cosign", "verify-blob", *flags, str(path)]
    return [
        "cosign", "verify-blob", "--bundle", str(path.parent / SUMS_BUNDLE),
        "--certificate-identity", trust.identity,
        "--certificate-oidc-issuer", trust.issuer, str(path),
    ]  # fmt: skip


def verify_blob(runner: Runner, path: Path, trust: Trust) -> str:
    """ "" when ``path`` (SHA256SUMS) carries a valid signature by ``trust``; the problem if not."""
    proof = path.parent / (SUMS_SIGNATURE if trust.key is not None else SUMS_BUNDLE)
    if not proof.is_file():
        return f"{proof.name} is missing"
    result = runner.run(verify_blob_command(path, trust), check=False, capture=True)
    if result is None or result.exited == 0:
        return ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    return lines[-1].removeprefix("Error:").strip() if lines else f"cosign exited {result.exited}"


def trust_flags(trust: Trust, trusted_root: Path | None) -> list[str]:
    """cosign's flags for what a signature must chain to (``--trusted-root``: the empty root a
    key-based check passes so that cosign fetches nothing from Sigstore)."""
    if trust.key is None:
        return ["--certificate-identity", trust.identity, "--certificate-oidc-issuer", trust.issuer]
    flags = ["--key", str(trust.key), "--insecure-ignore-tlog=true"]
    return [*flags, "--trusted-root", str(trusted_root)] if trusted_root is not None else flags


def verify_command(
    reference: str, trust: Trust, version: str, trusted_root: Path | None
) -> list[str]:
    """The cosign command that checks ``reference``'s signatures for ``version`` (``trust``)."""
    argv = ["cosign", "verify", "--output", "json", "-a", f"{VERSION_ANNOTATION}={version}"]
    return [*argv, *trust_flags(trust, trusted_root), *registry_flags(reference), reference]


def run_verify(
    runner: Runner, trust: Trust, command: Callable[[Path | None], list[str]]
) -> tuple[Result | None, str]:
    """Run the cosign check ``command(trusted_root)`` (an empty trusted root for a key); returns
    (its result, "") or (result, cosign's own last error line) when it failed; (None, "") in a
    dry run."""
    with tempfile.TemporaryDirectory(prefix="llm-optimizer-cosign-") as work:
        trusted_root = None
        if trust.key is not None:
            trusted_root = Path(work) / "trusted_root.json"
            trusted_root.write_text(json.dumps(EMPTY_TRUSTED_ROOT))
        result = runner.run(command(trusted_root), check=False, capture=True)
    if result is None or result.exited == 0:
        return result, ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    detail = lines[-1].removeprefix("Error:").strip() if lines else result.stderr.strip()
    return result, detail or f"cosign exited {result.exited}"


def verify(runner: Runner, reference: str, trust: Trust, version: str) -> tuple[str, str]:
    """(signed digest, "") when ``reference`` carries a valid signature for ``version``; ("",
    problem) if not.

    The problem is cosign's own last error line (e.g. "no signatures found", "invalid
    signature"), for the caller to name with the artefact and the fix.
    """
    result, problem = run_verify(
        runner, trust, lambda root: verify_command(reference, trust, version, root)
    )
    if result is None or problem:
        return "", problem
    digests = set()
    try:
        for payload in json.loads(result.stdout):
            digests.add(payload["critical"]["image"]["docker-manifest-digest"])
    except (ValueError, KeyError, TypeError):
        return "", f"cosign printed no signature payload: {result.stdout.strip()[:200]}"
    if len(digests) != 1:
        return "", f"signatures name {len(digests)} digests: {sorted(digests)}"
    return digests.pop(), ""
