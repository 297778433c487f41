"""The images, built on the stand-in base and run for real (needs the Docker engine).

Sizes and timings are printed (run with ``-s`` to see them, or read the captured output).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker.errors
import httpx
import numpy as np
import pytest
import yaml
from docker.models.containers import Container
from invoke.config import Config
from invoke.context import Context

from ops.core import project
from ops.core.runner import Runner
from ops.docker import base_image, build_context, commands
from ops.docker import compose as compose_stack
from ops.docker import engine as docker_engine
from ops.docker import images as docker_images
from ops.docker import size as image_size
from ops.docker.build_context import IMAGES
from ops.docker.images import BuildResult
from ops.tasks import docker as docker_tasks
from tests._support import docker as containers
from tests._support import registry
from tests._support.api import create_workload, round_trips
from tests._support.docker import TEST_TAG

# The first test here may build the base image and the images from cold (minutes on 2 busy cores).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

MB = 1_000_000
SERVICE_BUDGET_MB = 100  # issue 18's target (88.9 MB measured)
CLI_BUDGET_MB = 15


def _size(result: BuildResult) -> commands.ImageSize:
    size = commands.image_size(result.refs[0], base_image.default_tag())
    print(f"\n{size.describe()}")
    return size


@pytest.fixture(scope="module")
def service_report(service_image: BuildResult) -> image_size.SizeReport:
    """What `invoke docker.size` measures in the service image (one probe run per module)."""
    return image_size.report(service_image.refs[0], base_image.default_tag())


def test_images_carry_version_and_git_revision_labels(
    service_image: BuildResult, cli_image: BuildResult
) -> None:
    for result in (service_image, cli_image):
        attrs = commands.image_attrs(result.refs[0])
        labels = attrs["Config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == project.version()
        sha = labels["org.opencontainers.image.revision"]
        assert sha == result.build_args["GIT_SHA"]
        assert re.fullmatch(r"[0-9a-f]{40}", sha), sha
        git = Runner(echo=False).run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], check=False)
        assert git is not None
        assert git.exited == 0, f"{sha} is no commit of this repository"
        assert labels["org.opencontainers.image.title"] == result.spec.name
        assert attrs["Config"]["User"] == f"{project.IMAGE_UID}:{project.IMAGE_UID}"


def test_service_image_adds_at_most_100_mb_above_the_base(service_image: BuildResult) -> None:
    size = _size(service_image)
    assert size.above_base <= SERVICE_BUDGET_MB * MB, size.describe()


def test_service_image_keeps_the_safe_cuts(service_report: image_size.SizeReport) -> None:
    """The cuts of the `deps` stage hold: no Python source next to the bytecode, one bytecode
    file per module, no test directories, stubs or C sources, and every extension module stripped
    (only the libraries auditwheel vendored in `*.libs/` keep their symbols)."""
    rep = service_report
    print(f"\n{rep.size.describe()}; site-packages {rep.site_total / MB:.1f} MB")
    for kind in ("source", "tests", "stubs"):
        offenders = [d.name for d in rep.distributions if d.kinds.get(kind)]
        assert rep.kind_total(kind) == 0, f"{kind} left in site-packages by {offenders}"
    assert rep.kind_total("bytecode") > 0
    unstripped = [path for path, _ in rep.strippable if ".libs/" not in path]
    assert not unstripped, f"shared objects with symbols or debug sections: {unstripped}"


def test_size_report_sums_to_the_site_packages_total_and_the_layers(
    service_report: image_size.SizeReport,
) -> None:
    rep = service_report
    assert sum(d.total for d in rep.distributions) == rep.site_total
    assert [d.total for d in rep.distributions] == sorted(
        (d.total for d in rep.distributions), reverse=True
    )
    by_name = {d.name: d for d in rep.distributions}
    # Each extension module counted with its distribution: grpcio's cygrpc (17 MB), numpy's
    # _multiarray_umath (built here without OpenBLAS: about 12 MB of shared objects in all).
    assert by_name["grpcio"].kinds.get("shared objects", 0) > 10 * MB
    assert 5 * MB < by_name["numpy"].kinds.get("shared objects", 0) < 20 * MB
    assert "psycopg-binary" not in by_name
    unrecorded = by_name.get("(not recorded)")  # our llm_optimizer_app.pth only
    assert unrecorded is None or unrecorded.total < 1000, unrecorded
    # Our layers add what the engine says the image adds above the base (within 1 MB: the
    # engine's sizes count tar headers and directories, the probe file contents only).
    assert abs(sum(layer.size for layer in rep.layers) - rep.size.above_base) < MB
    assert rep.site_total <= rep.size.above_base
    assert rep.paths["/usr/lib/postgresql"] > 0
    assert rep.paths["/opt/app"] > 0


def test_size_task_prints_layers_distributions_and_paths(
    service_image: BuildResult, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = Context(Config(overrides={"llm_optimizer": {"registry": "", "image_tag": TEST_TAG}}))
    docker_tasks.size(ctx, image="service", top=5)
    out = capsys.readouterr().out
    print(out)
    assert f"{service_image.refs[0]}:" in out
    assert "MB above the base" in out
    assert "COPY /opt/venv /opt/venv" in out
    assert "numpy" in out
    assert "more)" in out  # the distributions after the top 5 share a row
    assert "site-packages" in out
    assert "/usr/lib/postgresql" in out


@pytest.mark.xfail(
    strict=True,
    reason="after the safe cuts typer, rich and pyyaml still pull in pygments (4 MB of "
    "bytecode), pydantic-core (5 MB) and pydantic (2.3 MB): ~17 MB above the base; see "
    "docs/containers.md#image-size",
)
def test_cli_image_adds_at_most_15_mb_above_the_base(cli_image: BuildResult) -> None:
    size = _size(cli_image)
    assert size.above_base <= CLI_BUDGET_MB * MB, size.describe()


def test_runtime_stage_has_no_compilers_pip_or_build_headers(service_image: BuildResult) -> None:
    _code, output = containers.run_once(
        service_image.refs[0],
        [
            "for t in gcc cc c++ make ld pip pip3; do command -v $t; done; "
            "ls /usr/include/python3* 2>/dev/null; "
            "ls /opt/venv/lib/python3*/site-packages | grep -E '^(pip|setuptools)' || true"
        ],
        entrypoint=["sh", "-c"],
    )
    assert output.strip() == "", output


# Runs in the image: what numpy was built with, which psycopg implementation loads and its libpq,
# whether psycopg-binary is installed, and a draw from the engine's generator and its arithmetic.
_LIBRARIES_PROBE = """
import importlib.metadata as md, json, numpy, psycopg
config = numpy.show_config(mode="dicts")["Build Dependencies"]
try:
    md.distribution("psycopg-binary")
    binary = True
