"""`llm-optimizer`: the lightweight client CLI of the LLM Auto Optimizer (REST API over HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from llm_optimizer_cli import __version__
from llm_optimizer_cli.client import DEFAULT_API_URL, ApiError, Client
from llm_optimizer_cli.output import Format, render

app = typer.Typer(
    help="Client for the LLM Auto Optimizer API: workloads, decisions, feedback, reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
workload_app = typer.Typer(help="Create, list, show and delete workloads.", no_args_is_help=True)
app.add_typer(workload_app, name="workload")

ARM_COLUMNS = ("name", "decisions", "feedback", "mean_quality", "mean_cost_usd",
               "mean_latency_ms", "mean_reward", "ci95", "probability_best")  # fmt: skip


class State:
    """Global options, resolved once."""

    def __init__(self, api_url: str, api_key: str | None, output: Format) -> None:
        self.client = Client(api_url, api_key)
        self.output = output


@app.callback()
def main_options(
    ctx: typer.Context,
    api_url: Annotated[
        str, typer.Option(envvar="LLM_OPTIMIZER_API_URL", help="Base URL of the REST API.")
    ] = DEFAULT_API_URL,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="LLM_OPTIMIZER_API_KEY", help="API key (prefer the env variable)."),
    ] = None,
    output: Annotated[Format, typer.Option("--output", "-o", help="Output format.")] = Format.table,
) -> None:
    ctx.obj = State(api_url, api_key, output)


def _state(ctx: typer.Context) -> State:
    state = ctx.obj
    assert isinstance(state, State)
    return state


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _call(ctx: typer.Context, method: str, path: str, body: Any = None) -> Any:
    try:
        return _state(ctx).client.request(method, path, body)
    except ApiError as exc:
        raise _fail(str(exc)) from None


def _load_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror}; pass an existing YAML or JSON file"
        raise _fail(message) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise _fail(f"{path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(f"{path} must hold {what} (see --help)")
    return data


def _parse_arm(text: str) -> dict[str, Any]:
    name, sep, model = text.partition("=")
    if not sep or not name or not model:
        raise _fail(f"--arm {text!r} must look like NAME=MODEL or NAME=PROVIDER/MODEL")
    provider, slash, bare = model.partition("/")
    arm: dict[str, Any] = {"name": name, "model": bare if slash else model}
    if slash:
        arm["provider"] = provider
    return arm


def _workload_row(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": item["name"],
        "strategy": item["strategy"],
        "arms": ", ".join(arm["name"] for arm in item["arms"]),
        "promoted_arm": item.get("promoted_arm"),
        "canary_percent": item.get("canary_percent"),
    }


@workload_app.command("create")
def workload_create(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Workload name (or give it in --file).")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="YAML/JSON workload spec (API body).")
    ] = None,
    arm: Annotated[
        list[str] | None, typer.Option(help="An arm as NAME=MODEL or NAME=PROVIDER/MODEL; repeat.")
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="thompson, ucb, epsilon_greedy, …")] = None,
    min_quality: Annotated[float | None, typer.Option(help="Constraint: quality floor.")] = None,
    max_cost_usd: Annotated[float | None, typer.Option(help="Constraint: cost cap.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Constraint: latency cap.")] = None,
    cost_weight: Annotated[float | None, typer.Option(help="Objective: USD weight.")] = None,
    latency_weight: Annotated[float | None, typer.Option(help="Objective: s weight.")] = None,
    daily_budget_usd: Annotated[
        float | None, typer.Option(help="Budget: USD per UTC day, paced (not cut off).")
    ] = None,
) -> None:
    """Create a workload from --file, or from a name and --arm options."""
    body: dict[str, Any] = _load_mapping(file, "a mapping with name and arms") if file else {}
    if name:
        body["name"] = name
    if arm:
        body["arms"] = [_parse_arm(a) for a in arm]
    if strategy:
        body["strategy"] = strategy
    constraints = {"min_quality": min_quality, "max_cost_usd": max_cost_usd,
                   "max_latency_ms": max_latency_ms}  # fmt: skip
    if any(v is not None for v in constraints.values()):
        body.setdefault("constraints", {}).update(
            {k: v for k, v in constraints.items() if v is not None}
        )
    weights = {"cost_weight": cost_weight, "latency_weight": latency_weight}
    if any(v is not None for v in weights.values()):
        body.setdefault("objective", {}).update({k: v for k, v in weights.items() if v is not None})
    if daily_budget_usd is not None:
        body["budget"] = {"daily_usd": daily_budget_usd}
    if "name" not in body or "arms" not in body:
        raise _fail("a workload needs a name and at least two arms: NAME --arm A=MODEL --arm …")
    created = _call(ctx, "POST", "/api/v1/workloads", body)
    render(created if _state(ctx).output is not Format.table else _workload_row(created),
           _state(ctx).output)  # fmt: skip


@workload_app.command("list")
def workload_list(ctx: typer.Context) -> None:
    """List workloads."""
    data = _call(ctx, "GET", "/api/v1/workloads")
    rows = [_workload_row(item) for item in data["items"]]
    render(data, _state(ctx).output, columns=("name", "strategy", "arms", "promoted_arm",
           "canary_percent"), rows=rows, title="workloads")  # fmt: skip


@workload_app.command("show")
def workload_show(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Show one workload."""
    render(_call(ctx, "GET", f"/api/v1/workloads/{name}"), _state(ctx).output)


