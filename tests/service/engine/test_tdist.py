"""engine/tdist.py: Student's t without scipy, checked against scipy and the closed forms."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_optimizer_service.engine.tdist import t_cdf, t_ppf, t_sf, t_two_sided_p
from scipy import stats as scipy_stats

REL = 1e-9
log_df = st.floats(min_value=0.0, max_value=6.0)  # df = 10**log_df in [1, 1e6]


def _close(got: float, want: float, rel: float = REL) -> bool:
    return abs(got - want) <= rel * abs(want) or abs(got - want) <= 1e-300


@settings(max_examples=400, deadline=None)
@given(log_df, st.floats(min_value=-3.0, max_value=3.0), st.booleans())
def test_sf_matches_scipy(e_df: float, e_t: float, negative: bool) -> None:
    df, t = 10.0**e_df, (-1.0 if negative else 1.0) * 10.0**e_t
    want = float(scipy_stats.t.sf(t, df))
    assert _close(t_sf(t, df), want), (df, t, t_sf(t, df), want)
    assert _close(t_cdf(-t, df), want), (df, t)
    assert _close(t_two_sided_p(t, df), min(1.0, 2.0 * float(scipy_stats.t.sf(abs(t), df))))


@pytest.mark.parametrize("df", [1.0, 1.5, 2.0, 3.7, 10.0, 29.5, 300.0, 1e4, 1e6])
@pytest.mark.parametrize("t", [5.0, 20.0, 100.0, 1e4, 1e8])
def test_tiny_tails_keep_relative_accuracy(df: float, t: float) -> None:
    want = float(scipy_stats.t.sf(t, df))
    if want == 0.0:  # below the smallest double: ours must underflow as well
        assert t_sf(t, df) < 1e-300
    else:
        assert _close(t_sf(t, df), want), (df, t, t_sf(t, df), want)


@settings(max_examples=300, deadline=None)
@given(log_df, st.floats(min_value=-15.0, max_value=math.log10(0.45)), st.booleans())
def test_ppf_matches_scipy(e_df: float, e_p: float, upper: bool) -> None:
    df, p = 10.0**e_df, 10.0**e_p
    p = 1.0 - p if upper else p
    want = float(scipy_stats.t.ppf(p, df))
    got = t_ppf(p, df)
    assert _close(got, want), (df, p, got, want)
    assert _close(t_cdf(got, df), p), (df, p)


@pytest.mark.parametrize("df", [1.0, 2.0, 5.0, 30.0, 1e6])
def test_ci95_quantile(df: float) -> None:
    assert _close(t_ppf(0.975, df), float(scipy_stats.t.ppf(0.975, df)))
    assert _close(t_ppf(0.025, df), -t_ppf(0.975, df), 1e-13)


# Closed forms (exact references, also where scipy itself is off: near the median and far out).
def _cauchy_sf(t: float) -> float:
    return math.atan2(1.0, t) / math.pi  # = 1/2 - atan(t)/pi without cancellation for t > 0


def _df2_sf(t: float) -> float:
    return (
        0.5 * (1.0 - t / math.sqrt(2.0 + t * t))
        if t < 0
        else 1.0 / (math.sqrt(2.0 + t * t) * (math.sqrt(2.0 + t * t) + t))
    )


@pytest.mark.parametrize(
    "t", [1e-300, 1e-12, 1e-6, 0.3, 1.0, 3.0, 1e3, 1e12, 1e150, 1e300, -1e-9, -2.0, -1e8]
)
def test_sf_closed_forms(t: float) -> None:
    assert _close(t_sf(t, 1.0), _cauchy_sf(t), 1e-13), t
    assert _close(t_sf(t, 2.0), _df2_sf(t), 1e-13), t


@pytest.mark.parametrize(
    "p", [1e-300, 1e-30, 1e-8, 0.01, 0.3, 0.5 - 1e-12, 0.5 + 1e-12, 0.7, 0.975, 1.0 - 1e-12]
)
def test_ppf_closed_forms(p: float) -> None:
    central, tail = p - 0.5, min(p, 1.0 - p)  # both exact where they are used below
    sign = 1.0 if p > 0.5 else -1.0
    cauchy = sign / math.tan(math.pi * tail) if tail < 0.25 else math.tan(math.pi * central)
    assert _close(t_ppf(p, 1.0), cauchy, 1e-12), p
    df2 = 2.0 * central / math.sqrt(2.0 * p * (1.0 - p))
    assert _close(t_ppf(p, 2.0), df2, 1e-12), p


def test_edges_and_infinite_df() -> None:
    assert t_ppf(0.5, 7.0) == 0.0
    assert t_ppf(1.0, 7.0) == math.inf
    assert t_ppf(0.0, 7.0) == -math.inf
    assert t_sf(0.0, 3.0) == 0.5
    assert t_sf(math.inf, 3.0) == 0.0
    assert t_cdf(-math.inf, 3.0) == 0.0
    assert t_two_sided_p(0.0, 4.0) == 1.0
    assert _close(t_sf(1.96, math.inf), float(scipy_stats.norm.sf(1.96)), 1e-14)
    assert _close(t_ppf(0.975, math.inf), float(scipy_stats.norm.ppf(0.975)), 1e-14)
    assert _close(t_ppf(1e-20, math.inf), float(scipy_stats.norm.ppf(1e-20)), 1e-14)


@pytest.mark.parametrize("df", [0.0, -1.0, math.nan])
def test_bad_degrees_of_freedom_are_named(df: float) -> None:
    with pytest.raises(ValueError, match="degrees of freedom must be a positive number"):
        t_sf(1.0, df)
    with pytest.raises(ValueError, match="degrees of freedom must be a positive number"):
        t_ppf(0.5, df)


@pytest.mark.parametrize("p", [-0.1, 1.5, math.nan])
def test_bad_probability_is_named(p: float) -> None:
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
        t_ppf(p, 3.0)


def test_nan_statistic_is_named() -> None:
    with pytest.raises(ValueError, match="t statistic is NaN"):
        t_two_sided_p(math.nan, 3.0)


def test_engine_and_report_do_not_import_scipy() -> None:
    """The service runtime has no scipy: a report with ci95 and an A/B p-value must not need it."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import numpy as np\n"
        "from helpers import spec, summary\n"
        "from llm_optimizer_service.engine import Policy, build_report\n"
        "stats = {'a0': summary(40, 0.6), 'a1': summary(30, 0.7)}\n"
        "policy = Policy(spec(2, strategy='ab_test'), stats)\n"
        "report = build_report(policy, np.random.default_rng(0))\n"
        "assert report['ab_test']['p_value'] is not None, report\n"
        "assert all(arm['ci95'] is not None for arm in report['arms']), report\n"
        "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if 'scipy' in m)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
