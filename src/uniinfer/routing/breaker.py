"""A per-deployment circuit breaker: closed -> open -> half-open (one probe) -> closed.

Closed, it counts outcomes in a sliding window of one-second buckets. When at
least ``min_requests`` fell in the window and the failure rate reaches
``failure_rate``, it opens: every strategy skips the deployment. After
``cooldown_seconds`` one request is let through as a probe (half-open); its
success closes the circuit, its failure opens it again for another cooldown.

State changes are reported to ``on_change(name, old, new)`` (later turned into
metrics and logs). The clock is injectable so tests need no sleeping.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

from uniinfer.config.routing import BreakerConfig

__all__ = ["PASSED", "BreakerState", "CircuitBreaker", "Ticket"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


OnChange = Callable[[str, BreakerState, BreakerState], None]


class Ticket:
    """What :meth:`CircuitBreaker.acquire` hands a request it lets through, to give back with
    the request's verdict: the half-open circuit's probe holds its own, and only that one
    settles the probe (a request let through before the circuit opened, ending during the
    probe, neither closes nor reopens the circuit, nor frees the probe's place)."""

    __slots__ = ()


#: The ticket of a request let through a closed circuit (or a disabled breaker).
PASSED = Ticket()


class CircuitBreaker:
    __slots__ = (
        "_buckets",
        "_clock",
        "_config",
        "_failed",
        "_ok",
        "_on_change",
        "_opened_at",
        "_probe",
        "name",
        "state",
    )

    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self.name = name
        self._config = config
        self._clock = clock
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe: Ticket | None = None  # the half-open circuit's probe, while it runs
        #: (second, successes, failures), oldest first; _ok/_failed are their running sums
        self._buckets: deque[list[int]] = deque()
        self._ok = 0
        self._failed = 0

    def available(self) -> bool:
        """Whether a strategy may pick this deployment now (does not change state)."""
        if not self._config.enabled or self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return self._clock() - self._opened_at >= self._config.cooldown_seconds
        return self._probe is None

    def reopens_in(self) -> float | None:
        """Seconds until an open circuit lets a probe through (0 once due); None when not open."""
        if self.state is not BreakerState.OPEN:
            return None
        return max(0.0, self._config.cooldown_seconds - (self._clock() - self._opened_at))

    def acquire(self) -> Ticket | None:
        """Claim the right to send a request (None: refused); in half-open, one probe at a time."""
        if not self._config.enabled or self.state is BreakerState.CLOSED:
            return PASSED
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self._config.cooldown_seconds:
                return None
            self._set(BreakerState.HALF_OPEN)
        if self._probe is not None:
            return None
        self._probe = Ticket()
        return self._probe

    def record(self, success: bool, ticket: Ticket = PASSED) -> None:
        """The outcome of a request this breaker let through with ``ticket``."""
        if not self._config.enabled:
            return
        if self.state is BreakerState.HALF_OPEN:
            if ticket is not self._probe:
                return  # let through before the circuit opened: no word on the probe
            self._probe = None
            if success:
                self._reset_window()
                self._set(BreakerState.CLOSED)
            else:
                self._open()
            return
        if self.state is BreakerState.OPEN:
            return  # a late answer from before the circuit opened
        self._count(success)
        total, failures = self._totals()
        if total >= self._config.min_requests and failures / total >= self._config.failure_rate:
            self._open()

    def release(self, ticket: Ticket = PASSED) -> None:
        """A request let through with ``ticket`` ended without a health verdict (the caller
        left, a 429): a probe's place is free again."""
        if self.state is BreakerState.HALF_OPEN and ticket is self._probe:
            self._probe = None

    def _count(self, success: bool) -> None:
        second = int(self._clock())
        buckets = self._buckets
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0])
        if success:
            buckets[-1][1] += 1
            self._ok += 1
        else:
            buckets[-1][2] += 1
            self._failed += 1

    def _totals(self) -> tuple[int, int]:
        horizon = self._clock() - self._config.window_seconds
        buckets = self._buckets
        while buckets and buckets[0][0] < horizon:
            _, ok, failed = buckets.popleft()
            self._ok -= ok
            self._failed -= failed
        return self._ok + self._failed, self._failed

    def _reset_window(self) -> None:
        self._buckets.clear()
        self._ok = self._failed = 0

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probe = None
        self._reset_window()
        self._set(BreakerState.OPEN)

    def _set(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        if old is not new and self._on_change is not None:
            self._on_change(self.name, old, new)
