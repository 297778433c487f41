"""The Compose files as users run them: every combination validates, images are pinned, ports are
local, production is hardened, and every variable handed to the optimizer is a real setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_optimizer_service.settings import load_settings

from ops.core import tools
from ops.core.project import PROJECT
from ops.core.runner import CommandFailedError, Runner
from ops.docker import compose as compose_stack
from ops.docker import standins
from tests._support.settings_review import production_problems
from tests._support.tools import require_tool

OPTIMIZER_SERVICES = ("optimizer", "migrate")  # the services that run our image

COMBINATIONS = compose_stack.combinations()


def _id(combination: dict[str, Any]) -> str:
    parts = [combination["env"], *(["standins"] if combination["standins"] else [])]
    return "+".join([*parts, *combination["profiles"]])


@pytest.fixture(scope="module")
def runner() -> Runner:
    require_tool("docker")
    require_tool("docker-compose")
    return Runner(echo=False)


@pytest.mark.parametrize("combination", COMBINATIONS, ids=_id)
def test_compose_config_quiet_passes(runner: Runner, combination: dict[str, Any]) -> None:
    compose_stack.config_check(runner, **combination)


@pytest.fixture(scope="module")
def models(runner: Runner) -> dict[str, dict[str, Any]]:
    return {
        _id(c): compose_stack.rendered(
            runner,
            c["env"],
            standins=c["standins"],
            profiles=c["profiles"],
            variables=c["variables"],
        )
        for c in COMBINATIONS
    }


def test_every_image_is_pinned_by_tag(models: dict[str, dict[str, Any]]) -> None:
    for name, model in models.items():
        for service, spec in model["services"].items():
            image = spec["image"]
            repository, _, tag = image.rpartition(":")
            assert repository, f"{name}: {service} image {image} has no tag"
            assert "/" not in tag, f"{name}: {service} image {image} has no tag"
            assert tag != "latest", f"{name}: {service} uses latest"


def test_ports_are_published_on_localhost_only(models: dict[str, dict[str, Any]]) -> None:
    for name, model in models.items():
        for service, spec in model["services"].items():
            for port in spec.get("ports", []):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {service} publishes {port}"


def test_everything_handed_to_the_optimizer_is_a_real_setting(
    models: dict[str, dict[str, Any]],
) -> None:
    from llm_optimizer_service import settings

    valid = settings.env_var_names()
    for name, model in models.items():
        for service in OPTIMIZER_SERVICES:
            env = model["services"][service].get("environment") or {}
            ours = {key for key in env if key.startswith("LLM_OPTIMIZER_")}
            assert ours, f"{name}: {service} gets no settings"
            assert ours <= valid, f"{name}: {service} passes unknown settings {ours - valid}"
            assert set(env) == ours, f"{name}: {service} gets non-settings {set(env) - ours}"


def test_migrate_is_a_one_off_the_optimizer_waits_for(models: dict[str, dict[str, Any]]) -> None:
    for name, model in models.items():
        services = model["services"]
        assert services["optimizer"]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        ), name
        assert services["migrate"]["command"] == ["db", "upgrade"]
        for dependency in ("postgres", "redis"):
            assert services["optimizer"]["depends_on"][dependency]["condition"] == "service_healthy"
            assert services[dependency]["healthcheck"]["test"], f"{dependency} has a healthcheck"
        env = services["optimizer"]["environment"]
        assert env["LLM_OPTIMIZER_DATABASE__AUTO_MIGRATE"] == "false", "serve never migrates"


def test_dev_stack_has_the_whole_platform(models: dict[str, dict[str, Any]]) -> None:
    dev = set(models["dev"]["services"])
    assert {
        "optimizer", "migrate", "postgres", "redis", "kafka", "prometheus", "alertmanager",
        "grafana", "jaeger", "postgres-exporter", "redis-exporter", "node-exporter",
    } <= dev  # fmt: skip
    tools = set(models["dev+tools"]["services"]) - dev
    assert tools, "admin UIs live behind the tools profile"
    kafka = models["dev"]["services"]["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"], "KRaft, no ZooKeeper"
    assert not any("zookeeper" in s for s in dev)


def test_prod_is_hardened_replicated_and_reads_secrets_from_files(
    models: dict[str, dict[str, Any]],
) -> None:
    prod = models["prod"]["services"]
    optimizer = prod["optimizer"]
    assert "container_name" not in optimizer, "a fixed name breaks replicas"
    assert optimizer["deploy"]["replicas"] >= 2
    assert not optimizer.get("ports"), "replicas publish nothing; the proxy does"
    assert "proxy" in prod
    assert prod["proxy"]["depends_on"]["optimizer"]["condition"] == "service_healthy"
    for service in ("optimizer", "migrate", "proxy"):
        spec = prod[service]
        assert spec["read_only"] is True, service
        assert spec["cap_drop"] == ["ALL"], service
        assert "no-new-privileges:true" in spec["security_opt"], service
        assert spec["deploy"]["resources"]["limits"]["memory"], service
    env = optimizer["environment"]
    assert env["LLM_OPTIMIZER_ENVIRONMENT"] == "production"
    for secret in ("DATABASE__URL", "REDIS__URL", "AUTH__API_KEYS"):
        assert f"LLM_OPTIMIZER_{secret}" not in env, f"{secret} must come from a file"
        assert env[f"LLM_OPTIMIZER_{secret}_FILE"].startswith("/run/secrets/")
    assert not any("container_name" in spec for spec in prod.values())


def test_prod_names_each_missing_required_setting(runner: Runner) -> None:
    with pytest.raises(CommandFailedError) as failure:
        compose_stack.config_check(runner, "prod", variables={})
    assert re.search(r"required variable \w+ is missing a value: set \w+", str(failure.value))


def test_the_files_name_the_project_and_compose_ci_only_overrides_images(runner: Runner) -> None:
    base = yaml.safe_load(compose_stack.BASE_FILE.read_text())
    assert base["name"] == PROJECT
    ci = yaml.safe_load(compose_stack.CI_FILE.read_text())
    declared = {name for name, spec in base["services"].items() if not spec.get("profiles")}
    images = declared - {"optimizer", "migrate", "grafana"}  # ours, and one that can't be built
    # Every other service has a stand-in; nothing else is overridden (no environment, command
    # or port), so compose.yml runs as users run it. Grafana is left out of the stack.
    assert set(ci["services"]) == images | {"grafana"}
    assert ci["services"]["grafana"] == {"profiles": ["grafana"]}
    allowed = {"image", "build", "pull_policy", "volumes"}
    for standin in images:
        spec = ci["services"][standin]
        assert set(spec) <= allowed, (standin, spec)
        assert spec["image"].startswith("llm-optimizer-standin/"), spec
        assert (compose_stack.COMPOSE_DIR / "standins" / standin / "Dockerfile").is_file()
        if standin in standins.HOST_BUILT:  # built by ops.docker.standins before `compose up`
            assert spec["pull_policy"] == "never", spec
            assert "build" not in spec, spec
        else:
            assert spec["pull_policy"] == "build", spec
            assert spec["build"]["context"] == f"standins/{standin}", spec
    # The one volume override: node-exporter's root mount without rslave (see the file).
    assert [s for s in images if "volumes" in ci["services"][s]] == ["node-exporter"]
    assert ci["services"]["node-exporter"]["volumes"] == ["/:/host:ro"]


# Stand-ins that are the release compose.yml names (built from its Go module), not an older one.
SAME_RELEASE = ("prometheus", "alertmanager")


@pytest.mark.parametrize("service", SAME_RELEASE)
def test_a_go_built_stand_in_is_the_release_compose_yml_names(service: str) -> None:
    """compose.yml's tag, the stand-in's tag and the catalogued tool's version are one release."""
    base = yaml.safe_load(compose_stack.BASE_FILE.read_text())["services"][service]
    version = tools.CATALOGUE[standins.HOST_BUILT[service]].version
    assert base["image"].endswith(f":v{version}"), (base["image"], version)
    assert standins.image(compose_stack.CI_FILE, service).endswith(f":{version}")


