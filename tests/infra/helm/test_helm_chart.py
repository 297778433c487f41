"""The chart, rendered by the real helm for every scenario, asserted on as parsed objects."""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from ops.core import project
from ops.k8s import helm
from tests._support.helm import SCENARIOS, Helm, Objects, of_kind, one, pod_specs, scenario_values

MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict(helm_cli: Helm, scenario: str) -> None:
    result = helm_cli.run(helm.lint(scenario_values(scenario)))
    assert "0 chart(s) failed" in result.stdout
    # helm 4's lint reports a template `fail` only as an INFO log line
    assert "fail" not in result.stderr, result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


def test_scenarios_cover_the_issue() -> None:
    assert set(SCENARIOS) == {
        "default",
        "minimal",
        "production",
        "in-chart-databases",
        "monitoring",
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kubernetes_validate_strict(
    rendered: dict[str, Objects], scenario: str, version: str
) -> None:
    """Every object validates strictly; an unknown kind/version is a failure (no WARN)."""
    problems = []
    for obj in rendered[scenario]:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in MONITORING_KINDS:
            continue  # CRDs: checked field by field below
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except SchemaNotFoundError as error:
            problems.append(f"{name}: {error.message}")
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{name}: {error.message} at {list(error.path)}")
    assert not problems, "\n".join(problems)


def _deployment(objects: Objects) -> dict[str, Any]:
    return one(objects, "Deployment")


def _server(objects: Objects) -> dict[str, Any]:
    containers = _deployment(objects)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == project.CHART_NAME)