@workload_app.command("delete")
def workload_delete(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Delete a workload."""
    _call(ctx, "DELETE", f"/api/v1/workloads/{name}")
    typer.echo(f"deleted workload {name}")


@app.command()
def decide(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument(help="Workload name.")],
    context: Annotated[str | None, typer.Option(help="Request context as a JSON object.")] = None,
    session_id: Annotated[
        str | None, typer.Option(help="The caller's session (credited by session-feedback).")
    ] = None,
) -> None:
    """Ask which configuration to use for one request."""
    body: dict[str, object] | None = None
    if context:
        try:
            body = {"context": json.loads(context)}
        except ValueError as exc:
            example = '{"tier": "free"}'
            raise _fail(f"--context is not valid JSON ({exc}); e.g. '{example}'") from None
    if session_id is not None:
        body = {**(body or {}), "session_id": session_id}
    render(_call(ctx, "POST", f"/api/v1/workloads/{workload}/decide", body), _state(ctx).output)


@app.command("session-feedback")
def session_feedback(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(help="The session_id given to decide.")],
    quality: Annotated[float, typer.Option(help="Quality score, 0..1, for each decision.")],
    cost_usd: Annotated[float, typer.Option(help="The session's total cost in USD.")] = 0.0,
    latency_ms: Annotated[float, typer.Option(help="The session's total latency in ms.")] = 0.0,
    error: Annotated[bool, typer.Option(help="The session failed.")] = False,
    workload: Annotated[
        str | None, typer.Option(help="Only this workload's decisions of the session.")
    ] = None,
) -> None:
    """Report one outcome for a whole session: each of its decisions is credited."""
    body: dict[str, object] = {
        "session_id": session_id,
        "quality": quality,
        "cost_usd": cost_usd,
        "latency_ms": latency_ms,
        "error": error,
    }
    if workload is not None:
        body["workload"] = workload
    render(_call(ctx, "POST", "/api/v1/feedback/session", body), _state(ctx).output)


@app.command()
def feedback(
    ctx: typer.Context,
    decision_id: Annotated[str, typer.Argument(help="The decision_id that decide returned.")],
    quality: Annotated[float, typer.Option(help="Quality score, 0..1.")],
    cost_usd: Annotated[float, typer.Option(help="Cost of the request in USD.")] = 0.0,
    latency_ms: Annotated[float, typer.Option(help="Latency in milliseconds.")] = 0.0,
    error: Annotated[bool, typer.Option(help="The request failed.")] = False,
) -> None:
    """Report what happened for a decision (acknowledged once durable)."""
    body = {"decision_id": decision_id, "quality": quality, "cost_usd": cost_usd,
            "latency_ms": latency_ms, "error": error}  # fmt: skip
    answer = _call(ctx, "POST", "/api/v1/feedback", body)
    render(answer or {"decision_id": decision_id, "status": "accepted"}, _state(ctx).output)


@app.command()
def report(ctx: typer.Context, workload: Annotated[str, typer.Argument()]) -> None:
    """Per-arm statistics, best arm, Pareto front, drift and A/B result."""
    data = _call(ctx, "GET", f"/api/v1/workloads/{workload}/report")
    state = _state(ctx)
    if state.output is not Format.table:
        render(data, state.output)
        return
    drift = data.get("drift") or {}
    drifted = f"detected on {drift.get('arm')}" if drift.get("detected") else "none"
    pareto = ", ".join(data.get("pareto_front", []))
    title = f"{data['workload']} ({data['strategy']}): best {data.get('best_arm')}; "
    title += f"pareto {pareto}; drift {drifted}"
    pacing = data.get("pacing")
    if pacing:
        title += (
            f"; budget ${pacing['daily_usd']:g}/day: spent ${pacing['spent_usd']:.2f} of "
            f"${pacing['planned_usd']:.2f} planned, cost weight x{pacing['multiplier']:.2f}"
        )
    evaluation = data.get("evaluation") or {}
    latest = evaluation.get("latest")
    if evaluation.get("require_evaluation"):
        title += "; promotion requires an evaluation"
    if not latest:
        title += "; no stored evaluation"
    render(data, state.output, columns=ARM_COLUMNS, rows=data["arms"], title=title)
    if latest:
        render(latest, state.output, **_estimates(latest, "latest evaluation: "))
    for note in data.get("notes") or []:
        print(f"note: {note}")


def _estimates(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A stored evaluation's estimators as table rows, titled with what was evaluated."""
    rows = [
        {"estimator": name, "value": data[name]["value"], "ci95": data[name]["ci95"]}
        for name in ("ips", "snips", "dr", "logged")
    ]
    shares = ", ".join(f"{name} {p:.0%}" for name, p in data["probabilities"].items())
    title = (
        f"{prefix}{data['description']} ({shares}): {data['verdict']} against logged; "
        f"{data['outcomes']} logged outcomes, effective sample size "
        f"{data['effective_sample_size']:.0f}; {data['evaluated_at']} by "
        f"{data['evaluated_by']} ({data['source']})"
    )
    return {"columns": ("estimator", "value", "ci95"), "rows": rows, "title": title}


@app.command()
def promote(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument()],
    arm: Annotated[str, typer.Argument(help="The arm to promote.")],
    canary_percent: Annotated[
        float | None, typer.Option(help="Send only this share of traffic (0-100) to it.")
    ] = None,
) -> None:
    """Promote an arm (optionally as a canary)."""
    body: dict[str, Any] = {"arm": arm}
    if canary_percent is not None:
        body["canary_percent"] = canary_percent
    render(_call(ctx, "POST", f"/api/v1/workloads/{workload}/promote", body), _state(ctx).output)


