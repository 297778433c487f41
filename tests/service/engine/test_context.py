"""Context features: strict keys, caps, posteriors pooled toward the workload level, and one
plan per context with evidence."""

from __future__ import annotations

import numpy as np
import pytest
from llm_optimizer_service.engine import (
    MAX_CONTEXT_FEATURES,
    MAX_CONTEXT_VALUES,
    ArmSpec,
    EngineError,
    Policy,
    WorkloadSpec,
    context_report,
    decide,
)
from llm_optimizer_service.engine.policy import KAPPA0

from .helpers import summary

FEATURES = {"tier": ("free", "pro"), "region": ("eu", "us")}


def _spec(**extra: object) -> WorkloadSpec:
    return WorkloadSpec(
        name="ctx",
        arms=(ArmSpec("a", "m-a"), ArmSpec("b", "m-b")),
        context_features=extra.pop("features", FEATURES),  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


def test_keys_are_strict_and_name_what_is_allowed() -> None:
    spec = _spec()
    assert spec.context_key({"region": "us", "tier": "pro"}) == "tier=pro,region=us"
    assert spec.context_key(None) is None
    assert spec.context_key({}) is None
    assert len(spec.context_keys()) == 4
    for context, says in (
        ({"tier": "gold", "region": "eu"}, "context.tier is 'gold', not one of its declared "
         "values: free, pro"),
        ({"tier": "pro"}, "missing feature 'region' (one of eu, us)"),
        ({"tier": "pro", "region": "eu", "plan": "x"}, "undeclared feature(s) 'plan'"),
        ({"tier": 1, "region": "eu"}, "context.tier is 1"),
    ):  # fmt: skip
        with pytest.raises(EngineError) as caught:
            spec.context_key(context)
        assert says in str(caught.value)
    # without declared features a context is accepted and ignored, as before
    plain = WorkloadSpec(name="p", arms=(ArmSpec("a", "m"), ArmSpec("b", "m")))
    assert plain.context_key({"anything": [1, 2]}) is None


@pytest.mark.parametrize(
    ("features", "says"),
    [
        ({f"f{i}": ("x",) for i in range(MAX_CONTEXT_FEATURES + 1)}, "at most"),
        ({"tier": tuple(f"v{i}" for i in range(MAX_CONTEXT_VALUES + 1))}, "1-16 values"),
        ({"a": tuple("abcdefghijklmnop"), "b": tuple("abcdefghijklmnop"), "c": ("x", "y")},
         "512 contexts"),
        ({"Tier": ("x",)}, "must match"),
        ({"tier": ("x", "x")}, "repeats"),
        ({"tier": ("a=b",)}, "','"),
        ({"tier": (" x",)}, "surrounding"),
    ],
)  # fmt: skip
def test_declarations_are_capped_and_checked(
    features: dict[str, tuple[str, ...]], says: str
) -> None:
    with pytest.raises(EngineError) as caught:
        _spec(features=features)
    assert says in str(caught.value)


def test_pooling_formula() -> None:
    spec = _spec(context_pooling=10.0)
    workload = {"a": summary(200, 0.6), "b": summary(200, 0.5)}
    context = {"a": summary(4, 0.2), "b": summary(4, 0.9)}
    policy = Policy(spec, workload, context_stats={"tier=pro,region=eu": context})
    parent = policy.estimates
    pooled = policy.context_estimates("tier=pro,region=eu")
    m = min(10.0, KAPPA0 + 200)
    expected_a = (m * parent.loc[0, 0] + 4 * 0.2) / (m + 4)
    assert pooled.loc[0, 0] == pytest.approx(expected_a)
    assert pooled.scale[0, 0] == pytest.approx(np.sqrt(pooled.variance[0, 0] / (m + 4)))
    # an empty context is the workload's posterior mean with m pseudo-observations
    empty = policy.context_estimates("tier=free,region=us")
    np.testing.assert_allclose(empty.loc, parent.loc)
    # pooling 0: the context learns alone
    alone = Policy(
        _spec(context_pooling=0.0), workload, context_stats={"tier=pro,region=eu": context}
    )
    assert alone.context_estimates("tier=pro,region=eu").loc[0, 0] == pytest.approx(0.2)


def test_each_context_decides_from_its_own_plan() -> None:
    rng = np.random.default_rng(3)
    workload = {"a": summary(400, 0.6), "b": summary(400, 0.6)}
    contexts = {
        "tier=free,region=eu": {"a": summary(200, 0.9), "b": summary(200, 0.3)},
        "tier=pro,region=eu": {"a": summary(200, 0.3), "b": summary(200, 0.9)},
        "region=eu": {"a": summary(200, 0.9)},  # a stale key (features changed): ignored
    }
    policy = Policy(_spec(), workload, context_stats=contexts)
    assert policy.contexts() == ["tier=free,region=eu", "tier=pro,region=eu"]
    free = decide(policy, rng, {"tier": "free", "region": "eu"})
    pro = decide(policy, rng, {"tier": "pro", "region": "eu"})
    assert (free.arm, free.context, free.propensity) == ("a", "tier=free,region=eu", 1.0)
    assert (pro.arm, pro.context) == ("b", "tier=pro,region=eu")
    # a context without evidence, and no context, use the workload's plan
    unseen = policy.plan_for("tier=free,region=us", rng)
    assert unseen is policy.plan_for(None, rng)
    assert decide(policy, rng).context is None
    with pytest.raises(EngineError):
        decide(policy, rng, {"tier": "gold", "region": "eu"})
    # a sparse context leans on the workload: 3 poor observations do not overturn 400 good ones
    sparse = Policy(
        _spec(),
        {"a": summary(400, 0.8), "b": summary(400, 0.5)},
        context_stats={"tier=free,region=us": {"a": summary(3, 0.5, sd=(0.3, 0.0002, 100.0))}},
    )
    assert sparse.plan_for("tier=free,region=us", rng).as_dict()["a"] > 0.9
    report = context_report(policy, rng)
    assert [c["context"] for c in report] == policy.contexts()
    assert [c["best_arm"] for c in report] == ["a", "b"]
    assert report[0]["feedback"] == 400


def test_uniform_pins_the_draw() -> None:
    policy = Policy(_spec(), {"a": summary(50, 0.6), "b": summary(50, 0.6)})
    rng = np.random.default_rng(1)
    plan = policy.prepare(rng)
    assert decide(policy, rng, uniform=0.0).arm == plan.names[0]
    assert decide(policy, rng, uniform=0.999999).arm == plan.names[-1]