def test_ports_and_probes_match_the_contract(rendered: dict[str, Objects]) -> None:
    server = _server(rendered["default"])
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {
        "http": project.HTTP_PORT,
        "grpc": project.GRPC_PORT,
        "metrics": project.METRICS_PORT,
    }
    probes = {
        kind: server[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")
    }
    assert probes["startup"]["path"] == "/health/live"
    assert probes["liveness"]["path"] == "/health/live"
    assert probes["readiness"]["path"] == "/health/ready"
    assert {ports[p["port"]] for p in probes.values()} == {project.HTTP_PORT}
    config = one(rendered["default"], "ConfigMap")["data"]
    assert config["LLM_OPTIMIZER_SERVER__HTTP_PORT"] == str(project.HTTP_PORT)
    assert config["LLM_OPTIMIZER_SERVER__GRPC_PORT"] == str(project.GRPC_PORT)
    assert config["LLM_OPTIMIZER_SERVER__METRICS_PORT"] == str(project.METRICS_PORT)
    services = {s["metadata"]["name"]: s for s in of_kind(rendered["default"], "Service")}
    assert {p["targetPort"] for s in services.values() for p in s["spec"]["ports"]} == {
        "http",
        "grpc",
        "metrics",
    }
    assert any(s["spec"].get("clusterIP") == "None" for s in services.values())


def _env_names(objects: Objects) -> dict[str, set[str]]:
    """Env var names each service-image container gets (env + envFrom ConfigMaps)."""
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(objects, "ConfigMap")}
    found: dict[str, set[str]] = {}
    for name, spec in pod_specs(objects):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if "llm-optimizer-service" not in container["image"]:
                continue
            names = {e["name"] for e in container.get("env", [])}
            for source in container.get("envFrom", []):
                names |= set(config_maps[source["configMapRef"]["name"]])
            found[f"{name}:{container['name']}"] = names
    return found


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_env_var_is_a_real_setting(rendered: dict[str, Objects], scenario: str) -> None:
    from llm_optimizer_service.settings import env_var_names

    valid = env_var_names()
    used = _env_names(rendered[scenario])
    assert any(names for name, names in used.items() if name.startswith("Deployment/"))
    for container, names in used.items():
        assert names <= valid, f"{container}: not settings: {sorted(names - valid)}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secrets_are_files_never_env(rendered: dict[str, Objects], scenario: str) -> None:
    """*_FILE settings point into the mounted secrets volume; no secretKeyRef env anywhere."""
    objects = rendered[scenario]
    deployment = _deployment(objects)
    spec = deployment["spec"]["template"]["spec"]
    for _, pod in pod_specs(objects):
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for env in container.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), (container["name"], env)
    config = next(
        c["data"] for c in of_kind(objects, "ConfigMap") if "LLM_OPTIMIZER_ENVIRONMENT" in c["data"]
    )
    files = {k: v for k, v in config.items() if k.endswith("_FILE")}
    volumes = {v["name"]: v for v in spec["volumes"]}
    if not files:
        assert "secrets" not in volumes
        return
    projected = {
        item["path"]
        for source in volumes["secrets"]["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    mount = next(m for m in _server(objects)["volumeMounts"] if m["name"] == "secrets")
    for path in files.values():
        assert Path(path).parent == Path(mount["mountPath"])
        assert Path(path).name in projected


def _selectors(objects: Objects) -> dict[str, dict[str, str]]:
    found = {}
    for obj in objects:
        key = f"{obj['kind']}/{obj['metadata']['name']}"
        spec = obj.get("spec", {})
        if obj["kind"] in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
            found[key] = spec["selector"]["matchLabels"]
        elif obj["kind"] == "Service":
            found[key] = spec["selector"]
        elif obj["kind"] in ("NetworkPolicy",):
            found[key] = spec["podSelector"]["matchLabels"]
        elif obj["kind"] == "ServiceMonitor":
            found[key] = spec["selector"]["matchLabels"]
    return found


def test_selector_labels_are_stable_across_versions(
    helm_cli: Helm, rendered: dict[str, Objects], tmp_path: Path
) -> None:
    chart = tmp_path / project.CHART_NAME
    shutil.copytree(helm.CHART_DIR, chart)
    text = (chart / "Chart.yaml").read_text()
    text = re.sub(r"(?m)^version: .*$", "version: 99.1.2", text)
    text = re.sub(r"(?m)^appVersion: .*$", 'appVersion: "99.1.2"', text)
    (chart / "Chart.yaml").write_text(text)
    for scenario in ("production", "in-chart-databases", "monitoring"):
        before = _selectors(rendered[scenario])
        after = _selectors(helm_cli.render(scenario_values(scenario), chart))
        assert before, scenario
        assert before == after, scenario
        for selector in before.values():
            assert "helm.sh/chart" not in selector
            assert "app.kubernetes.io/version" not in selector
    # pods carry the version label, selectors never do
    pod_labels = _deployment(rendered["default"])["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/version"] == project.version()


def _hook(obj: dict[str, Any]) -> dict[str, str]:
    return {
        k.removeprefix("helm.sh/"): v
        for k, v in obj["metadata"].get("annotations", {}).items()
        if k.startswith("helm.sh/hook")
    }


@pytest.mark.parametrize("scenario", ["minimal", "production", "monitoring"])
def test_migrations_hook_runs_first_in_order(rendered: dict[str, Objects], scenario: str) -> None:
    """External database: a pre-install/pre-upgrade Job after its own config copies."""
    objects = rendered[scenario]
    job = one(objects, "Job", "-migrations")
    hook = _hook(job)
    assert hook["hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in hook["hook-delete-policy"]
    assert "hook-failed" not in hook["hook-delete-policy"], "keep a failed Job for its logs"
    copies = [o for o in objects if _hook(o) and o["kind"] in ("ConfigMap", "Secret")]
    assert copies
    for copy in copies:
        assert _hook(copy)["hook"] == hook["hook"]
        assert int(_hook(copy)["hook-weight"]) < int(hook["hook-weight"])
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "llm-optimizer-service db upgrade" in container["command"][-1]
    assert "exit 1" in container["command"][-1], "must fail loudly after waiting"
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 0
    hook_names = {c["metadata"]["name"] for c in copies}
    used = {s["configMapRef"]["name"] for s in container["envFrom"]}
    for volume in pod["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            used.add(source["secret"]["name"])
    existing = {"llm-optimizer-secrets"}
    assert used <= hook_names | existing, "a pre-install hook can only use objects that exist"
    assert "initContainers" not in _deployment(objects)["spec"]["template"]["spec"]


def test_in_chart_database_is_migrated_by_init_container(rendered: dict[str, Objects]) -> None:
    """A database the release creates cannot be migrated by a pre-install hook."""
    objects = rendered["in-chart-databases"]
    assert not of_kind(objects, "Job")
    (init,) = _deployment(objects)["spec"]["template"]["spec"]["initContainers"]
    assert "llm-optimizer-service db upgrade" in init["command"][-1]
    statefulsets = {s["metadata"]["name"] for s in of_kind(objects, "StatefulSet")}
    assert statefulsets == {"llm-optimizer-postgresql", "llm-optimizer-redis"}
    for sts in of_kind(objects, "StatefulSet"):
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        tag = container["image"].rsplit(":", 1)[1]
        assert re.match(r"^\d+\.\d+", tag), container["image"]


def test_plain_manifests_migrations_job_has_no_hook() -> None:
    from ops.k8s import kube

    jobs = [o for o in kube.objects() if o["kind"] == "Job"]
    assert jobs
    assert not any(_hook(j) for j in jobs)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secure_defaults(rendered: dict[str, Objects], scenario: str) -> None:
    for name, spec in pod_specs(rendered[scenario]):
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            context = container["securityContext"]
            where = f"{name}:{container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"], where
            assert not container["image"].endswith(":latest")
            assert ":" in container["image"]
    for account in of_kind(rendered[scenario], "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_optional_features_are_off_by_default(rendered: dict[str, Objects]) -> None:
    kinds = {o["kind"] for o in rendered["default"]}
    for kind in (
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
        "ServiceMonitor",
        "PrometheusRule",
        "StatefulSet",
        "PersistentVolumeClaim",
    ):
        assert kind not in kinds
    config = one(rendered["default"], "ConfigMap")
    assert config["data"]["LLM_OPTIMIZER_ENVIRONMENT"] == "production"


def test_image_tag_defaults_to_the_repository_version(rendered: dict[str, Objects]) -> None:
    image = _server(rendered["default"])["image"]
    assert image == f"{project.SERVICE_IMAGE}:{project.version()}"
    production = _server(rendered["production"])["image"]
    assert production == f"registry.example.com/llm/{project.SERVICE_IMAGE}:{project.version()}"


def test_production_scenario(rendered: dict[str, Objects]) -> None:
    objects = rendered["production"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"} == {
        "cpu",
        "memory",
    }
    assert "Pods" in metrics
    assert hpa["spec"]["scaleTargetRef"]["name"] == _deployment(objects)["metadata"]["name"]
    assert "replicas" not in _deployment(objects)["spec"]
    assert one(objects, "PodDisruptionBudget")["apiVersion"] == "policy/v1"
    ingresses = {i["metadata"]["name"]: i for i in of_kind(objects, "Ingress")}
    assert set(ingresses) == {"llm-optimizer-http", "llm-optimizer-grpc"}
    grpc = ingresses["llm-optimizer-grpc"]
    assert grpc["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    backend = grpc["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["port"]["name"] == "grpc"
    assert not of_kind(objects, "Secret"), "existingSecret: the chart creates no Secret"


def test_network_policies_select_every_pod(rendered: dict[str, Objects]) -> None:
    """With networkPolicy.enabled every pod but the one-shot helm test pods is selected
    (the reason for skipping CKV2_K8S_6 in .checkov.yaml)."""
    for scenario in ("production", "in-chart-databases"):
        objects = rendered[scenario]
        selectors = [
            p["spec"]["podSelector"]["matchLabels"] for p in of_kind(objects, "NetworkPolicy")
        ]
        for obj in objects:
            if obj["kind"] not in ("Deployment", "Job", "StatefulSet"):
                continue
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert any(s.items() <= labels.items() for s in selectors), obj["metadata"]["name"]
        server = next(
            p for p in of_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "llm-optimizer"
        )
        egress_ports = {port["port"] for rule in server["spec"]["egress"] for port in rule["ports"]}
        assert 53 in egress_ports
        assert 5432 in egress_ports
        assert 6379 in egress_ports
    for database in ("postgresql", "redis"):
        policy = one(rendered["in-chart-databases"], "NetworkPolicy", f"-{database}")
        assert "egress" not in policy["spec"], "the development databases reach nothing"
        (rule,) = policy["spec"]["ingress"]
        (peer,) = rule["from"]
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"


def test_monitoring_crds_field_by_field(rendered: dict[str, Objects]) -> None:
    objects = rendered["monitoring"]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
    metrics = one(objects, "Service", "-metrics")
    assert spec["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    assert metrics["metadata"]["labels"][spec["jobLabel"]] == "llm-optimizer"  # job= in the rules
    assert spec["namespaceSelector"]["matchNames"] == [metrics["metadata"]["namespace"]]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in metrics["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert {p["port"] for p in metrics["spec"]["ports"]} == {project.METRICS_PORT}
    for key in ("interval", "scrapeTimeout"):
        assert re.match(r"^\d+(ms|s|m|h)$", endpoint[key])

    rule = one(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    expected = []
    for path in sorted(helm.RULES_SOURCE.glob("*.yml")):
        expected += yaml.safe_load(path.read_text())["groups"]
    assert rule["spec"]["groups"] == expected
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"]
        for item in group["rules"]:
            assert item["expr"], item
            assert ("alert" in item) != ("record" in item), item
            if "alert" in item:
                assert item["labels"]["severity"] in {"critical", "warning", "info"}
                assert item["annotations"]["summary"]
                assert item["annotations"]["runbook_url"]


def test_rule_copy_has_not_drifted() -> None:
    assert helm.rules_drift() == [], "run: uv run invoke helm.sync-rules"


def test_tests_hooks_call_http_and_grpc_health(rendered: dict[str, Objects]) -> None:
    pods = [p for p in of_kind(rendered["default"], "Pod") if _hook(p).get("hook") == "test"]
    scripts = {p["metadata"]["name"]: p["spec"]["containers"][0]["command"][-1] for p in pods}
    assert set(scripts) == {"llm-optimizer-test-http", "llm-optimizer-test-grpc"}
    http = scripts["llm-optimizer-test-http"]
    assert "/health/live" in http
    assert "/health/ready" in http
    assert f"http://llm-optimizer:{project.HTTP_PORT}" in http
    grpc = scripts["llm-optimizer-test-grpc"]
    assert f"'llm-optimizer:{project.GRPC_PORT}'" in grpc
    assert "HealthStub" in grpc
    for script in scripts.values():
        compile(script, "helm-test", "exec")  # the scripts are valid Python


BAD_VALUES = [
    (["--set", "replicaCount=two"], "/replicaCount': got string, want integer"),
    (["--set", "colour=blue"], "additional properties 'colour' not allowed"),
    (["--set", "config.environment=staging"], "/config/environment"),
    (["--set", "config.logLevel=LOUD"], "/config/logLevel"),
    (["--set", "containerPorts.http=70000"], "/containerPorts/http"),
    (["--set-string", "image.tag=latest"], "image.tag must not be 'latest'"),
    (["--set", "autoscaling.enabled=true"], "several replicas need a shared database"),
    (["--set", "postgresql.enabled=true"], "postgresql.enabled needs postgresql.auth.password"),
    # the seed's install line (Bitnami subchart keys): refused, naming what to set instead
    (
        ["--set", "postgresql.auth.password=p", "--set", "redis.auth.password=r"],
        "--set database.existingSecret=NAME; development only: add --set postgresql.enabled=true",
    ),
    (["--set", "redis.auth.password=r"], "--set redis.existingSecret=NAME"),
    (
        ["--set", "ingress.http.enabled=true", "--set", "database.url=postgresql://x"],
        "ingress.http.enabled needs ingress.http.hosts",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_bad_values_are_rejected_with_a_readable_message(
    helm_cli: Helm, args: list[str], message: str
) -> None:
    argv = [*helm.template(helm.Values()), *args]
    result = helm_cli.run(argv, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_chart_version_is_the_repository_version(helm_cli: Helm, tmp_path: Path) -> None:
    chart = yaml.safe_load((helm.CHART_DIR / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == project.version()
    helm_cli.run(helm.package(tmp_path))
    (archive,) = tmp_path.glob("*.tgz")
    assert archive.name == f"{project.CHART_NAME}-{project.version()}.tgz"
    with tarfile.open(archive) as tar:
        packaged = yaml.safe_load(tar.extractfile(f"{project.CHART_NAME}/Chart.yaml").read())  # type: ignore[union-attr]
        names = tar.getnames()
    assert packaged["version"] == packaged["appVersion"] == project.version()
    assert not any("/ci/" in n for n in names), "scenario values are not packaged"
    assert f"{project.CHART_NAME}/values.schema.json" in names


def test_every_value_is_documented() -> None:
    """Each leaf of values.yaml has a `## @param` line, and each @param names a real value."""
    values = yaml.safe_load((helm.CHART_DIR / "values.yaml").read_text())
    documented = set(
        re.findall(r"(?m)^\s*## @param (\S+) ", (helm.CHART_DIR / "values.yaml").read_text())
    )

    def leaves(node: Any, prefix: str = "") -> set[str]:
        if isinstance(node, dict) and node and prefix.count(".") < 4:
            found: set[str] = set()
            for key, value in node.items():
                path = f"{prefix}{key}"
                found |= {path} if path in documented else leaves(value, f"{path}.")
            return found
        return {prefix.rstrip(".")}

    assert leaves(values) <= documented
    for name in documented:
        node: Any = values
        for part in name.split("."):
            assert isinstance(node, dict), f"@param {name} is not a value"
            assert part in node, f"@param {name} is not a value"
            node = node[part]


def test_kube_version_floor(helm_cli: Helm) -> None:
    """The chart supports Kubernetes 1.29 and newer (Chart.yaml kubeVersion)."""
    helm_cli.run(helm.template(helm.Values(), kube_version="1.29.0"))
    result = helm_cli.run(helm.template(helm.Values(), kube_version="1.28.9"), check=False)
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr


def _notes(helm_cli: Helm, scenario: str) -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it (no cluster is contacted)."""
    argv = [
        "helm",
        "install",
        helm.RELEASE,
        str(helm.CHART_DIR),
        "--namespace",
        helm.DEFAULT_NAMESPACE,
        "--dry-run=client",
        *scenario_values(scenario).args(),
    ]
    out = helm_cli.run(argv).stdout
    assert "NOTES:" in out
    return out.split("NOTES:", 1)[1]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_give_real_next_steps(helm_cli: Helm, scenario: str) -> None:
    notes = _notes(helm_cli, scenario)
    assert f"rollout status deployment/{project.CHART_NAME}" in notes
    assert f"helm test {helm.RELEASE} --namespace {helm.DEFAULT_NAMESPACE}" in notes
    assert f"{project.SERVICE_IMAGE}:{project.version()}" in notes
    if scenario == "default":
        assert "WARNING: no API keys" in notes
        assert "WARNING: no database is configured" in notes
    else:
        assert "WARNING" not in notes
    if scenario == "production":
        assert "https://optimizer.example.com" in notes
        assert "logs job/llm-optimizer-migrations" in notes
    if scenario == "monitoring":
        assert 'job="llm-optimizer"' in notes


def test_deploy_environments_map_onto_chart_values(helm_cli: Helm) -> None:
    """Each environment's service settings (ops.deploy.targets) reach the ConfigMap unchanged."""
    from llm_optimizer_service.settings import env_var_names

    from ops.deploy.targets import ENVIRONMENTS

    assert set(helm.SETTING_VALUES) <= env_var_names()
    for environment in ENVIRONMENTS.values():
        values = helm.settings_values(environment.service_settings)
        config = one(helm_cli.render(values), "ConfigMap")["data"]
        for name, value in environment.service_settings.items():
            assert config[name] == value, (environment.name, name)
