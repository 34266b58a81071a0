"""Small, dependency-free statistics for experiment reports.

* :class:`Welford` — running count, mean and variance in O(1) memory
  (Welford 1962; Chan et al. for merging), so outcomes are aggregated without
  keeping samples.
* Student's *t* distribution: :func:`t_cdf` through the regularized incomplete
  beta function (continued fraction evaluated with the modified Lentz method,
  as in *Numerical Recipes* §6.4), and :func:`t_ppf` by bisection on it.
* :func:`mean_ci` (t-based confidence interval of a mean), :func:`welch_t_test`
  (unequal variances, Welch–Satterthwaite degrees of freedom, two-sided
  p-value), :func:`wilson_interval` (binomial proportion) and
  :func:`two_proportion_z_test` (pooled), the normal distribution coming from
  :class:`statistics.NormalDist`.

Functions return ``None`` where a quantity is undefined (too few observations)
rather than a misleading number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "Interval",
    "TestResult",
    "Welford",
    "mean_ci",
    "regularized_beta",
    "t_cdf",
    "t_ppf",
    "two_proportion_z_test",
    "welch_t_test",
    "wilson_interval",
]

_STANDARD_NORMAL = NormalDist()
_CF_MAX_ITERATIONS = 10_000
_CF_EPSILON = 1e-15
_TINY = 1e-300


@dataclass(slots=True)
class Welford:
    """Running n, mean and M2 (sum of squared deviations from the mean) of a series."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def remove(self, x: float) -> None:
        """Undo a previous :meth:`add` of ``x`` (used when a feedback score is replaced)."""
        if self.n <= 1:
            self.n, self.mean, self.m2 = 0, 0.0, 0.0
            return
        old_mean = self.mean
        self.n -= 1
        self.mean = (old_mean * (self.n + 1) - x) / self.n
        self.m2 = max(0.0, self.m2 - (x - self.mean) * (x - old_mean))

    def merge(self, other: Welford) -> None:
        """Fold another accumulator into this one (Chan et al.'s parallel update)."""
        if other.n == 0:
            return
        total = self.n + other.n
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.n * other.n / total
        self.mean += delta * other.n / total
        self.n = total

    @property
    def variance(self) -> float:
        """Unbiased sample variance (n - 1 denominator); NaN with fewer than two values."""
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    @property
    def stdev(self) -> float:
        return math.sqrt(self.variance)


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float

    def __contains__(self, x: float) -> bool:
        return self.low <= x <= self.high


@dataclass(frozen=True, slots=True)
class TestResult:
    """A two-sided test: statistic, p-value and (for t-tests) degrees of freedom."""

    __test__ = False  # not a pytest test class, despite the name

    statistic: float
    p_value: float
    df: float | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


# --- the t distribution ----------------------------------------------------------------


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b), modified Lentz (Numerical Recipes ``betacf``)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _CF_MAX_ITERATIONS + 1):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _CF_EPSILON:
            return h
    return h  # pragma: no cover - converges in O(sqrt(max(a, b))) iterations


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError("a and b must be positive")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom (``inf``: normal)."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if math.isinf(df):
        return _STANDARD_NORMAL.cdf(t)
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def _two_sided_t_p(t: float, df: float) -> float:
    if math.isinf(df):
        return 2.0 * _STANDARD_NORMAL.cdf(-abs(t))
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def t_ppf(p: float, df: float) -> float:
    """The quantile of Student's t: the t with ``t_cdf(t, df) == p`` (0 < p < 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be strictly between 0 and 1")
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if math.isinf(df):
        return _STANDARD_NORMAL.inv_cdf(p)
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    low, high = 0.0, 2.0
    while t_cdf(high, df) < p:
        low, high = high, high * 4.0
    t = min(max(_STANDARD_NORMAL.inv_cdf(p), low), high)
    for _ in range(100):  # Newton's method, falling back to bisection outside the bracket
        error = t_cdf(t, df) - p
        if error < 0:
            low = t
        else:
            high = t
        step = error / _t_pdf(t, df)
        candidate = t - step
        if not low < candidate < high:
            candidate = (low + high) / 2.0
        if abs(candidate - t) <= 1e-13 * max(1.0, abs(t)):
            return candidate
        t = candidate
    return t  # pragma: no cover - Newton converges in a handful of steps


def _t_pdf(t: float, df: float) -> float:
    log_norm = math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1.0) / 2.0 * math.log1p(t * t / df))


# --- intervals and tests ---------------------------------------------------------------


def mean_ci(acc: Welford, confidence: float = 0.95) -> Interval | None:
    """t-based confidence interval of the mean; ``None`` with fewer than two values."""
    if acc.n < 2 or not math.isfinite(acc.variance) or acc.variance < 0:
        return None
    half = t_ppf(0.5 + confidence / 2.0, acc.n - 1) * math.sqrt(acc.variance / acc.n)
    return Interval(acc.mean - half, acc.mean + half)


def welch_t_test(a: Welford, b: Welford) -> TestResult | None:
    """Welch's unequal-variances t-test of mean(a) - mean(b); ``None`` below two values each.

    Degrees of freedom by Welch–Satterthwaite. When both variances are zero the
    means are compared exactly: equal means give p = 1, different ones p = 0.
    """
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.variance / a.n, b.variance / b.n
    se2 = va + vb
    diff = a.mean - b.mean
    if se2 == 0.0:
        if diff == 0.0:
            return TestResult(0.0, 1.0, float(a.n + b.n - 2))
        return TestResult(math.copysign(math.inf, diff), 0.0, float(a.n + b.n - 2))
    df = se2 * se2 / (va * va / (a.n - 1) + vb * vb / (b.n - 1))
    t = diff / math.sqrt(se2)
    return TestResult(t, _two_sided_t_p(t, df), df)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval | None:
    """Wilson score interval of a binomial proportion; ``None`` when n is 0."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    z = _STANDARD_NORMAL.inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Interval(low, high)


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> TestResult | None:
    """Pooled two-proportion z-test of x1/n1 - x2/n2 (two-sided); ``None`` if a group is empty."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    diff = x1 / n1 - x2 / n2
    if se == 0.0:  # both 0% or both 100%: identical
        return TestResult(0.0, 1.0)
    z = diff / se
    return TestResult(z, 2.0 * _STANDARD_NORMAL.cdf(-abs(z)))