except md.PackageNotFoundError:
    binary = False
rng = numpy.random.default_rng(7)
print(json.dumps({
    "blas": config["blas"]["name"], "lapack": config["lapack"]["name"],
    "libs": [p.name for p in md.distribution("numpy").locate_file("").glob("numpy.libs/*")],
    "psycopg": psycopg.pq.__impl__, "libpq": psycopg.pq.version(), "binary": binary,
    "beta": float(rng.beta(2.0, 3.0)), "dot": float(numpy.dot([1.0, 2.0], [3.0, 4.0])),
}))
"""


def test_service_image_numpy_without_blas_and_psycopg_on_debians_libpq(
    service_image: BuildResult,
) -> None:
    """The image's two source builds (docs/containers.md#image-size): numpy without BLAS/LAPACK
    (no vendored OpenBLAS or libgfortran), with the same random draws and arithmetic as PyPI's
    numpy on the host; psycopg's C implementation on Debian's libpq5 (15, the runtime stage's),
    psycopg-binary not installed. The PostgreSQL path itself runs in the Compose tests
    (tests/infra/docker/test_compose_e2e.py)."""
    code, output = containers.run_once(
        service_image.refs[0],
        [_LIBRARIES_PROBE],
        entrypoint=["python3", "-c"],
        **commands.HARDENED,
    )
    assert code == 0, output
    found = json.loads(output.strip().splitlines()[-1])
    assert (found["blas"], found["lapack"], found["libs"]) == ("none", "none", []), found
    host = np.random.default_rng(7)
    assert found["beta"] == float(host.beta(2.0, 3.0)), found
    assert found["dot"] == 11.0, found
    assert (found["psycopg"], found["binary"]) == ("c", False), found
    assert 150000 <= found["libpq"] < 160000, found


def _postgres_major(image: str) -> str:
    """``postgres:15.10-bookworm`` → ``15``."""
    return image.rpartition(":")[2].split(".")[0]


def test_service_image_has_the_postgresql_client_of_the_deployed_server(
    service_image: BuildResult,
) -> None:
    """`backup create|restore` on PostgreSQL runs pg_dump, pg_restore and psql inside the image
    (compose and kubernetes targets); pg_dump refuses a server newer than itself, so their major
    version must be the one of the PostgreSQL that compose and the chart deploy."""
    code, output = containers.run_once(
        service_image.refs[0],
        [
            "from llm_optimizer_service.backup.database import pg_tool; import subprocess; "
            "[print(subprocess.run([pg_tool(t), '--version'], check=True, capture_output=True,"
            " text=True).stdout.strip()) for t in ('pg_dump', 'pg_restore', 'psql')]"
        ],
        entrypoint=["python3", "-c"],
        **commands.HARDENED,
    )
    assert code == 0, output
    versions = re.findall(r"^(pg_dump|pg_restore|psql) \(PostgreSQL\) (\d+)\.", output, re.M)
    assert [tool for tool, _major in versions] == ["pg_dump", "pg_restore", "psql"], output
    client_majors = {major for _tool, major in versions}
    compose = yaml.safe_load((compose_stack.BASE_FILE).read_text())
    values = yaml.safe_load((project.CHART_DIR / "values.yaml").read_text())
    servers = {
        "compose.yml": _postgres_major(compose["services"]["postgres"]["image"]),
        "chart values": _postgres_major(f"x:{values['postgresql']['image']['tag']}"),
    }
    assert client_majors == set(servers.values()), (client_majors, servers)


@pytest.fixture
def hardened_service(service_image: BuildResult) -> Iterator[Container]:
    container = containers.run_detached(
        service_image.refs[0],
        name=f"llmo-hardened-{uuid.uuid4().hex[:8]}",
        ports={f"{project.HTTP_PORT}/tcp": ("127.0.0.1", None)},
        **commands.HARDENED,
    )
    try:
        yield container
    finally:
        commands.remove(container)


def test_service_runs_hardened_becomes_healthy_and_serves_a_round_trip(
    hardened_service: Container,
) -> None:
    seconds = containers.wait_healthy(hardened_service, timeout=120)
    print(
        f"\nhealthy after {seconds:.1f} s (read-only, tmpfs /tmp, cap-drop ALL, no-new-privileges)"
    )
    base = f"http://127.0.0.1:{containers.published_port(hardened_service, project.HTTP_PORT)}"
    with httpx.Client(base_url=base, timeout=10) as http:
        create_workload(http, "container-test")
        (decision,) = round_trips(http, "container-test", 1)
        assert decision["arm"] in ("a", "b")
        version = http.get("/version").json()
        assert version["version"] == project.version()

    status = hardened_service.exec_run(["cat", "/proc/1/status"]).output.decode()
    fields = dict(re.findall(r"^(\w+):\s+(\S+)", status, re.MULTILINE))
    assert fields["Name"] == "tini"
    for capability_set in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[capability_set], 16) == 0, f"{capability_set}={fields[capability_set]}"
    assert fields["NoNewPrivs"] == "1"
    uid_line = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
    assert uid_line is not None
    assert set(uid_line.group(1).split()) == {str(project.IMAGE_UID)}

    # docker stop sends SIGTERM to tini, which forwards it; serve drains and exits 0.
    started = time.monotonic()
    hardened_service.stop(timeout=10)
    stopped_in = time.monotonic() - started
    code = hardened_service.wait(timeout=5)["StatusCode"]
    print(f"docker stop: exit {code} after {stopped_in:.1f} s")
    assert stopped_in < 10, "stopped by SIGKILL at the timeout, not by SIGTERM"
    assert code in (0, 143), hardened_service.logs(tail=30).decode()


def test_healthcheck_follows_the_configured_port(service_image: BuildResult) -> None:
    """The HEALTHCHECK is `health --live`, which reads the service's settings: with the HTTP
    port moved (LLM_OPTIMIZER_SERVER__HTTP_PORT) the container still becomes healthy, and the
    check's own log shows it asked that port."""
    moved = 18181
    container = containers.run_detached(
        service_image.refs[0],
        name=f"llmo-port-{uuid.uuid4().hex[:8]}",
        environment={"LLM_OPTIMIZER_SERVER__HTTP_PORT": str(moved)},
        **commands.HARDENED,
    )
    try:
        containers.wait_healthy(container, timeout=120)
        container.reload()
        log = container.attrs["State"]["Health"]["Log"]
        assert log[-1]["ExitCode"] == 0, log
        assert f":{moved}/health/live answered 200" in log[-1]["Output"], log
    finally:
        commands.remove(container)


def test_no_host_only_ca_certificate_in_the_image(service_image: BuildResult) -> None:
    """The build never sees the host's proxy CA: no certificate the host trusts beyond Debian's
    own bundle is found in any PEM/CRT file of the image."""
    host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if not host_bundle.is_file():
        pytest.skip("no host CA bundle to compare with")
    pem = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
    code, image_pems = containers.run_once(
        service_image.refs[0],
        ["find / -xdev -type f \\( -name '*.pem' -o -name '*.crt' \\) -exec cat {} +"],
        entrypoint=["sh", "-c"],
        user="0:0",  # read every file, including root-only ones
    )
    assert code == 0, image_pems[-2000:]
    image_certs = {"".join(c.split()) for c in pem.findall(image_pems)}
    _code, debian = containers.run_once(
        base_image.default_tag(), ["cat", "/etc/ssl/certs/ca-certificates.crt"]
    )
    debian_certs = {"".join(c.split()) for c in pem.findall(debian)}
    host_only = {"".join(c.split()) for c in pem.findall(host_bundle.read_text())} - debian_certs
    print(f"\nhost-only CA certificates checked: {len(host_only)}")
    assert not host_only & image_certs


def test_code_only_change_rebuilds_without_reinstalling_dependencies(
    service_image: BuildResult, tmp_path: Path
) -> None:
    """Touch one source file (in a copy of the package), rebuild: the dependency layer is reused."""
    spec = IMAGES["service"]
    source = tmp_path / spec.source_dir.name
    shutil.copytree(
        spec.source_dir, source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "dist")
    )
    touched = source / "src" / "llm_optimizer_service" / "__init__.py"
    touched.write_text(touched.read_text() + f"\n# cache-reuse probe {uuid.uuid4()}\n")
    ref = f"{spec.name}:pytest-touched"
    try:
        rebuilt = docker_images.build(
            Runner(echo=False), spec, tags=[ref], source_dir=source, quiet=True
        )
        print(
            f"\nfirst service build this session: {service_image.seconds:.1f} s; "
            f"rebuild after a code-only change: {rebuilt.seconds:.1f} s"
        )
        install_step = re.search(r"^#(\d+) \[venv \d+/\d+\] RUN .*pip install", rebuilt.log, re.M)
        assert install_step is not None, rebuilt.log[-3000:]
        assert re.search(rf"^#{install_step.group(1)} CACHED$", rebuilt.log, re.M), (
            "the dependency install step ran again:\n" + rebuilt.log[-3000:]
        )
        before, after = containers.layers(service_image.refs[0]), containers.layers(ref)
        assert len(before) == len(after)
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert len(changed) == 1, f"only the app layer changes; changed: {changed}"
        deps_layer = 2  # base, user, dependencies (venv), app, workdir
        assert changed[0] > deps_layer, f"layer {changed[0]} changed; the dependencies are 2"
        assert rebuilt.seconds < 60
    finally:
        api = docker_engine.client()
        api.images.remove(ref, force=True)
        # Leave the staged app wheel as the real tree builds it, for later builds.
        build_context.build_app_wheel(Runner(echo=False), spec)


