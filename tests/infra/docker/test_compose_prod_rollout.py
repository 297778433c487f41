"""The production Compose stack for real, and a rolling deploy onto new code under load.

compose.yml + compose.prod.yml (+ the CI stand-ins: compose.ci.yml for postgres/redis,
compose.ci.prod.yml for nginx): the proxy, two optimizer replicas, the one-off migrate, postgres
and redis, with every secret read from a file this test writes (compose.prod.yml's `secrets:`).
Kafka and Jaeger are not started (compose.ci.yml tells the optimizer of none). Checked: both
replicas healthy and reached through the proxy, the containers read-only with no capabilities
(the proxy: only what nginx's master needs to drop to its workers), no secret in any container's
environment or command line. Then `invoke deploy --target compose --env prod` onto new code
under steady decide + feedback load through nginx: no failed request, every acknowledged
feedback and every decision stored, the replicas on the new image; the figures are printed. Then
`down -v` leaves nothing behind.

"New code": the stack starts on an image derived from the session's service image (one extra
label, so another image id); the deploy builds the real service image under the same tag, and
the replicas must end on that build's image id.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import httpx
import pytest
from docker.models.containers import Container
from invoke.config import Config
from invoke.context import Context
from invoke.exceptions import Exit

from ops.core import project
from ops.core.project import IMAGE_UID, ROOT
from ops.core.runner import Runner
from ops.deploy import compose as compose_target
from ops.deploy import load
from ops.docker import commands, engine, rollout
from ops.docker import compose as compose_stack
from ops.docker.images import BuildResult
from tests._support.docker import TEST_TAG, project_resources
from tests._support.tools import free_port, require_tool

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

ROLLOUT_TAG = f"{TEST_TAG}-rollout"
IMAGE = commands.image_ref(project.SERVICE_IMAGE, ROLLOUT_TAG)
SERVICES = ("proxy", "optimizer", "migrate", "postgres", "redis")
REPLICAS = 2
# What nginx's master needs to start as root and drop its workers to an unprivileged user
# (compose.prod.yml's cap_add; NET_BIND_SERVICE is not used: it listens on 8080).
PROXY_CAPABILITIES = {"CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"}


@dataclass(frozen=True)
class ProdStack:
    project: str
    url: str
    api_key: str
    secrets: tuple[str, ...]  # every secret value, to look for where it must not be
    old_image_id: str
    invoke_env: dict[str, str]


def _write_secrets(directory: Path, api_key: str, password: str) -> dict[str, str]:
    """The files compose.prod.yml's secrets read; the variables naming them."""
    directory.mkdir(mode=0o700)
    files = {
        "OPTIMIZER_DATABASE_URL_FILE": (
            "database_url",
            f"postgresql+psycopg://optimizer:{password}@postgres:5432/optimizer",
        ),
        "OPTIMIZER_REDIS_URL_FILE": ("redis_url", "redis://redis:6379/0"),
        "OPTIMIZER_API_KEYS_FILE": ("api_keys", f"{api_key}\n"),
        "POSTGRES_PASSWORD_FILE": ("postgres_password", password),
        "GRAFANA_ADMIN_PASSWORD_FILE": ("grafana_admin_password", secrets.token_hex(16)),
    }
    variables = {}
    for variable, (name, content) in files.items():
        path = directory / name
        path.write_text(content)
        if name == "postgres_password":
            path.chmod(0o644)  # read by the postgres user of its image, whatever its uid
        else:
            # A file secret is a bind mount keeping the host file's owner and mode: the image's
            # group reads it, no one else (compose.prod.yml says so for api_keys).
            os.chown(path, -1, IMAGE_UID)
            path.chmod(0o640)
        variables[variable] = str(path)
    return variables


def _containers(name: str, service: str | None = None) -> list[Container]:
    labels = [f"com.docker.compose.project={name}"]
    if service:
        labels.append(f"com.docker.compose.service={service}")
    return list(engine.client().containers.list(all=True, filters={"label": labels}))


def _old_code(base_ref: str) -> str:
    """An image of the service with one label more than ``base_ref`` (its id differs): the
    code the stack runs before the deploy. Returns its id."""
    dockerfile = f"FROM {base_ref}\nLABEL org.llm-optimizer.test=before-rollout\n"
    Runner(echo=True).run(
        ["docker", "build", "--quiet", "--tag", IMAGE, "-"],
        env=dict(commands.BUILD_ENV),
        stdin=dockerfile,
        capture=True,
    )
    return str(commands.image_attrs(IMAGE)["Id"])


