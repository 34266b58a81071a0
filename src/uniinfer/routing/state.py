"""What the router observes about each deployment: load, latency, limits, health.

One :class:`DeploymentState` per ``provider/model`` deployment, shared by every
group and profile that uses it. All of it is in-process and O(1) per request;
limits shared across replicas arrive with the Redis-backed limits issue.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from uniinfer.config.routing import BreakerConfig
from uniinfer.routing.breaker import BreakerState, CircuitBreaker, OnChange

__all__ = ["DeploymentState", "MinuteWindow"]

#: Weight of the newest sample in the latency averages.
EWMA_ALPHA = 0.2


class MinuteWindow:
    """Requests and tokens over the last 60 seconds, in one-second buckets."""

    __slots__ = ("_buckets", "_clock", "_requests", "_tokens")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: deque[list[int]] = deque()  # [second, requests, tokens]
        self._requests = 0  # running sums of the buckets
        self._tokens = 0

    def add(self, requests: int = 0, tokens: int = 0) -> None:
        second = int(self._clock())
        if not self._buckets or self._buckets[-1][0] != second:
            self._expire(second)  # a new second: what left the window goes (60 buckets at most)
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += requests
        bucket[2] += tokens
        self._requests += requests
        self._tokens += tokens

    def totals(self) -> tuple[int, int]:
        self._expire(int(self._clock()))
        return self._requests, self._tokens

    def _expire(self, second: int) -> None:
        """Drop the buckets older than the 60 seconds ending at ``second``."""
        horizon = second - 59
        buckets = self._buckets
        while buckets and buckets[0][0] < horizon:
            _, requests, tokens = buckets.popleft()
            self._requests -= requests
            self._tokens -= tokens


@dataclass(slots=True)
class DeploymentState:
    label: str
    breaker: CircuitBreaker
    window: MinuteWindow
    clock: Callable[[], float]
    in_flight: int = 0
    latency: float | None = None
    ttft: float | None = None
    #: A 429's Retry-After: skipped until then.
    cooldown_until: float = 0.0
    #: Why it cools down, when its account is out of quota (said again while it waits).
    out_of_quota: str | None = None
    #: A 429 without Retry-After: tried after the group's other deployments until then (not
    #: skipped: with no word on how long, a deployment alone in its group is tried as ever).
    throttled_until: float = 0.0

    @classmethod
    def create(
        cls,
        label: str,
        breaker: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> DeploymentState:
        return cls(
            label,
            CircuitBreaker(label, breaker, clock=clock, on_change=on_change),
            MinuteWindow(clock),
            clock,
        )

    def available(self) -> bool:
        return self.breaker.available() and self.clock() >= self.cooldown_until

    def cool_down(self, seconds: float, *, quota: str | None = None) -> None:
        """Skip this deployment for ``seconds`` (a Retry-After), or longer if it already waits
        longer (a later, shorter answer does not shorten an account's quota wait)."""
        until = self.clock() + seconds
        if until > self.cooldown_until:
            self.cooldown_until = until
            self.out_of_quota = quota
        elif quota is not None:
            self.out_of_quota = quota

    def back_in(self, now: float) -> float | None:
        """Seconds until this deployment may take requests again: after its 429's wait and its
        open circuit's cooldown, whichever ends later; None when neither says (a probe in flight)."""
        waits = [w for w in (self.cooldown_until - now, self.breaker.reopens_in()) if w is not None and w > 0]
        if waits:
            return max(waits)
        return None if self.breaker.state is BreakerState.HALF_OPEN else 0.0

    def count_tokens(self, tokens: int) -> None:
        """An answer's tokens, against the deployment's tokens-per-minute."""
        self.window.add(tokens=tokens)

    def stream_ended(self, *, tokens: int, failed: bool, cancelled: bool = False) -> None:
        """A stream the router handed out ended: free its slot, count its tokens and health.

        The breaker hears of a stream here, as one sample: its first chunk proved less
        than its end does (a deployment cutting every stream half-way must open its
        circuit; only a half-open circuit's probe was settled at the first chunk, so a
        stream ending now is no probe, and a half-open circuit ignores it). A stream its
        caller cut (``cancelled``) says nothing of the deployment's health.
        """
        self.in_flight -= 1
        self.window.add(tokens=tokens)
        if not cancelled:
            self.breaker.record(not failed)

    def observe_latency(self, seconds: float, *, first_token: bool = False) -> None:
        if first_token:
            self.ttft = seconds if self.ttft is None else self.ttft + EWMA_ALPHA * (seconds - self.ttft)
        else:
            self.latency = (
                seconds if self.latency is None else self.latency + EWMA_ALPHA * (seconds - self.latency)
            )
