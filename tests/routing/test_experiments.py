"""Experiments: sticky assignment, weighted picks and the bounded outcome store."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uniinfer.config.routing import ExperimentConfig
from uniinfer.routing.experiments import ExperimentStore, assign, sticky_key


def experiment(weights: list[float] | None = None, **fields: Any) -> ExperimentConfig:
    weights = weights or [1.0, 1.0]
    variants = [{"name": f"v{i}", "model": f"group-{i}", "weight": w} for i, w in enumerate(weights)]
    return ExperimentConfig.model_validate({"name": "exp", "model": "chat", "variants": variants, **fields})


def within_sigmas(counts: Counter[str], exp: ExperimentConfig, n: int, sigmas: float) -> None:
    total = sum(v.weight for v in exp.variants)
    for variant in exp.variants:
        p = variant.weight / total
        sd = math.sqrt(n * p * (1 - p))
        assert abs(counts[variant.name] - n * p) <= sigmas * sd, (variant.name, counts, n * p)


weights_st = st.lists(st.floats(min_value=0.1, max_value=10.0), min_size=2, max_size=5)


# --- assignment ----------------------------------------------------------------------------


def test_stopped_experiment_returns_the_winner() -> None:
    exp = experiment([1.0, 99.0], status="stopped", winner="v0")
    assert {assign(exp, key).name for key in ("a", "b", None, "c")} == {"v0"}


@given(weights_st, st.text(max_size=40))
def test_sticky_assignment_is_stable(weights: list[float], key: str) -> None:
    exp = experiment(weights)
    first = assign(exp, key)
    assert all(assign(exp, key, random.Random(seed)) == first for seed in range(5))


def test_sticky_hash_is_blake2b_of_name_and_key() -> None:
    """Not Python's salted hash(): the same key maps the same way in every process."""
    exp = experiment([1.0, 3.0])
    for key in ("alice", "bob", "", "ключ", "user-42"):
        digest = hashlib.blake2b(f"exp:{key}".encode(), digest_size=8).digest()
        point = (int.from_bytes(digest, "big") >> 11) / 2**53 * 4.0
        assert assign(exp, key).name == ("v0" if point < 1.0 else "v1")


def test_sticky_distribution_follows_the_weights() -> None:
    exp = experiment([1.0, 2.0, 5.0])
    n = 8000
    counts = Counter(assign(exp, f"user-{i}").name for i in range(n))
    within_sigmas(counts, exp, n, 3.0)


@settings(max_examples=25, derandomize=True, deadline=None)
@given(weights_st, st.text(min_size=1, max_size=8))
def test_sticky_distribution_property(weights: list[float], prefix: str) -> None:
    exp = experiment(weights)
    n = 3000
    counts = Counter(assign(exp, f"{prefix}/{i}").name for i in range(n))
    within_sigmas(counts, exp, n, 4.5)  # many variants x examples: a wider band keeps it non-flaky


def test_experiment_names_shuffle_independently() -> None:
    a, b = experiment(), experiment().model_copy(update={"name": "other"})
    same = sum(assign(a, f"k{i}") == assign(b, f"k{i}") for i in range(2000))
    assert 850 < same < 1150  # independent halves agree about half of the time


@settings(max_examples=30, deadline=None)
@given(weights_st, st.integers(min_value=0, max_value=2**32))
def test_random_assignment_follows_the_weights(weights: list[float], seed: int) -> None:
    exp = experiment(weights)
    rng = random.Random(seed)
    n = 3000
    counts = Counter(assign(exp, None, rng).name for _ in range(n))
    within_sigmas(counts, exp, n, 4.5)


@given(weights_st, st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_weighted_pick_lands_in_the_variants_segment(weights: list[float], unit: float) -> None:
    exp = experiment(weights)

    class Fixed(random.Random):
        def random(self) -> float:
            return unit

    picked = assign(exp, None, Fixed())
    index = int(picked.name[1:])
    total = sum(weights)
    low = sum(weights[:index])
    assert low <= unit * total + 1e-9
    assert unit * total < low + weights[index] + 1e-9


def test_assignment_without_rng_uses_the_module_random() -> None:
    random.seed(7)
    assert assign(experiment(), None).name in {"v0", "v1"}


# --- sticky keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sticky_by", "expected"),
    [
        ("user", "u-1"),
        ("metadata.session_id", "s-9"),
        ("header.X-Session-Id", "h-3"),
        ("metadata.missing", None),
    ],
)
def test_sticky_key_sources(sticky_by: str, expected: str | None) -> None:
    exp = experiment(sticky_by=sticky_by)
    key = sticky_key(exp, "u-1", {"session_id": "s-9"}, {"x-session-id": "h-3"})
    assert key == expected


def test_empty_sticky_values_mean_no_key() -> None:
    assert sticky_key(experiment(), None, {}, {}) is None
    assert sticky_key(experiment(), "", {}, {}) is None
    assert sticky_key(experiment(sticky_by="metadata.s"), "u", {"s": ""}, {}) is None


# --- the store -----------------------------------------------------------------------------


def record(store: ExperimentStore, variant: str, rid: str, latency: float, **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "latency_s": latency,
        "ttft_s": latency / 2,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost_usd": 0.001,
        "error": False,
    }
    store.record("exp", variant, rid, **(fields | overrides))