@pytest.fixture(scope="module")
def prod(
    service_image: BuildResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProdStack]:
    require_tool("docker-compose")
    started = time.monotonic()
    name = f"llmo-prod-{uuid.uuid4().hex[:8]}"
    api_key = secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(24)
    http_port = free_port()
    variables = {
        **_write_secrets(tmp_path_factory.mktemp("prod") / "secrets", api_key, password),
        "POSTGRES_USER": "optimizer",
        "POSTGRES_DB": "optimizer",
        "OPTIMIZER_HTTP_PORT": str(http_port),
        "OPTIMIZER_GRPC_PORT": str(free_port()),
        "OPTIMIZER_REPLICAS": str(REPLICAS),
    }
    old_image_id = _old_code(service_image.refs[0])
    invoke_env = {
        **variables,
        "INVOKE_LLM_OPTIMIZER_IMAGE_TAG": ROLLOUT_TAG,
        "INVOKE_LLM_OPTIMIZER_COMPOSE_PROJECT": name,
        "INVOKE_LLM_OPTIMIZER_COMPOSE_ENV": "prod",
        "INVOKE_LLM_OPTIMIZER_COMPOSE_STANDINS": "true",
        "INVOKE_LLM_OPTIMIZER_COMPOSE_SERVICES": ",".join(SERVICES),
    }
    runner = Runner(echo=True)
    try:
        compose_stack.up(
            runner,
            env="prod",
            project=name,
            image=IMAGE,
            standins=True,
            services=SERVICES,
            variables=variables,
            build=False,  # _old_code built IMAGE
        )
        print(f"prod stack up in {time.monotonic() - started:.1f} s")
        yield ProdStack(
            name,
            f"http://127.0.0.1:{http_port}",
            api_key,
            (api_key, password),
            old_image_id,
            invoke_env,
        )
    finally:
        compose_stack.down(runner, project=name, volumes=True, standins=True)
        with contextlib.suppress(docker.errors.ImageNotFound):  # the tag only; layers are shared
            engine.client().images.remove(IMAGE)


def test_prod_stack_runs_two_healthy_replicas_behind_the_proxy(prod: ProdStack) -> None:
    rows = compose_stack.ps(Runner(echo=False), project=prod.project)
    states: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        states.setdefault(row["Service"], []).append((row["State"], row.get("Health") or ""))
    assert set(states) == set(SERVICES), rows
    assert states["optimizer"] == [("running", "healthy")] * REPLICAS, rows
    for service in ("proxy", "postgres", "redis"):
        assert states[service] == [("running", "healthy")], rows
    [migrate] = _containers(prod.project, "migrate")
    assert migrate.attrs["State"]["ExitCode"] == 0
    with httpx.Client(base_url=prod.url, timeout=10) as http:
        assert http.get("/health/ready").status_code == 200
        health = http.get("/health").json()
        assert health["components"]["database"] == "ok", health
        assert health["components"]["redis"] == "ok", health
        assert http.get("/api/v1/workloads").status_code == 401


def _served(container: Container, route: str) -> int:
    """How many requests of ``route`` the replica's access log shows."""
    return container.logs().decode(errors="replace").count(f'"route": "{route}"')


def test_requests_through_the_proxy_reach_both_replicas(prod: ProdStack) -> None:
    replicas = _containers(prod.project, "optimizer")
    assert len(replicas) == REPLICAS
    route = "/api/v1/workloads"
    before = {c.name: _served(c, route) for c in replicas}
    headers = {"Authorization": f"Bearer {prod.api_key}"}
    with httpx.Client(base_url=prod.url, headers=headers, timeout=10) as http:
        for _ in range(20):
            assert http.get(route).status_code == 200
    deadline = time.monotonic() + 10  # the access log reaches Docker's log a moment later
    while True:
        served = {c.name: _served(c, route) - before[c.name] for c in replicas}
        if sum(served.values()) >= 20 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sum(served.values()) == 20, served
    assert all(count > 0 for count in served.values()), f"one replica got nothing: {served}"