# The client CLI's own variables (contract: `--api-url`/`LLM_OPTIMIZER_API_URL`,
# `--api-key`/`LLM_OPTIMIZER_API_KEY`); the Helm chart's test pod may use them.
CLI_VARIABLES = {"LLM_OPTIMIZER_API_URL", "LLM_OPTIMIZER_API_KEY"}


def test_every_llm_optimizer_variable_named_in_infra_is_a_real_setting() -> None:
    """Compose files, the Dockerfiles, the Helm chart and the systemd env file all name settings
    the service really reads (the settings model's own list), or the CLI's two variables."""
    from llm_optimizer_service import settings

    from ops.core.project import INFRA_DIR

    valid = settings.env_var_names() | CLI_VARIABLES
    unknown: dict[str, set[str]] = {}
    for path in sorted(INFRA_DIR.rglob("*")):
        if not path.is_file() or path.suffix in (".tgz", ".png"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        names = set(re.findall(r"\bLLM_OPTIMIZER_[A-Z0-9_]*[A-Z0-9]", text)) - valid
        if names:
            unknown[str(path.relative_to(INFRA_DIR))] = names
    assert not unknown, f"variables that are no setting of the service: {unknown}"


class _TaggedLoader(yaml.SafeLoader):
    """The safe loader, reading Compose's merge tags (!override, !reset) as plain values."""


_TaggedLoader.add_multi_constructor(
    "!",
    lambda loader, _tag, node: (
        loader.construct_mapping(node)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)
    ),
)


