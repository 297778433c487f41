"""Chart test fixtures: the real helm in an isolated home, each scenario rendered once."""

from __future__ import annotations

import pytest

from tests._support.helm import SCENARIOS, Helm, Objects, scenario_values
from tests._support.tools import require_tool


@pytest.fixture(scope="session")
def helm_cli(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(require_tool("helm"), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def rendered(helm_cli: Helm) -> dict[str, Objects]:
    """Every scenario (default + ci/*-values.yaml), rendered once per session."""
    return {name: helm_cli.render(scenario_values(name)) for name in SCENARIOS}
