"""The OpenAPI document's links (api/openapi_links.py): every link names a real operation and
status, and the workflow a client follows is in the document (create → decide → feedback)."""

from __future__ import annotations

from typing import Any

import pytest
from llm_optimizer_service.api import create_app
from llm_optimizer_service.api.openapi_links import LINKS, add_links
from llm_optimizer_service.settings import load_settings


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(load_settings(data_dir=tmp_path_factory.mktemp("openapi-links")))
    return app.openapi()


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for item in document["paths"].values() for op in item.values()}


def test_a_created_workload_links_to_every_operation_on_it(document: dict[str, Any]) -> None:
    created = operations(document)["create_workload"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in created.values()} == {
        "get_workload",
        "patch_workload",
        "delete_workload",
        "decide",
        "get_report",
        "promote_arm",
        "rollback_policy",
    }
    assert created["Decide"]["parameters"] == {"path.name": "$response.body#/name"}
    assert created["PromoteArm"]["requestBody"] == {"arm": "$response.body#/arms/0/name"}


def test_a_decision_links_to_feedback_on_it(document: dict[str, Any]) -> None:
    link = operations(document)["decide"]["responses"]["200"]["links"]["RecordFeedback"]
    assert link["operationId"] == "record_feedback"
    assert link["requestBody"] == {"decision_id": "$response.body#/decision_id"}


def test_every_link_names_an_operation_and_a_parameter_it_has(document: dict[str, Any]) -> None:
    by_id = operations(document)
    linked = 0
    for source, by_status in LINKS.items():
        for status, links in by_status.items():
            assert by_id[source]["responses"][status]["links"] == links
            for link in links.values():
                target = by_id[link["operationId"]]
                declared = {f"{p['in']}.{p['name']}" for p in target.get("parameters", [])}
                assert set(link.get("parameters", {})) <= declared, (source, link)
                assert ("requestBody" in link) <= ("requestBody" in target), (source, link)
                linked += 1
    assert linked >= 16


def test_a_link_to_an_operation_the_api_lacks_fails_loudly(document: dict[str, Any]) -> None:
    renamed = {
        "paths": {
            path: {
                method: {**op, "operationId": op["operationId"].replace("decide", "choose")}
                for method, op in item.items()
            }
            for path, item in document["paths"].items()
        }
    }
    with pytest.raises(LookupError, match="decide"):
        add_links(renamed)