def test_prod_keys_file_mode_is_one_the_service_accepts(tmp_path: Path) -> None:
    """Compose bind-mounts a file secret with the host file's owner and mode, and the service
    refuses a keys file every user may read: the required-setting message tells the operator to
    give the file to the image's group (the Dockerfile's USER) with a mode the service accepts,
    and the optimizer and migrate run as that image user (no `user:` override)."""
    prod = yaml.load(compose_stack.PROD_FILE.read_text(), _TaggedLoader)
    dockerfile = (compose_stack.COMPOSE_DIR / "Dockerfile.service").read_text()
    (gid,) = re.findall(r"(?m)^USER \d+:(\d+)$", dockerfile)
    message = prod["secrets"]["api_keys"]["file"]
    (group, mode) = re.findall(r"chgrp (\d+) FILE and chmod (\d+) FILE", message)[0]
    assert group == gid
    for service in ("optimizer", "migrate"):
        assert "api_keys" in prod["services"][service]["secrets"]
        assert "user" not in prod["services"][service]
    keys = tmp_path / "api_keys"
    keys.write_text("k-" + "5e2b" * 10 + "\n")
    keys.chmod(int(mode, 8))
    settings = load_settings(environment="production", auth={"api_keys_file": keys})
    assert production_problems(settings) == []


def test_compose_ci_prod_adds_the_proxy_standin_to_prod_only() -> None:
    """compose.ci.prod.yml: nginx's stand-in (and no broker or tracing backend for the
    optimizer), added after compose.ci.yml for prod only: the development stack has no proxy."""
    ci_prod = yaml.safe_load(compose_stack.CI_PROD_FILE.read_text())
    assert set(ci_prod["services"]) == {"proxy", "optimizer", "migrate"}
    assert ci_prod["services"]["proxy"]["build"]["context"] == "standins/nginx"
    assert compose_stack.files("prod", standins=True)[-2:] == [
        compose_stack.CI_FILE,
        compose_stack.CI_PROD_FILE,
    ]
    assert compose_stack.CI_PROD_FILE not in compose_stack.files("dev", standins=True)


def test_up_builds_only_the_stand_ins_of_the_services_it_starts(runner: Runner) -> None:
    """`compose up SERVICES` starts those and what they depend on; the host-built stand-ins
    among them are all `up` builds (each may wait for a Go build). test_compose_e2e checks the
    same set against what Compose really started."""
    dev = compose_stack.started(runner, "dev", ["optimizer", "kafka"], standins=True)
    assert dev == {"optimizer", "migrate", "postgres", "redis", "kafka"}
    assert dev & set(standins.HOST_BUILT) == {"kafka"}
    prod = compose_stack.started(
        runner,
        "prod",
        ["proxy", "optimizer", "migrate", "postgres", "redis"],
        standins=True,
        variables=compose_stack.PROD_PLACEHOLDERS,
    )
    assert prod == {"proxy", "optimizer", "migrate", "postgres", "redis"}
    assert compose_stack.started(runner, "dev", ["prometheus"], standins=True) == {"prometheus"}
    assert compose_stack.started(runner, "dev", [], standins=True) is None  # every one
