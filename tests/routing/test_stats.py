"""Statistics against published reference values and closed forms."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uniinfer.routing.stats import (
    Welford,
    mean_ci,
    regularized_beta,
    t_cdf,
    t_ppf,
    two_proportion_z_test,
    welch_t_test,
    wilson_interval,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def acc(values: list[float]) -> Welford:
    w = Welford()
    for v in values:
        w.add(v)
    return w


# --- t distribution ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "critical"),
    [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042), (1000, 1.962), (math.inf, 1.960)],
)
def test_t_critical_values_match_the_tables(df: float, critical: float) -> None:
    assert t_ppf(0.975, df) == pytest.approx(critical, abs=5e-4)
    assert t_ppf(0.025, df) == pytest.approx(-critical, abs=5e-4)


def test_large_df_tends_to_the_normal() -> None:
    assert t_ppf(0.975, 1e6) == pytest.approx(1.959964, abs=1e-5)
    assert t_ppf(0.995, 60) == pytest.approx(2.660, abs=1e-3)


@pytest.mark.parametrize("t", [-50.0, -3.0, -1.0, -0.2, 0.0, 0.5, 1.0, 2.5, 40.0])
def test_t_cdf_matches_closed_forms(t: float) -> None:
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_cdf_edges() -> None:
    assert t_cdf(math.inf, 5) == 1.0
    assert t_cdf(-math.inf, 5) == 0.0
    assert t_cdf(0.0, 7.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_cdf(1.0, 0)
    with pytest.raises(ValueError, match="strictly between"):
        t_ppf(1.0, 3)


@given(st.floats(min_value=1e-6, max_value=1 - 1e-6), st.floats(min_value=0.5, max_value=1e4))
def test_t_ppf_inverts_t_cdf(p: float, df: float) -> None:
    assert t_cdf(t_ppf(p, df), df) == pytest.approx(p, rel=1e-7, abs=1e-12)


@given(st.floats(min_value=0.0, max_value=1.0))
def test_regularized_beta_closed_forms(x: float) -> None:
    assert regularized_beta(1, 1, x) == pytest.approx(x, abs=1e-12)
    assert regularized_beta(3, 1, x) == pytest.approx(x**3, abs=1e-12)
    assert regularized_beta(1, 4, x) == pytest.approx(1 - (1 - x) ** 4, abs=1e-12)
    assert regularized_beta(2.5, 0.5, x) == pytest.approx(1 - regularized_beta(0.5, 2.5, 1 - x), abs=1e-12)


def test_regularized_beta_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="positive"):
        regularized_beta(0, 1, 0.5)


# --- Welford -------------------------------------------------------------------------------


@given(st.lists(finite, min_size=2, max_size=200))
def test_welford_matches_a_direct_computation(values: list[float]) -> None:
    w = acc(values)
    assert w.n == len(values)
    assert w.mean == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-6)
    assert w.variance == pytest.approx(statistics.variance(values), rel=1e-6, abs=1e-3)


@given(st.lists(finite, max_size=50), st.lists(finite, max_size=50))
def test_welford_merge_equals_one_pass(left: list[float], right: list[float]) -> None:
    merged = acc(left)
    merged.merge(acc(right))
    whole = acc(left + right)
    assert merged.n == whole.n
    assert merged.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-6)
    assert merged.m2 == pytest.approx(whole.m2, rel=1e-6, abs=1e-3)


@given(st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=1, max_size=50), st.data())
def test_welford_remove_undoes_add(values: list[float], data: st.DataObject) -> None:
    drop = data.draw(st.sampled_from(values))
    w = acc(values)
    w.remove(drop)
    rest = list(values)
    rest.remove(drop)
    expected = acc(rest)
    assert w.n == expected.n
    assert w.mean == pytest.approx(expected.mean, abs=1e-6)
    assert w.m2 == pytest.approx(expected.m2, rel=1e-6, abs=1e-4)


def test_welford_small_samples() -> None:
    w = Welford()
    assert math.isnan(w.variance)
    w.add(3.0)
    assert (w.n, w.mean) == (1, 3.0)
    assert math.isnan(w.stdev)
    assert mean_ci(w) is None


def test_mean_ci_uses_student_t() -> None:
    ci = mean_ci(acc([1.0, 3.0]))  # mean 2, s = sqrt(2), se = 1, t(0.975, 1) = 12.706
    assert ci is not None
    assert (ci.low, ci.high) == pytest.approx((2 - 12.7062, 2 + 12.7062), abs=1e-3)
    # mean 10.4, s^2 = 12.4 / 9, t(0.975, 9) = 2.2622 (tables): 10.4 +- 2.2622 * sqrt(12.4 / 90)
    ci = mean_ci(acc([11, 9, 10, 11, 10, 12, 9, 11, 12, 9]))
    assert ci is not None
    assert (ci.low, ci.high) == pytest.approx((9.5603, 11.2397), abs=1e-4)
    assert 10.4 in ci


# --- Welch's t-test ------------------------------------------------------------------------

TS1 = [11, 9, 10, 11, 10, 12, 9, 11, 12, 9]
TS2 = [11, 13, 10, 13, 12, 9, 11, 12, 12, 11]
WIKI_A1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
WIKI_A2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
WIKI_B1 = [17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8]
WIKI_B2 = [21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8, 20.7, 21.7, 21.5, 22.5, 23.6, 21.5]
WIKI_B2 += [22.5, 23.5, 21.5, 21.8]
WIKI_C1 = [19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0]
WIKI_C2 = [28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7, 23.2, 17.5, 20.6, 18.0, 23.9, 21.6]
WIKI_C2 += [24.3, 20.4, 23.9, 13.3]


def test_welch_matches_r_t_test() -> None:
    # R: t.test(ts1, ts2) -> t = -1.8325, df = 17.9, p-value = 0.08356
    result = welch_t_test(acc(TS1), acc(TS2))
    assert result is not None
    assert result.statistic == pytest.approx(-1.8325, abs=1e-4)
    assert result.df == pytest.approx(17.9, abs=0.01)
    assert result.p_value == pytest.approx(0.08356, abs=1e-5)
    assert not result.significant()


@pytest.mark.parametrize(
    ("a", "b", "t", "df", "p"),
    [
        (WIKI_A1, WIKI_A2, -2.46, 24.9, 0.021),  # Wikipedia "Welch's t-test", examples
        (WIKI_B1, WIKI_B2, -1.57, 9.9, 0.149),
        (WIKI_C1, WIKI_C2, -2.22, 24.5, 0.036),
    ],
)
def test_welch_matches_textbook_examples(
    a: list[float], b: list[float], t: float, df: float, p: float
) -> None:
    result = welch_t_test(acc(a), acc(b))
    assert result is not None
    assert result.statistic == pytest.approx(t, abs=0.01)  # published to 2 decimals
    assert result.df == pytest.approx(df, abs=0.1)
    assert result.p_value == pytest.approx(p, abs=0.001)
    assert result.significant() == (p < 0.05)


def test_welch_degenerate_cases() -> None:
    assert welch_t_test(acc([1.0]), acc([1.0, 2.0])) is None
    same = welch_t_test(acc([2.0, 2.0]), acc([2.0, 2.0, 2.0]))
    assert same is not None
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    apart = welch_t_test(acc([3.0, 3.0]), acc([2.0, 2.0]))
    assert apart is not None
    assert apart.p_value == 0.0
    assert apart.statistic == math.inf
    assert apart.significant()


# --- proportions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [  # Newcombe (1998), "Two-sided confidence intervals for the single proportion", method 3
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe(x: int, n: int, low: float, high: float) -> None:
    ci = wilson_interval(x, n)
    assert ci is not None
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-4)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) is None
    full = wilson_interval(10, 10)
    assert full is not None
    assert full.high == 1.0
    assert full.low == pytest.approx(1 - 0.2775, abs=1e-4)  # mirror of 0/10: z^2 / (n + z^2)
    with pytest.raises(ValueError, match="between 0 and n"):
        wilson_interval(11, 10)


def test_two_proportion_z_test() -> None:
    # pooled p = 0.375, se = sqrt(0.375 * 0.625 * (1/100 + 1/100)) = 0.068465
    result = two_proportion_z_test(45, 100, 30, 100)
    assert result is not None
    assert result.statistic == pytest.approx(0.15 / 0.0684653, rel=1e-5)
    assert result.p_value == pytest.approx(0.02846, abs=2e-5)
    assert result.significant()
    assert result.df is None
    reverse = two_proportion_z_test(30, 100, 45, 100)
    assert reverse is not None
    assert reverse.statistic == pytest.approx(-result.statistic)
    assert reverse.p_value == pytest.approx(result.p_value)


def test_two_proportion_degenerate_cases() -> None:
    assert two_proportion_z_test(0, 0, 1, 10) is None
    none_failed = two_proportion_z_test(0, 50, 0, 70)
    assert none_failed is not None
    assert none_failed.p_value == 1.0


def test_a_deployments_minute_window_holds_one_minute_whatever_reads_it() -> None:
    """Its buckets went only when something asked for the totals (the usage_headroom strategy):
    under any other strategy a deployment kept one per second of traffic, for ever."""
    from uniinfer.routing.state import MinuteWindow

    now = [1000.0]
    window = MinuteWindow(lambda: now[0])
    for _ in range(3000):  # fifty minutes of one request a second, never read
        window.add(requests=1, tokens=10)
        now[0] += 1
    assert len(window._buckets) <= 60
    assert window.totals() == (59, 590)  # the last minute's, second 59 included