def test_containers_are_read_only_without_capabilities_and_hold_no_secret(
    prod: ProdStack,
) -> None:
    for container in _containers(prod.project):
        service = container.labels["com.docker.compose.service"]
        host = container.attrs["HostConfig"]
        config = container.attrs["Config"]
        if service in ("optimizer", "migrate", "proxy"):
            assert host["ReadonlyRootfs"] is True, service
            assert host["CapDrop"] == ["ALL"], service
            assert "no-new-privileges:true" in (host["SecurityOpt"] or []), service
            allowed = PROXY_CAPABILITIES if service == "proxy" else set()
            added = {cap.removeprefix("CAP_") for cap in host["CapAdd"] or []}
            assert added <= allowed, (service, added)
        if service == "optimizer":
            assert not host["PortBindings"], "replicas publish nothing; the proxy does"
            mounts = {m["Destination"] for m in container.attrs["Mounts"]}
            assert {"/run/secrets/database_url", "/run/secrets/api_keys"} <= mounts, mounts
        shown = [*(config.get("Env") or []), *(config.get("Cmd") or []), *container.attrs["Args"]]
        if container.status == "running":  # the real command lines of its processes
            shown += [" ".join(process) for process in container.top()["Processes"]]
        for secret in prod.secrets:
            leaks = [text for text in shown if secret in text]
            assert not leaks, f"{container.name} shows a secret in its env or command line"


