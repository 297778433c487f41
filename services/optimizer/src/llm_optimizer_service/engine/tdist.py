"""Student's t distribution for real degrees of freedom, with the standard library only.

The report needs two numbers from it: the two-sided p-value of Welch's t statistic (degrees of
freedom from Welch-Satterthwaite, so not an integer) and the 0.975 quantile for 95% intervals.
Pulling in scipy for that alone costs the service image ~100 MB, so this module computes them:

- **Tails** through the regularized incomplete beta function: for ``t >= 0`` with
  ``x = df / (df + t**2)``, ``P(T > t) = I_x(df/2, 1/2) / 2`` and
  ``P(0 < T < t) = I_{1-x}(1/2, df/2) / 2``. ``I`` is evaluated with its continued fraction
  (modified Lentz), on whichever side of the symmetry ``I_x(a, b) = 1 - I_{1-x}(b, a)``
  converges fast, so the smaller of the two complements is computed directly and keeps its
  relative accuracy (tiny tails are not ``1 - something``). ``x`` and ``1 - x`` are carried as
  logarithms so huge ``t`` neither overflows nor cancels.
- ``log B(a, 1/2)`` for large ``a`` (large ``df``) by the Stirling series of the *difference*
  ``lgamma(a) - lgamma(a + 1/2)``, which keeps full absolute accuracy where subtracting two
  ``math.lgamma`` values of size ~``a log a`` would not.
- **Quantiles** by safeguarded Newton iteration on ``log`` of the tail (or of the central
  probability near the median) against ``log t``: start from the Cornish-Fisher expansion of
  the normal quantile, keep a bracket whose upper end is a proven bound (the power-law tail
  dominates the t tail), and bisect whenever a Newton step leaves the bracket.
- ``df = inf`` is the standard normal.

Accuracy is checked by ``tests/service/engine/test_tdist.py`` against ``scipy.stats.t`` (the
test group keeps scipy for that only) and against the closed forms for df = 1 and 2: relative
1e-9 or better for df in [1, 1e6]. Beyond, the continued fraction loses digits to cancellation
(about df * 1e-17 relative: 4e-10 at df = 1e7, 1e-8 at 1e9), harmless for a p-value.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Final

__all__ = ["t_cdf", "t_ppf", "t_sf", "t_two_sided_p"]

_EPS: Final = 2.220446049250313e-16
_TINY: Final = 1e-300
_CF_MAX_ITER: Final = 100_000
_NEWTON_MAX_ITER: Final = 200
_LOG_MAX: Final = math.log(1.7976931348623157e308)
_HALF_LOG_2PI: Final = 0.5 * math.log(2.0 * math.pi)
_STIRLING_FROM: Final = 8.0
# Coefficients B_2k / (2k (2k-1)) of the Stirling series for log Gamma, k = 1..7.
_STIRLING: Final = (
    1.0 / 12.0,
    -1.0 / 360.0,
    1.0 / 1260.0,
    -1.0 / 1680.0,
    1.0 / 1188.0,
    -691.0 / 360360.0,
    1.0 / 156.0,
)
_NORMAL: Final = NormalDist()


def _check_df(df: float) -> float:
    df = float(df)
    if math.isnan(df) or df <= 0.0:
        raise ValueError(f"degrees of freedom must be a positive number (or inf), got {df!r}")
    return df


def _check_t(t: float) -> float:
    t = float(t)
    if math.isnan(t):
        raise ValueError("t statistic is NaN; check the inputs of the test for zero variances")
    return t


def _stirling_correction(z: float) -> float:
    """``log Gamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2)`` for ``z >= 8``."""
    inv = 1.0 / z
    inv2 = inv * inv
    total = 0.0
    for coef in reversed(_STIRLING):
        total = total * inv2 + coef
    return total * inv


def _log_beta(a: float, b: float) -> float:
    """``log B(a, b)``, accurate in absolute terms even when one argument is huge."""
    small, large = (a, b) if a <= b else (b, a)
    if large < _STIRLING_FROM:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    # lgamma(large) - lgamma(large + small) via Stirling, without subtracting big numbers:
    # (L - 1/2) log L - (L + s - 1/2) log(L + s) + s = -s log L - (L + s - 1/2) log1p(s/L) + s.
    diff = (
        -small * math.log(large)
        - (large + small - 0.5) * math.log1p(small / large)
        + small
        + _stirling_correction(large)
        - _stirling_correction(large + small)
    )
    return math.lgamma(small) + diff


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz).

    ``I_x(a, b) = x**a (1-x)**b / (a B(a, b)) * _beta_cf(a, b, x)``; converges quickly for
    ``x < (a + 1) / (a + b + 2)``. Terms: ``d_{2m+1} = -(a+m)(a+b+m) x / ((a+2m)(a+2m+1))``,
    ``d_{2m} = m (b-m) x / ((a+2m-1)(a+2m))``.
    """
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) >= _TINY else _TINY)
    result = d
    for m in range(1, _CF_MAX_ITER + 1):
        two_m = 2.0 * m
        for numerator in (
            m * (b - m) * x / ((a + two_m - 1.0) * (a + two_m)),
            -(a + m) * (a + b + m) * x / ((a + two_m) * (a + two_m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) >= _TINY else _TINY)
            c = 1.0 + numerator / c
            if abs(c) < _TINY:
                c = _TINY
            delta = c * d
            result *= delta
        if abs(delta - 1.0) <= _EPS:
            return result
    raise ArithmeticError(  # pragma: no cover - the fraction converges for all valid inputs
        f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})"
    )


