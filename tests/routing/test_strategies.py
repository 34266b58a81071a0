"""Strategies are pure functions of observed state; properties checked with hypothesis."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from uniinfer.config.routing import RetryConfig
from uniinfer.routing import strategies
from uniinfer.routing.retry import backoff
from uniinfer.routing.strategies import View, headroom, order

RNG = random.Random(7)


def indices(views: list[View]) -> list[int]:
    return [v.index for v in views]


def test_priority_is_configuration_order() -> None:
    views = [View(2), View(0), View(1)]
    assert indices(order("priority", views, RNG)) == [0, 1, 2]


def test_least_inflight() -> None:
    views = [View(0, in_flight=3), View(1, in_flight=0), View(2, in_flight=1)]
    assert indices(order("least_inflight", views, RNG)) == [1, 2, 0]


def test_lowest_latency_measures_unknown_deployments_first() -> None:
    views = [View(0, latency=0.5), View(1, latency=0.1), View(2, latency=None)]
    assert indices(order("lowest_latency", views, RNG)) == [2, 1, 0]


def test_lowest_cost_puts_unpriced_last() -> None:
    views = [View(0, cost=None), View(1, cost=0.02), View(2, cost=0.001)]
    assert indices(order("lowest_cost", views, RNG)) == [2, 1, 0]
    assert strategies.estimate_cost(1000, 500, 0.15, 0.6) == (1000 * 0.15 + 500 * 0.6) / 1e6
    assert strategies.estimate_cost(1000, 500, None, None) is None


def test_usage_headroom_avoids_deployments_at_their_limit() -> None:
    assert abs(headroom(90, 0, 100, None) - 0.1) < 1e-9
    assert headroom(0, 0, None, None) == 1.0
    assert headroom(10, 9_000, 100, 10_000) < 0.11
    views = [View(0, headroom=0.0), View(1, headroom=0.3), View(2, headroom=0.9)]
    assert indices(order("usage_headroom", views, RNG)) == [2, 1, 0]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(min_value=0.1, max_value=10), min_size=2, max_size=5), st.integers(0, 2**32 - 1))
def test_weighted_first_pick_follows_the_weights(weights: list[float], seed: int) -> None:
    rng = random.Random(seed)
    views = [View(i, weight=w) for i, w in enumerate(weights)]
    draws = 4000
    first = Counter(order("weighted", views, rng)[0].index for _ in range(draws))
    total = sum(weights)
    for i, w in enumerate(weights):
        p = w / total
        sigma = (draws * p * (1 - p)) ** 0.5
        assert abs(first[i] - draws * p) <= 4.5 * sigma + 1


@given(
    st.sampled_from(list(strategies.STRATEGIES)),
    st.lists(
        st.builds(
            View,
            index=st.integers(0, 20),
            weight=st.floats(min_value=0.1, max_value=5),
            in_flight=st.integers(0, 50),
            latency=st.none() | st.floats(min_value=0, max_value=10),
            cost=st.none() | st.floats(min_value=0, max_value=1),
            headroom=st.floats(min_value=-1, max_value=1),
        ),
        max_size=6,
        unique_by=lambda v: v.index,
    ),
)
def test_every_strategy_returns_a_permutation_of_what_it_was_given(name: str, views: list[View]) -> None:
    result = order(name, views, random.Random(1))  # type: ignore[arg-type]
    assert sorted(indices(result)) == sorted(indices(views))


@given(st.integers(1, 10), st.none() | st.floats(min_value=0, max_value=30))
def test_backoff_grows_is_jittered_and_honours_retry_after(round_: int, retry_after: float | None) -> None:
    config = RetryConfig(initial_backoff_seconds=0.25, max_backoff_seconds=8, jitter=0.5)
    wait = backoff(round_, config, random.Random(round_), retry_after)
    base = min(8.0, 0.25 * 2 ** (round_ - 1))
    assert wait >= (retry_after or 0.0)
    assert wait >= base * 0.5 or (retry_after or 0) >= wait
    assert wait <= max(base, retry_after or 0.0)