def test_the_proxy_standin_needs_no_capability_to_bind(prod: ProdStack) -> None:
    """nginx (stand-in) read-only with only CHOWN, SETUID and SETGID listens on 8080: of
    compose.prod.yml's cap_add, NET_BIND_SERVICE is not needed (kept: the real image's file)."""
    [proxy] = _containers(prod.project, "proxy")
    conf = ROOT / "infra" / "docker" / "proxy" / "nginx.conf"
    container = engine.client().containers.run(
        str(proxy.attrs["Config"]["Image"]),
        detach=True,
        read_only=True,
        cap_drop=["ALL"],
        cap_add=["CHOWN", "SETUID", "SETGID"],
        security_opt=["no-new-privileges:true"],
        tmpfs={"/tmp": "size=16m", "/var/cache/nginx": "size=32m", "/var/run": "size=1m"},
        volumes={str(conf): {"bind": "/etc/nginx/nginx.conf", "mode": "ro"}},
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # a socket on 8080 (1F90) in state LISTEN (0A): nginx bound it
            _, out = container.exec_run(["cat", "/proc/net/tcp"])
            listening = any(
                line.split()[1].endswith(":1F90") and line.split()[3] == "0A"
                for line in out.decode().splitlines()[1:]
            )
            if listening or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert listening, container.logs().decode(errors="replace")
        container.reload()
        assert container.status == "running"
        # and accepts connections there (its answer would wait for the resolver, Docker's DNS,
        # which only the Compose network serves: not waited for)
        url = "http://127.0.0.1:8080/"
        _, said = container.exec_run(["wget", "-T", "1", "-t", "1", "-O", "/dev/null", url])
        assert b"127.0.0.1:8080... connected." in said, said
    finally:
        commands.remove(container)


def _stored(prod: ProdStack, table: str, column: str = "decision_id") -> set[str]:
    """The decision ids in ``table`` (decisions: ``id``; feedback), read in the postgres
    container."""
    [postgres] = _containers(prod.project, "postgres")
    query = f"--command=SELECT {column} FROM {table}"
    psql = ["psql", "--username=optimizer", "--dbname=optimizer", "--tuples-only", "--no-align"]
    code, out = postgres.exec_run([*psql, query])
    assert code == 0, out
    return {line.strip() for line in out.decode().splitlines() if line.strip()}


def _invoke_deploy(prod: ProdStack, *extra: str) -> subprocess.CompletedProcess[str]:
    """`invoke deploy --target compose --env prod` as a user runs it, on this stack."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", "deploy", "--target", "compose", "--env", "prod", *extra],
        cwd=ROOT,
        env={**os.environ, **prod.invoke_env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_dry_run_of_the_deploy_prints_the_rollout_and_touches_nothing(prod: ProdStack) -> None:
    before = sorted(str(c.id) for c in rollout.replicas(prod.project))
    result = _invoke_deploy(prod, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    for number in range(1, 7):
        assert f"rollout {number}/6 " in result.stdout, result.stdout
    assert re.search(r"\[dry-run\] docker build .*--tag " + re.escape(IMAGE), result.stderr)
    assert re.search(r"\[dry-run\] docker compose .* --scale optimizer=4 ", result.stderr)
    assert sorted(str(c.id) for c in rollout.replicas(prod.project)) == before
    assert str(commands.image_attrs(IMAGE)["Id"]) == prod.old_image_id


def test_deploy_onto_new_code_under_load_fails_no_request_and_loses_no_feedback(
    prod: ProdStack,
) -> None:
    with load.client(prod.url, prod.api_key) as http:
        load.ensure_workload(http)
    old = {c.id for c in _containers(prod.project, "optimizer")}
    began = time.monotonic()
    with load.steady_load(prod.url, prod.api_key, workers=4) as figures:
        time.sleep(2.0)
        deploy_began = time.monotonic()
        result = _invoke_deploy(prod)
        deploy_s = time.monotonic() - deploy_began
        time.sleep(2.0)
    print(
        f"compose prod rollout under load (4 clients through nginx): {figures.summary()}; "
        f"deploy {deploy_s:.1f} s, load {time.monotonic() - began:.1f} s"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(next(line for line in result.stdout.splitlines() if line.startswith("rolled ")))
    assert "rolling them onto" in result.stdout, result.stdout
    assert "not after a clean drain" not in result.stdout, result.stdout  # each old one exited 0
    assert figures.requests > 0
    assert figures.failed == 0, figures.summary()

    new_image_id = str(commands.image_attrs(IMAGE)["Id"])
    assert new_image_id != prod.old_image_id, "the deploy built no new image"
    replicas = rollout.replicas(prod.project)
    assert len(replicas) == REPLICAS
    assert not old & {c.id for c in replicas}, "an old replica still runs"
    assert {c.image.id for c in replicas} == {new_image_id}
    assert all(rollout.is_ready(c) for c in replicas)
    assert not [c for c in _containers(prod.project, "optimizer") if c.id in old]

    # Every acknowledged feedback is stored, and every decision answered (none twice: a decide
    # that nginx retried on another replica after the first had stored it would show here).
    acknowledged, decided = set(figures.acknowledged), set(figures.decided)
    assert len(acknowledged) == len(figures.acknowledged)
    assert acknowledged <= _stored(prod, "feedback")
    deadline = time.monotonic() + 15  # decisions are written in batches (flush interval)
    while not decided <= (stored := _stored(prod, "decisions", "id")):
        assert time.monotonic() < deadline, f"{len(decided - stored)} decisions never stored"
        time.sleep(0.5)
    assert len(stored) == len(decided), f"{len(stored) - len(decided)} decisions not answered"
    # The report counts them too (each replica reloads the statistics every cycle, 1 s).
    counted = -1
    with load.client(prod.url, prod.api_key) as http:
        while counted != len(acknowledged) and time.monotonic() < deadline + 15:
            report = http.get(f"/api/v1/workloads/{load.WORKLOAD}/report").json()
            counted = sum(arm["feedback"] for arm in report["arms"])
            time.sleep(0.5)
    assert counted == len(acknowledged), report


def _variables(prod: ProdStack) -> dict[str, str]:
    """The stack's Compose variables (the secrets' files, ports, ...), without Invoke's."""
    return {k: v for k, v in prod.invoke_env.items() if not k.startswith("INVOKE_")}


def test_a_rollout_whose_new_replicas_cannot_serve_leaves_the_old_ones_serving(
    prod: ProdStack,
) -> None:
    """New code that migrates but cannot serve (its metrics listener is set to an address that
    is not the container's, so `serve` exits 1): the rollout fails at once naming it, removes
    the new replicas, and the old ones never stop serving."""
    broken = f"{IMAGE}-broken"
    Runner(echo=True).run(
        ["docker", "build", "--quiet", "--tag", broken, "-"],
        env=dict(commands.BUILD_ENV),
        stdin=f"FROM {IMAGE}\nENV LLM_OPTIMIZER_SERVER__METRICS_HOST=192.0.2.1\n",
        capture=True,
    )
    stack = compose_stack.Stack(prod.project, "prod", True, broken)
    before = sorted(str(c.id) for c in rollout.replicas(prod.project))
    try:
        with (
            load.steady_load(prod.url, prod.api_key, workers=2) as figures,
            pytest.raises(Exit) as failure,
        ):
            rollout.roll(Runner(echo=True), stack, variables=_variables(prod))
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.client().images.remove(broken, force=True)  # migrate ran on it
    print(f"failed rollout under load: {figures.summary()}")
    assert "removed the new replica(s), the 2 old one(s) still serve" in str(failure.value)
    assert re.search(r"new replica \S+ exited .*instead of serving", str(failure.value))
    assert "cannot listen on 192.0.2.1" in str(failure.value)  # the new replica's log
    assert sorted(str(c.id) for c in _containers(prod.project, "optimizer")) == before
    assert figures.requests > 0
    assert figures.failed == 0, figures.summary()