@app.command()
def evaluate(
    ctx: typer.Context,
    workload: Annotated[str, typer.Argument()],
    arm: Annotated[
        str | None, typer.Option(help="Evaluate this arm fixed (what promoting it would do).")
    ] = None,
    candidate: Annotated[
        Path | None,
        typer.Option(
            help="YAML or JSON file of the candidate: arms (names to keep), objective, "
            "constraints, strategy, strategy_params; see docs/engine.md."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=100, max=100_000, help="Most recent logged outcomes to use.")
    ] = 10_000,
) -> None:
    """Estimate a candidate policy on the logged decisions before promoting or changing it."""
    if (arm is None) == (candidate is None):
        raise _fail("give exactly one of --arm or --candidate", 2)
    body: dict[str, Any] = {"arm": arm}
    if candidate is not None:
        body = _load_mapping(candidate, "a mapping of the candidate's changes")
    path = f"/api/v1/workloads/{workload}/evaluate"
    data = _call(ctx, "POST", path, {"candidate": body, "limit": limit})
    state = _state(ctx)
    if state.output is not Format.table:
        render(data, state.output)
        return
    rows = [
        {"estimator": name, "value": data[name]["value"], "ci95": data[name]["ci95"]}
        for name in ("ips", "snips", "dr", "logged")
    ]
    shares = ", ".join(f"{name} {p:.0%}" for name, p in data["candidate"].items())
    title = (
        f"{data['workload']}: candidate {shares}; {data['outcomes']} logged outcomes, "
        f"effective sample size {data['effective_sample_size']:.0f}"
    )
    if "verdict" in data:  # a service that stores evaluations also judges them
        title += f"; {data['verdict']} against logged"
    render(data, state.output, columns=("estimator", "value", "ci95"), rows=rows, title=title)


@app.command()
def rollback(ctx: typer.Context, workload: Annotated[str, typer.Argument()]) -> None:
    """Roll back to the previous policy."""
    render(_call(ctx, "POST", f"/api/v1/workloads/{workload}/rollback"), _state(ctx).output)


@app.command()
def health(ctx: typer.Context) -> None:
    """The service's component health; exit 0 ok, 1 down, 2 degraded."""
    try:
        data = _state(ctx).client.request("GET", "/health")
    except ApiError as exc:
        if exc.status == 503:
            data = {"status": "down", "detail": str(exc)}
        else:
            raise _fail(str(exc)) from None
    render(data, _state(ctx).output)
    raise typer.Exit({"ok": 0, "degraded": 2}.get(data.get("status"), 1))


@app.command()
def version(ctx: typer.Context) -> None:
    """The client's version and the server's (when reachable)."""
    data: dict[str, Any] = {"client": __version__}
    try:
        data["server"] = _state(ctx).client.get("/version")
    except ApiError as exc:
        data["server"] = f"unreachable: {exc}"
    render(data, _state(ctx).output)


def main() -> None:
    app()
