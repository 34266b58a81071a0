"""A/B experiments: sticky variant assignment and bounded in-memory outcome statistics.

* :func:`assign` picks a variant by weight. With a sticky key (see
  :func:`sticky_key`) the pick is a pure function of the experiment name and
  the key — ``blake2b(f"{name}:{key}")`` mapped onto [0, total weight) — so a
  caller stays on one variant across requests, processes and restarts, and
  changing one experiment's name reshuffles only that experiment. Without a
  key the pick is random by weight. A stopped experiment always returns its
  winner.
* :class:`ExperimentStore` aggregates outcomes per variant as running
  statistics (Welford accumulators, counters and sums — never sample lists)
  and remembers the experiment/variant of the most recent request ids in a
  bounded LRU so feedback scores posted later can be attributed.
  :meth:`ExperimentStore.report` turns them into an :class:`ExperimentReport`
  with confidence intervals and significance tests against the control (the
  first variant).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from uniinfer.config.routing import ExperimentConfig, VariantConfig
from uniinfer.routing.stats import (
    Interval,
    TestResult,
    Welford,
    mean_ci,
    two_proportion_z_test,
    welch_t_test,
    wilson_interval,
)

__all__ = [
    "Comparison",
    "ExperimentReport",
    "ExperimentStore",
    "MeanSummary",
    "VariantReport",
    "assign",
    "sticky_key",
]

_UNIT = float(1 << 53)


def assign(exp: ExperimentConfig, key: str | None, rng: random.Random | None = None) -> VariantConfig:
    """The variant serving this request: the winner, a sticky pick for ``key``, or a random pick."""
    if exp.status == "stopped":
        return next(v for v in exp.variants if v.name == exp.winner)
    total = sum(v.weight for v in exp.variants)
    if key is not None:
        unit = _unit_hash(f"{exp.name}:{key}")
    else:
        unit = rng.random() if rng is not None else random.random()
    return _pick(exp.variants, unit * total)


def _unit_hash(text: str) -> float:
    """A stable, uniform number in [0, 1) from the top 53 bits of a BLAKE2b digest."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / _UNIT


def _pick(variants: Sequence[VariantConfig], point: float) -> VariantConfig:
    """The variant whose cumulative-weight segment contains ``point``."""
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight
        if point < cumulative:
            return variant
    return variants[-1]  # float rounding at the very top of the range


def sticky_key(
    exp: ExperimentConfig, user: str | None, metadata: Mapping[str, str], headers: Mapping[str, str]
) -> str | None:
    """The value that keeps a caller on one variant per ``exp.sticky_by``; ``None`` (random) if absent.

    ``user`` is the request's ``user`` field, ``metadata.<key>`` a request
    metadata entry, ``header.<name>`` a request header (``headers`` has
    lower-case names). Empty values count as absent.
    """
    by = exp.sticky_by
    if by == "user":
        return user or None
    kind, _, name = by.partition(".")
    if kind == "metadata":
        return metadata.get(name) or None
    return headers.get(name.lower()) or None


# --- the store ----------------------------------------------------------------------------


@dataclass(slots=True)
class _VariantStats:
    requests: int = 0
    errors: int = 0
    #: Latency, TTFT and token counts cover successful requests only.
    latency: Welford = field(default_factory=Welford)
    ttft: Welford = field(default_factory=Welford)
    prompt_tokens: Welford = field(default_factory=Welford)
    completion_tokens: Welford = field(default_factory=Welford)
    cost_total: float = 0.0
    #: Requests whose cost was known (the mean cost divides by this).
    cost_known: int = 0
    feedback: Welford = field(default_factory=Welford)


@dataclass(slots=True)
class _Recent:
    experiment: str
    variant: str
    score: float | None = None