def test_report_aggregates_per_variant() -> None:
    store = ExperimentStore([experiment()])
    record(store, "v0", "r1", 1.0)
    record(store, "v0", "r2", 3.0, ttft_s=None, cost_usd=None, prompt_tokens=300)
    record(store, "v0", "r3", 9.0, error=True, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)
    report = store.report("exp")
    assert [v.variant for v in report.variants] == ["v0", "v1"]
    v0, v1 = report.variants
    assert (v0.requests, v0.errors) == (3, 1)
    assert v0.error_rate == pytest.approx(1 / 3)
    assert v0.error_rate_ci is not None
    assert v0.error_rate_ci.low < 1 / 3 < v0.error_rate_ci.high
    assert v0.latency_s.n == 2  # errors excluded from latency
    assert v0.latency_s.mean == pytest.approx(2.0)
    assert v0.latency_s.ci is not None
    assert v0.latency_s.ci.low == pytest.approx(2.0 - 12.7062, abs=1e-3)
    assert v0.ttft_s.n == 1
    assert v0.ttft_s.ci is None
    assert v0.mean_prompt_tokens == pytest.approx(200.0)
    assert v0.mean_completion_tokens == pytest.approx(20.0)
    assert v0.total_cost_usd == pytest.approx(0.001)
    assert v0.mean_cost_usd == pytest.approx(0.0005)  # over the two requests with a known cost
    assert v1.requests == 0
    assert v1.error_rate is None
    assert v1.latency_s.mean is None


def test_feedback_is_attributed_by_request_id() -> None:
    store = ExperimentStore([experiment()])
    record(store, "v1", "r1", 1.0)
    record(store, "v1", "r2", 1.0)
    assert store.feedback("r1", 1.0)
    assert store.feedback("r2", 0.0)
    assert store.feedback("r2", 0.5)  # replaces the earlier score
    assert not store.feedback("nope", 1.0)
    fb = store.report("exp").variants[1].feedback
    assert fb.n == 2
    assert fb.mean == pytest.approx(0.75)
    with pytest.raises(ValueError, match="finite"):
        store.feedback("r1", math.nan)


def test_request_ids_are_forgotten_beyond_the_bound() -> None:
    store = ExperimentStore([experiment()], max_requests=3)
    for i in range(5):
        record(store, "v0", f"r{i}", 1.0)
    assert not store.feedback("r0", 1.0)
    assert not store.feedback("r1", 1.0)
    assert store.feedback("r2", 1.0)  # now the most recently used
    record(store, "v0", "r5", 1.0)  # evicts r3, the least recently used
    assert not store.feedback("r3", 1.0)
    assert store.feedback("r2", 0.0)
    assert store.report("exp").variants[0].requests == 6


def test_series_are_bounded() -> None:
    store = ExperimentStore(max_variants=2)
    store.record(
        "a",
        "x",
        "1",
        latency_s=1,
        ttft_s=None,
        prompt_tokens=1,
        completion_tokens=1,
        cost_usd=None,
        error=False,
    )
    store.record(
        "a",
        "y",
        "2",
        latency_s=1,
        ttft_s=None,
        prompt_tokens=1,
        completion_tokens=1,
        cost_usd=None,
        error=False,
    )
    store.record(
        "b",
        "z",
        "3",
        latency_s=1,
        ttft_s=None,
        prompt_tokens=1,
        completion_tokens=1,
        cost_usd=None,
        error=False,
    )
    assert store.experiments() == ["a"]
    assert not store.feedback("3", 1.0)
    with pytest.raises(KeyError):
        store.report("b")


def test_unregistered_experiments_list_variants_in_first_seen_order() -> None:
    store = ExperimentStore()
    record(store, "v1", "a", 1.0)
    record(store, "v0", "b", 1.0)
    report = store.report("exp")
    assert [v.variant for v in report.variants] == ["v1", "v0"]
    assert report.comparisons[0].control == "v1"


def test_comparisons_against_the_control() -> None:
    store = ExperimentStore([experiment([1.0, 1.0, 1.0])])
    rng = random.Random(1)
    for i in range(200):
        record(store, "v0", f"a{i}", rng.gauss(1.0, 0.1), error=i % 10 == 0)
        record(store, "v1", f"b{i}", rng.gauss(1.5, 0.1), error=i % 2 == 0)
        record(store, "v2", f"c{i}", rng.gauss(1.0, 0.1), error=i % 10 == 1)
        store.feedback(f"a{i}", rng.gauss(0.5, 0.2))
        store.feedback(f"b{i}", rng.gauss(0.5, 0.2))
    report = store.report("exp")
    by_variant = {c.variant: c for c in report.comparisons}
    assert set(by_variant) == {"v1", "v2"}
    slow = by_variant["v1"]
    assert slow.latency is not None
    assert slow.latency.statistic > 0  # variant minus control
    assert slow.latency.significant()
    assert slow.error_rate is not None
    assert slow.error_rate.significant()
    same = by_variant["v2"]
    assert same.error_rate is not None
    assert not same.error_rate.significant()
    assert same.feedback is None  # no feedback for v2


def test_report_serialises() -> None:
    store = ExperimentStore([experiment()])
    for i in range(20):
        record(store, "v0", f"a{i}", 1.0 + i / 100)
        record(store, "v1", f"b{i}", 2.0 + i / 100, error=i == 0)
    report = store.report("exp")
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["experiment"] == "exp"
    assert data["variants"][0]["latency_s"]["ci"][0] < data["variants"][0]["latency_s"]["mean"]
    assert data["variants"][1]["error_rate_ci"][1] > 0.05
    assert data["comparisons"][0]["latency"]["significant"] is True
    assert data["comparisons"][0]["feedback"] is None


def test_report_of_an_unknown_experiment() -> None:
    with pytest.raises(KeyError):
        ExperimentStore().report("missing")