def test_cli_image_has_the_client_package_and_not_the_server(cli_image: BuildResult) -> None:
    code, output = containers.run_once(
        cli_image.refs[0],
        [
            "import importlib.metadata as m, importlib.util as u; "
            f"print(m.version('{project.CLI_DIST}'), u.find_spec('llm_optimizer_service'))"
        ],
        entrypoint=["python3", "-c"],
        **commands.HARDENED,
    )
    assert code == 0, output
    assert output.split() == [project.version(), "None"], "no server package in the client image"


def test_cli_image_runs_the_client_hardened(cli_image: BuildResult) -> None:
    code, output = containers.run_once(cli_image.refs[0], ["version"], **commands.HARDENED)
    assert code == 0, output
    assert project.version() in output
    code, output = containers.run_once(
        cli_image.refs[0],
        ["--api-url", "http://127.0.0.1:9", "health"],
        **commands.HARDENED,
    )
    assert code != 0, "nothing listens there"
    assert "Traceback" not in output, output


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on a free 127.0.0.1 port (tests/_support/registry.py)."""
    with registry.local_registry(tmp_path) as address:
        yield address


def test_push_task_pushes_to_the_configured_registry(
    cli_image: BuildResult, local_registry: str
) -> None:
    ctx = Context(
        Config(overrides={"llm_optimizer": {"registry": local_registry, "image_tag": TEST_TAG}})
    )
    pushed = f"{local_registry}/{project.CLI_IMAGE}:{TEST_TAG}"
    try:
        docker_tasks.push(ctx, image="cli")  # tags llm-optimizer-cli:pytest for the registry first
        tags = httpx.get(f"http://{local_registry}/v2/{project.CLI_IMAGE}/tags/list").json()
        assert tags["tags"] == [TEST_TAG]
        api = docker_engine.client()
        api.images.remove(pushed)
        api.images.pull(pushed)  # back from the registry
        assert commands.image_attrs(pushed)["Id"] == commands.image_attrs(cli_image.refs[0])["Id"]
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_engine.client().images.remove(pushed)