def test_restart_of_a_prod_stack_rolls_the_replicas_onto_the_configured_count(
    prod: ProdStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compose target's restart (what `invoke verify` measures) on a prod stack is the
    rollout onto the image it runs, without a build; it ends on the replica count the files
    ask for now (OPTIMIZER_REPLICAS raised to 3)."""
    for key, value in _variables(prod).items():  # what `compose` needs: the secrets' files
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OPTIMIZER_REPLICAS", str(REPLICAS + 1))
    compose = {"project": prod.project, "env": "prod", "standins": True}
    ctx = Context(
        Config(
            overrides={
                "llm_optimizer": {"registry": "", "image_tag": ROLLOUT_TAG, "compose": compose}
            }
        )
    )
    before = {str(c.id) for c in rollout.replicas(prod.project)}
    image_id = str(commands.image_attrs(IMAGE)["Id"])
    with load.steady_load(prod.url, prod.api_key, workers=4) as figures:
        time.sleep(1.0)
        compose_target.restart(ctx)
        time.sleep(1.0)
    print(f"compose prod restart under load: {figures.summary()}")
    after = rollout.replicas(prod.project)
    assert len(after) == REPLICAS + 1
    assert not before & {str(c.id) for c in after}
    assert {c.attrs["Image"] for c in after} == {image_id}
    assert figures.failed == 0, figures.summary()


def test_verify_passes_every_check_on_the_prod_stack(
    prod: ProdStack, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """`invoke verify --target compose --strict` (the task itself) on this stack, after the
    tests above (its workload is the load's; its restart is a rollout): the URL is the proxy's
    port, the key the api_keys secret's file, the metrics read inside each replica, the restart
    the rollout under load (no failed request), the backup in a throwaway read-only container
    with the secrets from files; every check passes."""
    from ops.tasks.verify import verify as verify_task

    for key, value in _variables(prod).items():  # what `compose` needs: the secrets' files
        monkeypatch.setenv(key, value)
    compose = {"project": prod.project, "env": "prod", "standins": True}
    ctx = Context(
        Config(
            overrides={
                "llm_optimizer": {"registry": "", "image_tag": ROLLOUT_TAG, "compose": compose}
            }
        )
    )
    began = time.monotonic()
    try:
        verify_task(ctx, target="compose", strict=True)
    finally:
        out = capfd.readouterr().out
        print(out)
    print(f"invoke verify --target compose on the prod stack: {time.monotonic() - began:.1f} s")
    assert "verify --target compose: every check passed" in out
    for check in ("health", "round trip", "metrics", "restart", "backup"):
        assert re.search(rf"│ {check} +│ ok +│", out), check
    scraped = re.search(r"across the (\d+) replicas' scrapes", out)  # 3 after the test above
    assert scraped is not None, out
    assert int(scraped.group(1)) >= REPLICAS, out
    figures = re.search(r"restart under load \(compose\): .*?(\d+) requests, (\d+) failed", out)
    assert figures is not None, out
    assert int(figures.group(1)) > 0
    assert int(figures.group(2)) == 0


def test_down_volumes_leaves_nothing_behind(prod: ProdStack) -> None:
    """Last in this module: `compose.down --volumes` on the stack above."""
    before = project_resources(prod.project)
    assert before["containers"]
    assert before["volumes"]
    compose_stack.down(Runner(echo=True), project=prod.project, volumes=True, standins=True)
    assert project_resources(prod.project) == {"containers": [], "networks": [], "volumes": []}


def test_the_rollout_waits_for_nginx_as_its_config_says() -> None:
    conf = rollout.NGINX_CONF.read_text()
    valid = re.search(r"resolver 127\.0\.0\.11 valid=(\d+)s", conf)
    assert valid is not None
    assert rollout.proxy_resolve_interval() == float(valid.group(1))