def _beta_pair(a: float, b: float, log_x: float, log_y: float) -> tuple[float, float]:
    """``(I_x(a, b), 1 - I_x(a, b))`` with ``y = 1 - x``, both given as logarithms.

    The smaller complement is computed directly, so it keeps its relative accuracy.
    """
    x, y = math.exp(log_x), math.exp(log_y)
    log_front = a * log_x + b * log_y - _log_beta(a, b)
    if x < (a + 1.0) / (a + b + 2.0):
        lower = math.exp(log_front - math.log(a)) * _beta_cf(a, b, x)
        return lower, 1.0 - lower
    upper = math.exp(log_front - math.log(b)) * _beta_cf(b, a, y)
    return 1.0 - upper, upper


def _log_x_and_y(t: float, df: float) -> tuple[float, float]:
    """``(log x, log(1 - x))`` for ``x = df / (df + t**2)``, ``t > 0``, without overflow."""
    # x = 1 / (1 + r2) and 1 - x = r2 / (1 + r2) with r2 = t^2 / df, kept as logarithms.
    log_r2 = 2.0 * (math.log(t) - 0.5 * math.log(df))
    if log_r2 > 0.0:
        log_y = -math.log1p(math.exp(-log_r2))
        return log_y - log_r2, log_y
    log_x = -math.log1p(math.exp(log_r2))
    return log_x, log_r2 + log_x


def _tail_and_central(t: float, df: float) -> tuple[float, float]:
    """``(P(T > t), P(0 < T < t))`` for ``t >= 0``; they add up to 1/2."""
    if t == 0.0:
        return 0.5, 0.0
    if math.isinf(t):
        return 0.0, 0.5
    if math.isinf(df):
        tail = 0.5 * math.erfc(t / math.sqrt(2.0))
        return tail, 0.5 * math.erf(t / math.sqrt(2.0))
    log_x, log_y = _log_x_and_y(t, df)
    i_x, j_x = _beta_pair(0.5 * df, 0.5, log_x, log_y)
    return 0.5 * i_x, 0.5 * j_x


def _log_pdf(t: float, df: float) -> float:
    if math.isinf(df):
        return -0.5 * t * t - _HALF_LOG_2PI
    if t == 0.0:
        return -_log_beta(0.5 * df, 0.5) - 0.5 * math.log(df)
    # (1 + t^2/df) ** -((df + 1) / 2) = x ** ((df + 1) / 2)
    log_x = _log_x_and_y(abs(t), df)[0]
    return -_log_beta(0.5 * df, 0.5) - 0.5 * math.log(df) + 0.5 * (df + 1.0) * log_x


