"""Circuit breaker state machine, with an injected clock."""

from __future__ import annotations

from uniinfer.config.routing import BreakerConfig
from uniinfer.routing.breaker import PASSED, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**kwargs: float) -> tuple[CircuitBreaker, Clock, list[tuple[str, str]]]:
    clock = Clock()
    events: list[tuple[str, str]] = []
    config = BreakerConfig(
        **{"failure_rate": 0.5, "min_requests": 4, "window_seconds": 10, "cooldown_seconds": 5, **kwargs}
    )
    breaker = CircuitBreaker(
        "p/m", config, clock=clock, on_change=lambda name, old, new: events.append((old.value, new.value))
    )
    return breaker, clock, events


def test_opens_at_the_failure_rate_once_enough_requests_were_seen() -> None:
    breaker, _, events = make()
    for ok in (False, False, True):
        assert breaker.acquire()
        breaker.record(ok)
    assert breaker.state is BreakerState.CLOSED  # 3 < min_requests
    assert breaker.acquire()
    breaker.record(True)  # 2 of 4 failed: 50%
    assert breaker.state is BreakerState.OPEN
    assert not breaker.available()
    assert not breaker.acquire()
    assert events == [("closed", "open")]


def test_old_failures_leave_the_window() -> None:
    breaker, clock, _ = make()
    breaker.record(False)
    breaker.record(False)
    clock.now += 11
    breaker.record(True)
    breaker.record(True)
    breaker.record(False)
    assert breaker.state is BreakerState.CLOSED  # only 1 of 3 in the window failed


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    breaker, clock, events = make()
    for _ in range(4):
        breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.9
    assert not breaker.available()
    clock.now += 0.2
    assert breaker.available()
    probe = breaker.acquire()  # the probe
    assert probe is not None
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.available()
    assert breaker.acquire() is None  # only one at a time
    breaker.record(True, probe)
    assert breaker.state is BreakerState.CLOSED
    assert events == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_reopens_for_another_cooldown() -> None:
    breaker, clock, _ = make()
    for _ in range(4):
        breaker.record(False)
    clock.now += 5
    probe = breaker.acquire()
    assert probe is not None
    breaker.record(False, probe)
    assert breaker.state is BreakerState.OPEN
    clock.now += 4
    assert breaker.acquire() is None
    clock.now += 1
    assert breaker.acquire()


def test_a_probe_abandoned_by_its_caller_frees_the_slot() -> None:
    breaker, clock, _ = make()
    for _ in range(4):
        breaker.record(False)
    clock.now += 5
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe)
    assert breaker.available()
    assert breaker.acquire()


def test_only_the_probe_settles_a_half_open_circuit() -> None:
    # a request let through before the circuit opened, ending during the probe: its success
    # closed the circuit, its failure reopened it, its 429 or cancel freed a second probe
    breaker, clock, _ = make()
    early = breaker.acquire()
    assert early is PASSED
    for _ in range(4):
        breaker.record(False)
    clock.now += 5
    probe = breaker.acquire()
    assert probe is not None
    for verdict in (lambda: breaker.record(True, early), lambda: breaker.record(False, early)):
        verdict()
        assert breaker.state is BreakerState.HALF_OPEN
    breaker.release(early)
    assert not breaker.available()  # the probe still runs: no second one
    assert breaker.acquire() is None
    breaker.record(True, probe)
    assert breaker.state is BreakerState.CLOSED


def test_disabled_breaker_never_opens() -> None:
    breaker, _, _ = make(enabled=False)
    for _ in range(20):
        breaker.record(False)
    assert breaker.available()
    assert breaker.acquire()
