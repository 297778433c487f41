#!/bin/sh
# Install the LLM Auto Optimizer from a release: verify the signature of the release's
# SHA256SUMS with cosign, download the pex for this host, verify it against SHA256SUMS, install
# it and run `version`. Nothing is installed unless the signature and the checksum are good.
#
#   curl -fsSL "$URL/install.sh" | sh -s -- --base-url "$URL"
#
# where URL is a release's download location, e.g.
# https://github.com/OWNER/REPO/releases/download/v1.2.3 (or a served dist/<version>/).
set -eu

usage() {
    cat <<USAGE
usage: install.sh --base-url URL [--key FILE | --certificate-identity ID] [--prefix DIR]
                  [--component cli|service] [--platform P] [--insecure-skip-signature]

Download SHA256SUMS from URL and verify its signature with cosign, then download
llm-optimizer-<component>-<version>-<platform>.pex, check its sha256 against SHA256SUMS, install
it as DIR/bin/llm-optimizer (cli) or DIR/bin/llm-optimizer-service (service) and run its
\`version\`.

  --base-url URL     the release's download location (or LLM_OPTIMIZER_BASE_URL)
  --key FILE         the release's cosign public key (or LLM_OPTIMIZER_COSIGN_KEY): checks
                     SHA256SUMS.sig (a key-signed release)
  --certificate-identity ID
                     the keyless signer (or LLM_OPTIMIZER_CERTIFICATE_IDENTITY): checks
                     SHA256SUMS.cosign.bundle. Default for a GitHub release URL
                     (https://github.com/OWNER/REPO/releases/download/vX.Y.Z): that repository's
                     release workflow at the tag,
                     https://github.com/OWNER/REPO/.github/workflows/release.yml@refs/tags/vX.Y.Z
  --certificate-oidc-issuer URL
                     the keyless signer's issuer (default: GitHub Actions',
                     https://token.actions.githubusercontent.com)
  --insecure-skip-signature
                     do NOT verify SHA256SUMS's signature (no cosign here): the checksums then
                     only prove the download is what the server holds, not who made it
  --prefix DIR       install under DIR/bin (default: \$HOME/.local)
  --component C      cli (the client, default) or service
  --platform P       linux-x86_64, linux-aarch64, macos-x86_64, macos-arm64 or
                     linux-x86_64-musl (the client only)
                     (default: this host's, from uname)
  -h, --help         show this help

Needs cosign (https://docs.sigstore.dev/cosign/system_config/installation/) on PATH to verify
the signature; without it the installer refuses unless given --insecure-skip-signature. The pex
needs python3 (3.11 or newer) on PATH. Exit 0 when installed and \`version\` ran; non-zero, with
nothing installed, on a missing or bad signature, a checksum mismatch or any other failure.
USAGE
}

die() {
    printf 'install.sh: %s\n' "$1" >&2
    exit "${2:-1}"
}

BASE_URL=${LLM_OPTIMIZER_BASE_URL:-} PREFIX=${HOME:-}/.local COMPONENT=cli PLATFORM=""
KEY=${LLM_OPTIMIZER_COSIGN_KEY:-} IDENTITY=${LLM_OPTIMIZER_CERTIFICATE_IDENTITY:-}
ISSUER=https://token.actions.githubusercontent.com SKIP_SIGNATURE=""
while [ $# -gt 0 ]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --base-url) [ $# -ge 2 ] || die "--base-url needs a URL" 2; BASE_URL=$2; shift 2 ;;
        --key) [ $# -ge 2 ] || die "--key needs the release's cosign public key file" 2; KEY=$2; shift 2 ;;
        --certificate-identity) [ $# -ge 2 ] || die "--certificate-identity needs an identity" 2; IDENTITY=$2; shift 2 ;;
        --certificate-oidc-issuer) [ $# -ge 2 ] || die "--certificate-oidc-issuer needs a URL" 2; ISSUER=$2; shift 2 ;;
        --insecure-skip-signature) SKIP_SIGNATURE=1; shift ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory" 2; PREFIX=$2; shift 2 ;;
        --component) [ $# -ge 2 ] || die "--component needs cli or service" 2; COMPONENT=$2; shift 2 ;;
        --platform) [ $# -ge 2 ] || die "--platform needs a platform" 2; PLATFORM=$2; shift 2 ;;
        *) usage >&2; die "unknown argument: $1" 2 ;;
    esac
done
[ -n "$BASE_URL" ] || die "give the release's download location: --base-url URL" 2
BASE_URL=${BASE_URL%/}
case $COMPONENT in
    cli) COMMAND=llm-optimizer ;;
    service) COMMAND=llm-optimizer-service ;;
    *) die "--component must be cli or service, not '$COMPONENT'" 2 ;;
esac
[ -z "$KEY" ] || [ -z "$IDENTITY" ] || die "give either --key or --certificate-identity, not both" 2
[ -z "$KEY" ] || [ -f "$KEY" ] || die "--key $KEY is not a file; give the release's cosign public key" 2
if [ -z "$KEY" ] && [ -z "$IDENTITY" ]; then
    # A GitHub release is signed keyless by its repository's release workflow at the tag.
    case $BASE_URL in
        https://github.com/*/*/releases/download/v*)
            repo=${BASE_URL#https://github.com/}
            tag=${repo##*/releases/download/}
            repo=${repo%%/releases/download/*}
            IDENTITY=https://github.com/$repo/.github/workflows/release.yml@refs/tags/$tag
            ;;
    esac
fi
if [ -z "$SKIP_SIGNATURE" ]; then
    [ -n "$KEY$IDENTITY" ] || die "nothing to check SHA256SUMS's signature against: give the \
release's public key (--key cosign.pub) or its keyless signer (--certificate-identity; a GitHub \
release URL implies it), or --insecure-skip-signature to trust the checksums unsigned" 2
    command -v cosign >/dev/null 2>&1 || die "needs cosign on PATH to verify the signature of \
SHA256SUMS: install it (https://docs.sigstore.dev/cosign/system_config/installation/), or pass \
--insecure-skip-signature to install without verifying who made the release (not recommended)"
fi

# This host's pex platform, named as the release names its pex files.
host_platform() {
    os=$(uname -s)
    machine=$(uname -m)
    case $os in
        Linux)
            if ldd --version 2>&1 | grep -qi musl || ls /lib/ld-musl-* >/dev/null 2>&1; then
                [ "$COMPONENT" = cli ] || die "musl libc (e.g. Alpine) has no service pex \
(aiokafka has no musllinux wheel): use the container image, or pip install the service wheel \
from the release's packages/ (see docs/releasing.md)"
                case $machine in
                    x86_64 | amd64) echo linux-x86_64-musl ;;
                    *) die "musl libc on $machine has no pex: use the container image or pip \
install the wheel from the release's packages/ (see docs/releasing.md)" ;;
                esac
                return
            fi
            case $machine in
                x86_64 | amd64) echo linux-x86_64 ;;
                aarch64 | arm64) echo linux-aarch64 ;;
                *) die "no pex for Linux on $machine; pip install the wheel from packages/" ;;
            esac
            ;;
        Darwin)
            case $machine in
                x86_64) echo macos-x86_64 ;;
                arm64) echo macos-arm64 ;;
                *) die "no pex for macOS on $machine" ;;
            esac
            ;;
        MINGW* | MSYS* | CYGWIN* | Windows_NT)
            die "Windows has no pex: pip install the wheel from the release's packages/, or use WSL2"
            ;;
        *) die "no pex for $os; pip install the wheel from the release's packages/" ;;
    esac
}

fetch() { # URL FILE [WHAT TO SAY WHEN IT CANNOT BE DOWNLOADED]
    failed=${3:-"could not download $1"}
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 3 -o "$2" "$1" || die "$failed"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1" || die "$failed"
    else
        die "needs curl or wget to download"
    fi
}

sha256_of() { # FILE
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d ' ' -f 1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | cut -d ' ' -f 1
    else
        die "needs sha256sum or shasum to verify the download"
    fi
}

[ -n "$PLATFORM" ] || PLATFORM=$(host_platform)
command -v python3 >/dev/null 2>&1 || die "the pex needs python3 (3.11 or newer) on PATH"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "the pex needs python3 3.11 or newer; python3 on PATH is $(python3 --version 2>&1)"

BIN=$PREFIX/bin
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; rm -f "$BIN/.$COMMAND.installing"' EXIT
trap 'exit 130' INT TERM
[ -n "$SKIP_SIGNATURE" ] || [ -n "$KEY" ] ||
    echo "SHA256SUMS must be signed keyless by $IDENTITY (issuer $ISSUER)"
fetch "$BASE_URL/SHA256SUMS" "$WORK/SHA256SUMS"

# Trust no checksum before SHA256SUMS's signature is verified.
if [ -n "$SKIP_SIGNATURE" ]; then
    printf '%s\n' "install.sh: WARNING: --insecure-skip-signature: the signature of SHA256SUMS is \
NOT verified; the checksums prove only that the files are what $BASE_URL serves, not who made them" >&2
elif [ -n "$KEY" ]; then
    fetch "$BASE_URL/SHA256SUMS.sig" "$WORK/SHA256SUMS.sig" "could not download \
$BASE_URL/SHA256SUMS.sig: without the signature of SHA256SUMS nothing is trusted; refusing it, \
nothing was installed"
    cosign verify-blob --key "$KEY" --signature "$WORK/SHA256SUMS.sig" \
        --insecure-ignore-tlog=true "$WORK/SHA256SUMS" >"$WORK/cosign.log" 2>&1 ||
        die "SHA256SUMS: its signature does not verify with the key $KEY ($(grep '^Error:' \
"$WORK/cosign.log" | tail -n 1)); it was tampered with or is not this release's: refusing it, \
nothing was installed"
    echo "SHA256SUMS: signature verified with $KEY"
else
    fetch "$BASE_URL/SHA256SUMS.cosign.bundle" "$WORK/SHA256SUMS.cosign.bundle" "could not \
download $BASE_URL/SHA256SUMS.cosign.bundle: without the signature of SHA256SUMS nothing is \
trusted; refusing it, nothing was installed"
    cosign verify-blob --bundle "$WORK/SHA256SUMS.cosign.bundle" \
        --certificate-identity "$IDENTITY" --certificate-oidc-issuer "$ISSUER" \
        "$WORK/SHA256SUMS" >"$WORK/cosign.log" 2>&1 ||
        die "SHA256SUMS: its signature does not verify for $IDENTITY ($(grep '^Error:' \
"$WORK/cosign.log" | tail -n 1)); it was tampered with or is not this release's: refusing it, \
nothing was installed"
    echo "SHA256SUMS: signature verified for $IDENTITY"
fi

# The one line of SHA256SUMS naming llm-optimizer-<component>-<version>-<platform>.pex.
EXPECTED="" NAME=""
while read -r sum path; do
    case $path in
        */*) ;;
        "llm-optimizer-$COMPONENT-"*"-$PLATFORM.pex") EXPECTED=$sum NAME=$path ;;
    esac
done <"$WORK/SHA256SUMS"
[ -n "$NAME" ] || die "$BASE_URL/SHA256SUMS lists no llm-optimizer-$COMPONENT pex for $PLATFORM"

echo "downloading $NAME"
fetch "$BASE_URL/$NAME" "$WORK/$NAME"
ACTUAL=$(sha256_of "$WORK/$NAME")
[ "$ACTUAL" = "$EXPECTED" ] ||
    die "$NAME: sha256 $ACTUAL does not match SHA256SUMS ($EXPECTED); it is corrupt or was \
tampered with: refusing it, nothing was installed"
echo "$NAME: sha256 matches SHA256SUMS"

# Install atomically: a temporary file in the target directory, renamed into place.
mkdir -p "$BIN"
cp "$WORK/$NAME" "$BIN/.$COMMAND.installing"
chmod 0755 "$BIN/.$COMMAND.installing"
mv -f "$BIN/.$COMMAND.installing" "$BIN/$COMMAND"
echo "installed $BIN/$COMMAND"
"$BIN/$COMMAND" version
case ":${PATH:-}:" in
    *":$BIN:"*) ;;
    *) echo "add $BIN to your PATH to run $COMMAND" ;;
esac