def t_sf(t: float, df: float) -> float:
    """Survival function ``P(T > t)`` of Student's t with ``df`` (real, > 0, or inf) degrees."""
    t, df = _check_t(t), _check_df(df)
    tail, central = _tail_and_central(abs(t), df)
    return tail if t >= 0.0 else 0.5 + central


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution ``P(T <= t)`` of Student's t with ``df`` degrees of freedom."""
    t, df = _check_t(t), _check_df(df)
    tail, central = _tail_and_central(abs(t), df)
    return tail if t <= 0.0 else 0.5 + central


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value ``P(|T| >= |t|)`` of a t statistic with ``df`` degrees of freedom."""
    t, df = _check_t(t), _check_df(df)
    return min(1.0, 2.0 * _tail_and_central(abs(t), df)[0])


def _cornish_fisher(z: float, df: float) -> float:
    """Start value: the t quantile from the normal one (first two Cornish-Fisher terms)."""
    z2 = z * z
    return z + z * (z2 + 1.0) / (4.0 * df) + z * ((5.0 * z2 + 16.0) * z2 + 3.0) / (96.0 * df * df)


def t_ppf(p: float, df: float) -> float:
    """Quantile (inverse CDF) of Student's t: the ``t`` with ``P(T <= t) = p``."""
    p, df = float(p), _check_df(df)
    if math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p!r}")
    if p == 0.5:
        return 0.0
    if p in (0.0, 1.0):
        return math.inf if p == 1.0 else -math.inf
    sign = 1.0 if p > 0.5 else -1.0
    # Both are exact in floating point where they are used: 1 - p for p >= 1/2 and
    # |p - 1/2| for p in [1/4, 3/4] (Sterbenz).
    tail = 1.0 - p if p > 0.5 else p
    if math.isinf(df):
        return sign * _NORMAL.inv_cdf(1.0 - tail) if tail > 0.25 else -sign * _NORMAL.inv_cdf(tail)
    return sign * _positive_quantile(tail, abs(p - 0.5), df)


def _positive_quantile(tail: float, central: float, df: float) -> float:
    """The ``t >= 0`` with ``P(T > t) = tail`` (``= 1/2 - central``)."""
    # Near the median, match the central probability (the tail would be 1/2 minus a rounding
    # error); in the tails, match the tail itself. Both via Newton on logarithms in log t.
    use_tail = tail < 0.25
    log_target = math.log(tail if use_tail else central)
    # Upper bound: the t density is below df**(df/2) / B * t**-(df+1), so
    # P(T > t) <= df**(df/2 - 1) / B * t**-df; where that bound equals `tail`, the true tail is
    # already smaller.
    log_hi = ((0.5 * df - 1.0) * math.log(df) - _log_beta(0.5 * df, 0.5) - math.log(tail)) / df
    hi = math.exp(min(log_hi, _LOG_MAX))
    if log_hi >= _LOG_MAX and _tail_and_central(hi, df)[0] > tail:
        return math.inf  # beyond the largest double
    lo = 0.0
    t = min(max(_cornish_fisher(-_NORMAL.inv_cdf(tail), df), _TINY), hi)
    for _ in range(_NEWTON_MAX_ITER):
        upper, middle = _tail_and_central(t, df)
        value = upper if use_tail else middle
        if value <= 0.0:  # underflow far out in the tail: t is too large
            hi = t
            t_next = math.exp(0.5 * (math.log(lo) + math.log(hi))) if lo > 0.0 else 0.5 * hi
        else:
            f = math.log(value) - log_target
            if f == 0.0:
                return t
            if (f > 0.0) == use_tail:
                lo = t
            else:
                hi = t
            # d log(value) / d log(t) = -/+ t pdf(t) / value
            slope = math.exp(math.log(t) + _log_pdf(t, df) - math.log(value))
            step = f / slope if use_tail else -f / slope
            log_next = math.log(t) + step
            t_next = math.exp(log_next) if log_next < _LOG_MAX else math.inf
            if not lo < t_next < hi:
                if lo > 0.0 and hi > 4.0 * lo:
                    t_next = math.exp(0.5 * (math.log(lo) + math.log(hi)))
                else:
                    t_next = 0.5 * (lo + hi)
        if abs(t_next - t) <= 4.0 * _EPS * t or hi - lo <= 4.0 * _EPS * hi:
            return t_next
        t = t_next
    return t  # pragma: no cover - Newton with bisection converges well within the budget
