"""Invoke task: verify — `invoke verify --target T`, the conformance suite of a running
deployment (``ops.deploy.verify``)."""

from __future__ import annotations

import os

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from ops.deploy.service_cli import TARGET_HELP


@task(
    help={
        "target": TARGET_HELP,
        "url": "the REST API's base URL, e.g. http://127.0.0.1:8080 (default: local's "
        "deploy.json, else LLM_OPTIMIZER_API_URL)",
        "metrics_url": "the metrics endpoint, e.g. http://127.0.0.1:9090/metrics (default: "
        "local's deploy.json)",
        "api_key_file": "a file holding an API key with write scope, one per line as in the "
        "service's keys file (default: local's api-keys, else LLM_OPTIMIZER_API_KEY)",
        "strict": "a check that could not run fails the suite too (always so when CI is set)",
    }
)
def verify(
    c: Context,
    target: str = "local",
    url: str = "",
    metrics_url: str = "",
    api_key_file: str = "",
    strict: bool = False,
) -> None:
    """Check a running deployment: health, a decide/feedback round trip, the contract's
    metrics, a restart under steady load with no failed request, a backup and its verify.
    Prints a table; exits 1 when a check failed (or, with --strict or CI, did not run), and
    at once, saying why, when the deployment cannot be checked (kwok's simulated nodes)."""
    from ops.deploy import verify as suite

    why = suite.refusal(c, target)
    if why:
        raise Exit(f"verify --target {target} cannot run: {why}", code=1)
    ep = suite.endpoint(c, target, url=url, metrics_url=metrics_url, api_key_file=api_key_file)
    outcomes = suite.run(c, target, ep)
    suite.print_table(target, outcomes)
    bad = suite.failed(outcomes, strict=strict or bool(os.environ.get("CI")))
    if bad:
        raise Exit(
            f"verify --target {target}: {len(bad)} of {len(outcomes)} checks did not pass: "
            + ", ".join(f"{o.check} ({o.result})" for o in bad),
            code=1,
        )
    unpromised = [o.check for o in outcomes if o.result == suite.NOT_GUARANTEED]
    if unpromised:
        print(
            f"verify --target {target}: every check passed but {', '.join(unpromised)}, "
            "which this deployment does not guarantee (figures in the table)"
        )
        return
    print(f"verify --target {target}: every check passed")
