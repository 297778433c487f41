"""OpenAPI links: which answer feeds which next call (a created workload's name into decide,
report, promote...; a decision's id into feedback). Generators and stateful API testers
(schemathesis) follow them; a reader sees the API's workflow in the document itself.

The links are declared by operationId (the handlers' names), so a renamed handler fails here,
at document build time, instead of silently dropping its links.
"""

from __future__ import annotations

from typing import Any

_NAME = {"path.name": "$response.body#/name"}
_WORKLOAD = {"path.name": "$response.body#/workload"}


def _link(operation_id: str, description: str, **fields: Any) -> dict[str, Any]:
    return {"operationId": operation_id, "description": description, **fields}


def _by_name(parameters: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Links from an answer that names a workload to every operation on that workload."""
    return {
        "GetWorkload": _link("get_workload", "the workload", parameters=parameters),
        "PatchWorkload": _link("patch_workload", "change the workload", parameters=parameters),
        "DeleteWorkload": _link("delete_workload", "delete the workload", parameters=parameters),
        "Decide": _link("decide", "a decision for the workload", parameters=parameters),
        "GetReport": _link("get_report", "the workload's A/B report", parameters=parameters),
        "RollbackPolicy": _link(
            "rollback_policy", "roll the workload's policy back", parameters=parameters
        ),
    }


def _promote(parameters: dict[str, str], arm: str) -> dict[str, dict[str, Any]]:
    return {
        "PromoteArm": _link(
            "promote_arm",
            "promote one of the workload's arms",
            parameters=parameters,
            requestBody={"arm": arm},
        )
    }


# operationId -> status -> link name -> link
LINKS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "create_workload": {
        "201": {**_by_name(_NAME), **_promote(_NAME, "$response.body#/arms/0/name")}
    },
    "get_workload": {"200": {**_by_name(_NAME), **_promote(_NAME, "$response.body#/arms/1/name")}},
    "patch_workload": {"200": _by_name(_NAME)},
    "decide": {
        "200": {
            "RecordFeedback": _link(
                "record_feedback",
                "feedback on this decision",
                requestBody={"decision_id": "$response.body#/decision_id"},
            )
        }
    },
    "promote_arm": {
        "200": {
            "GetReport": _link(
                "get_report", "the report under the new policy", parameters=_WORKLOAD
            ),
            "RollbackPolicy": _link("rollback_policy", "undo this promotion", parameters=_WORKLOAD),
        }
    },
}


def add_links(document: dict[str, Any]) -> None:
    """Attach :data:`LINKS` to the responses of ``document`` (an OpenAPI 3.x dict, in place)."""
    operations = {
        operation["operationId"]: operation
        for path_item in document.get("paths", {}).values()
        for operation in path_item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    targets = {
        link["operationId"]
        for by_status in LINKS.values()
        for links in by_status.values()
        for link in links.values()
    }
    missing = sorted((targets | set(LINKS)) - set(operations))
    if missing:
        raise LookupError(f"OpenAPI links name operations the API lacks: {', '.join(missing)}")
    for operation_id, by_status in LINKS.items():
        responses = operations[operation_id]["responses"]
        for status, links in by_status.items():
            if status not in responses:
                raise LookupError(f"OpenAPI links: {operation_id} documents no {status} answer")
            responses[status].setdefault("links", {}).update(links)
