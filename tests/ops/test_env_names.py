"""ops names the service's settings through one rule, project.env, which is the service's own."""

from __future__ import annotations

from llm_optimizer_service.settings import env_var_names

from ops.core import project
from ops.deploy import local
from ops.deploy.environments import ENVIRONMENTS
from ops.k8s import helm


def test_env_follows_the_services_rule() -> None:
    assert project.env("log", "level") == "LLM_OPTIMIZER_LOG__LEVEL"
    assert project.env("server", "http_port") in env_var_names()


def test_every_setting_ops_hands_to_the_service_is_a_real_setting() -> None:
    real = env_var_names()
    named = {
        *helm.SETTING_VALUES,
        *(key for env in ENVIRONMENTS.values() for key in env.service_settings),
        *local.PORT_SETTINGS.values(),
    }
    assert named <= real, sorted(named - real)
