"""The helm and k8s tasks: pre-flight with the real kubectl; dry runs print full commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from ops.core import project
from ops.core.runner import Runner
from ops.deploy import helm as helm_target
from ops.deploy import kubernetes
from ops.k8s import helm, kube
from ops.tasks import helm as helm_tasks
from ops.tasks import k8s as k8s_tasks
from tests._support.tools import free_port, require_tool

NO_CLUSTER = "no Kubernetes cluster is configured"


@pytest.fixture
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    require_tool("kubectl")
    require_tool("helm")
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    return config


@pytest.fixture
def dead_cluster(no_kubeconfig: Path) -> str:
    """A kubeconfig whose only context points at a port where nothing listens."""
    no_kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
  - name: dead
    cluster: {{server: "https://127.0.0.1:{free_port()}"}}
contexts:
  - name: dead
    context: {{cluster: dead, user: nobody}}
current-context: dead
users:
  - name: nobody
    user: {{token: not-a-secret}}
"""
    )
    return "dead"


def test_preflight_says_when_no_cluster_is_configured(no_kubeconfig: Path) -> None:
    pre = kube.preflight(Runner(ctx=Context(), echo=False), "", "llm-optimizer")
    assert pre.problem
    assert NO_CLUSTER in pre.problem
    assert "use-context" in pre.problem


def test_preflight_names_an_unknown_context(no_kubeconfig: Path) -> None:
    pre = kube.preflight(Runner(ctx=Context(), echo=False), "prod-eu", "llm-optimizer")
    assert pre.problem
    assert "kube context 'prod-eu' is not in your kubeconfig" in pre.problem


def test_preflight_says_when_the_cluster_does_not_answer(dead_cluster: str) -> None:
    pre = kube.preflight(Runner(ctx=Context(), echo=False), "", "llm-optimizer")
    assert pre.context == dead_cluster
    assert pre.problem
    assert "did not answer" in pre.problem


def test_bad_namespace_is_rejected() -> None:
    with pytest.raises(Exit, match="not a valid namespace name"):
        kube.check_namespace_name("LLM_Optimizer")


def test_install_without_a_cluster_fails_clearly(no_kubeconfig: Path) -> None:
    with pytest.raises(Exit, match=NO_CLUSTER):
        helm_tasks.install(Context())


def test_upgrade_dry_run_prints_the_full_command(
    no_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(Exit, match=f"dry run shown above.*{NO_CLUSTER}"):
        helm_tasks.upgrade(Context(), set_=["replicaCount=2"], dry_run=True)
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("[dry-run] helm upgrade"))
    for part in (
        f"helm upgrade llm-optimizer {helm.CHART_DIR}",
        "--namespace llm-optimizer",
        "--install",
        "--rollback-on-failure",  # helm 4's --atomic
        "--wait=watcher",
        "--set replicaCount=2",
    ):
        assert part in line, part


def test_rollback_dry_run_prints_the_full_command(
    no_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(Exit, match=f"dry run shown above.*{NO_CLUSTER}"):
        helm_tasks.rollback(Context(), revision=2, timeout="3m", dry_run=True)
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("[dry-run] helm rollback"))
    assert line.endswith(
        "helm rollback llm-optimizer 2 --namespace llm-optimizer --wait=watcher --wait-for-jobs "
        "--timeout 3m"
    )
    previous = helm.rollback(context="c", namespace="n", wait=False)
    assert previous == [
        "helm",
        "rollback",
        "llm-optimizer",
        "--namespace",
        "n",
        "--kube-context",
        "c",
        "--timeout",
        helm.DEFAULT_TIMEOUT,
    ]


def test_no_atomic_and_no_wait_are_honoured() -> None:
    argv = helm.upgrade_install(helm.Values(), context="c", namespace="n", atomic=False, wait=False)
    assert "--rollback-on-failure" not in argv
    assert not any(a.startswith("--wait") for a in argv)
    assert argv[argv.index("--kube-context") + 1] == "c"


def test_deploy_target_helm_dev_dry_run(
    no_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    helm_target.TARGET.plan(Context(), env="dev")
    err = capsys.readouterr().err
    assert f"[dry-run] helm lint --strict {helm.CHART_DIR}" in err
    assert "--set config.environment=development" in err
    assert "[dry-run] helm upgrade llm-optimizer" in err


def test_deploy_target_helm_prod_uses_the_production_values(
    no_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    helm_target.TARGET.plan(Context(), env="prod")
    assert f"--values {kube.VALUES_FILE}" in capsys.readouterr().err


def test_k8s_apply_dry_run_orders_migrations_before_the_workload(
    no_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(Exit, match=NO_CLUSTER):
        k8s_tasks.apply(Context(), dry_run=True)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("[dry-run] kubectl")]
    joined = "\n".join(lines)
    assert "00-namespace.yaml" in lines[0]
    order = [
        "10-config.yaml",
        "delete job llm-optimizer-migrations --ignore-not-found",
        "20-migrations.yaml",
        "wait --for=condition=complete job/llm-optimizer-migrations",
        "30-workload.yaml",
        "rollout status deployment/llm-optimizer",
    ]
    positions = [joined.index(step) for step in order]
    assert positions == sorted(positions)


def test_k8s_deploy_target_refuses_dev() -> None:
    with pytest.raises(Exit, match="production rendering") as raised:
        kubernetes.TARGET.plan(Context(), env="dev")
    assert raised.value.code == 2


def test_status_and_logs_commands() -> None:
    assert kube.status("c", "n")[:5] == ["kubectl", "--context", "c", "--namespace", "n"]
    logs = kube.logs("", "n", follow=True)
    assert "--all-containers" in logs
    assert logs[-1] == "--follow"
    assert "app.kubernetes.io/component=server" in " ".join(logs)


def test_set_values_escape_commas_and_keep_image_tags_strings() -> None:
    args = helm.Values(sets={"auth.apiKeys[0]": "key read,write", "image.tag": "1.10"}).args()
    assert args == ["--set", "auth.apiKeys[0]=key read\\,write", "--set-string", "image.tag=1.10"]


@pytest.mark.parametrize(
    ("target", "env", "expected"),
    [
        ("helm", "dev", "helm upgrade llm-optimizer"),
        ("helm", "prod", f"--values {kube.VALUES_FILE}"),
        ("kubernetes", "prod", "rollout status deployment/llm-optimizer"),
    ],
)
def test_invoke_deploy_dispatches_here(
    no_kubeconfig: Path, target: str, env: str, expected: str
) -> None:
    """`invoke deploy --target helm|kubernetes --dry-run`: full plan, then 'no cluster', exit 1."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "deploy", "--target", target, "--env", env, "--dry-run"],
        cwd=project.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert expected in output
    assert "could not run here" in output
    assert "no Kubernetes context is set" in output


def test_rollback_refuses_a_negative_revision() -> None:
    with pytest.raises(Exit, match="is not a revision") as raised:
        helm_target.rollback(Context(), revision=-1, dry_run=True)
    assert raised.value.code == 2
