"""Load-balancing strategies: small pure functions from observed state to an order.

Each strategy takes a snapshot (:class:`View`) of every available deployment
of a group and returns the order to try them in: the first is the pick, the
rest are the fallbacks within the group. They never see unavailable
deployments (open circuits, 429 cool-downs): the router filters those first,
so no strategy can pick one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from uniinfer.config.routing import Strategy

__all__ = ["STRATEGIES", "View", "order"]

#: Completion tokens assumed for cost ranking when the request sets no limit.
DEFAULT_COMPLETION_TOKENS = 500


@dataclass(frozen=True, slots=True)
class View:
    """One available deployment as a strategy sees it."""

    index: int  # position in the group's configuration (priority order)
    weight: float = 1.0
    in_flight: int = 0
    #: EWMA of seconds (total for plain requests, to first token for streams); None: no data yet.
    latency: float | None = None
    #: Estimated USD for this request; None: no prices configured.
    cost: float | None = None
    #: Fraction of the RPM/TPM limits still free in the last minute (1.0 without limits).
    headroom: float = 1.0


def priority(views: Sequence[View], rng: random.Random) -> list[View]:
    return sorted(views, key=lambda v: v.index)


def weighted(views: Sequence[View], rng: random.Random) -> list[View]:
    """Weighted random order without replacement (Efraimidis-Spirakis keys)."""
    return sorted(views, key=lambda v: -math.log(1.0 - rng.random()) / v.weight)


def least_inflight(views: Sequence[View], rng: random.Random) -> list[View]:
    return sorted(views, key=lambda v: (v.in_flight, v.index))


def lowest_latency(views: Sequence[View], rng: random.Random) -> list[View]:
    """Fastest EWMA first; deployments without data first of all, so they get measured."""
    return sorted(views, key=lambda v: (v.latency is not None, v.latency or 0.0, v.index))


def lowest_cost(views: Sequence[View], rng: random.Random) -> list[View]:
    """Cheapest estimate first; deployments without prices last, in priority order."""
    return sorted(views, key=lambda v: (v.cost is None, v.cost or 0.0, v.index))


def usage_headroom(views: Sequence[View], rng: random.Random) -> list[View]:
    """Most free RPM/TPM first; deployments at their limit last."""
    return sorted(views, key=lambda v: (v.headroom <= 0.0, -v.headroom, v.index))


STRATEGIES: dict[str, Callable[[Sequence[View], random.Random], list[View]]] = {
    "priority": priority,
    "weighted": weighted,
    "least_inflight": least_inflight,
    "lowest_latency": lowest_latency,
    "lowest_cost": lowest_cost,
    "usage_headroom": usage_headroom,
}


def order(strategy: Strategy, views: Sequence[View], rng: random.Random) -> list[View]:
    return STRATEGIES[strategy](views, rng)


def estimate_cost(
    prompt_tokens: int,
    completion_tokens: int,
    input_per_mtok: float | None,
    output_per_mtok: float | None,
) -> float | None:
    if input_per_mtok is None and output_per_mtok is None:
        return None
    return (prompt_tokens * (input_per_mtok or 0.0) + completion_tokens * (output_per_mtok or 0.0)) / 1e6


def headroom(used_requests: int, used_tokens: int, rpm: int | None, tpm: int | None) -> float:
    free = 1.0
    if rpm:
        free = min(free, 1.0 - used_requests / rpm)
    if tpm:
        free = min(free, 1.0 - used_tokens / tpm)
    return free