class ExperimentStore:
    """Per-variant outcome statistics in bounded memory; safe to share between threads.

    Memory is O(variants + ``max_requests``): the statistics are running
    aggregates, and only the last ``max_requests`` request ids are remembered
    for feedback. At most ``max_variants`` (experiment, variant) series are
    kept; outcomes for further ones are dropped.
    """

    def __init__(
        self,
        experiments: Iterable[ExperimentConfig] = (),
        *,
        max_requests: int = 100_000,
        max_variants: int = 1_000,
    ) -> None:
        self._series: dict[str, dict[str, _VariantStats]] = {}
        self._recent: OrderedDict[str, _Recent] = OrderedDict()
        self._max_requests = max_requests
        self._max_variants = max_variants
        self._variant_count = 0
        self._lock = threading.Lock()
        for exp in experiments:
            self.register(exp)

    def register(self, exp: ExperimentConfig) -> None:
        """Declare an experiment's variants up front so reports list them in config order (control first)."""
        with self._lock:
            for variant in exp.variants:
                self._stats(exp.name, variant.name)

    def experiments(self) -> list[str]:
        with self._lock:
            return list(self._series)

    def record(
        self,
        experiment: str,
        variant: str,
        request_id: str,
        *,
        latency_s: float,
        ttft_s: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        cost_usd: float | None,
        error: bool,
    ) -> None:
        """Add one finished request's outcome."""
        with self._lock:
            stats = self._stats(experiment, variant)
            if stats is None:
                return
            stats.requests += 1
            if error:
                stats.errors += 1
            else:
                stats.latency.add(latency_s)
                if ttft_s is not None:
                    stats.ttft.add(ttft_s)
                stats.prompt_tokens.add(prompt_tokens)
                stats.completion_tokens.add(completion_tokens)
            if cost_usd is not None:
                stats.cost_total += cost_usd
                stats.cost_known += 1
            self._recent[request_id] = _Recent(experiment, variant)
            self._recent.move_to_end(request_id)
            while len(self._recent) > self._max_requests:
                self._recent.popitem(last=False)

    def feedback(self, request_id: str, score: float) -> bool:
        """Attribute a score to a recent request's variant; ``False`` if the id is unknown or forgotten.

        A second score for the same request replaces the first.
        """
        if not math.isfinite(score):
            raise ValueError("a feedback score must be a finite number")
        with self._lock:
            recent = self._recent.get(request_id)
            if recent is None:
                return False
            self._recent.move_to_end(request_id)
            stats = self._series[recent.experiment][recent.variant]
            if recent.score is not None:
                stats.feedback.remove(recent.score)
            stats.feedback.add(score)
            recent.score = score
            return True

    def report(self, name: str) -> ExperimentReport:
        """Statistics of every variant of ``name`` and tests against the first (control); KeyError if unknown."""
        with self._lock:
            series = self._series.get(name)
            if series is None:
                raise KeyError(name)
            variants = [_variant_report(v, s) for v, s in series.items()]
            control_name, control = next(iter(series.items()))
            comparisons = [
                _compare(v, s, control_name, control) for v, s in series.items() if v != control_name
            ]
        return ExperimentReport(name=name, variants=variants, comparisons=comparisons)

    def _stats(self, experiment: str, variant: str) -> _VariantStats | None:
        series = self._series.setdefault(experiment, {})
        stats = series.get(variant)
        if stats is None:
            if self._variant_count >= self._max_variants:
                if not series:
                    del self._series[experiment]
                return None
            stats = series[variant] = _VariantStats()
            self._variant_count += 1
        return stats


# --- reports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeanSummary:
    """A mean with its 95% t-based confidence interval (``None`` where undefined)."""

    n: int
    mean: float | None
    ci: Interval | None

    @classmethod
    def of(cls, acc: Welford) -> MeanSummary:
        return cls(acc.n, acc.mean if acc.n else None, mean_ci(acc))

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": _jsonable(self.mean), "ci": _jsonable(self.ci)}


@dataclass(frozen=True, slots=True)
class VariantReport:
    variant: str
    requests: int
    errors: int
    error_rate: float | None
    #: 95% Wilson interval of the error rate.
    error_rate_ci: Interval | None
    latency_s: MeanSummary
    ttft_s: MeanSummary
    mean_prompt_tokens: float | None
    mean_completion_tokens: float | None
    total_cost_usd: float
    #: Mean over the requests whose cost was known.
    mean_cost_usd: float | None
    feedback: MeanSummary

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Comparison:
    """A variant against the control: Welch's t-tests (latency, feedback) and a z-test (error rate).

    Statistics are variant minus control; a test is ``None`` with too little data.
    """

    variant: str
    control: str
    latency: TestResult | None
    error_rate: TestResult | None
    feedback: TestResult | None

    def to_dict(self, alpha: float = 0.05) -> dict[str, Any]:
        tests = {"latency": self.latency, "error_rate": self.error_rate, "feedback": self.feedback}
        return {
            "variant": self.variant,
            "control": self.control,
            **{name: _test(result, alpha) for name, result in tests.items()},
        }


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    name: str
    #: Config order when the experiment was registered, else first-seen order; the first is the control.
    variants: list[VariantReport]
    comparisons: list[Comparison]
    alpha: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.name,
            "alpha": self.alpha,
            "variants": [v.to_dict() for v in self.variants],
            "comparisons": [c.to_dict(self.alpha) for c in self.comparisons],
        }


def _variant_report(name: str, s: _VariantStats) -> VariantReport:
    return VariantReport(
        variant=name,
        requests=s.requests,
        errors=s.errors,
        error_rate=s.errors / s.requests if s.requests else None,
        error_rate_ci=wilson_interval(s.errors, s.requests),
        latency_s=MeanSummary.of(s.latency),
        ttft_s=MeanSummary.of(s.ttft),
        mean_prompt_tokens=s.prompt_tokens.mean if s.prompt_tokens.n else None,
        mean_completion_tokens=s.completion_tokens.mean if s.completion_tokens.n else None,
        total_cost_usd=s.cost_total,
        mean_cost_usd=s.cost_total / s.cost_known if s.cost_known else None,
        feedback=MeanSummary.of(s.feedback),
    )


def _compare(name: str, s: _VariantStats, control_name: str, control: _VariantStats) -> Comparison:
    return Comparison(
        variant=name,
        control=control_name,
        latency=welch_t_test(s.latency, control.latency),
        error_rate=two_proportion_z_test(s.errors, s.requests, control.errors, control.requests),
        feedback=welch_t_test(s.feedback, control.feedback),
    )


# --- formatting ---------------------------------------------------------------------------


def _jsonable(x: object) -> object:
    """JSON-friendly: intervals as [low, high], summaries as dicts, non-finite floats as null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Interval):
        return [x.low, x.high]
    if isinstance(x, MeanSummary):
        return x.to_dict()
    return x


def _test(result: TestResult | None, alpha: float) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "statistic": _jsonable(result.statistic),
        "df": _jsonable(result.df),
        "p_value": result.p_value,
        "significant": result.significant(alpha),
    }
