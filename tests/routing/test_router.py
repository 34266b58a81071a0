"""The router end to end against the OpenAI fake: chaos on command, fallbacks, retries, breakers.

Each test checks the user-visible outcome, the number of upstream attempts,
and that nothing leaks (busy connections, pending tasks). Time is a fake
clock and sleeping is recorded, so backoff and cool-downs need no waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import FAKE_KEY, make_config
from tests.fakes.common import chaos, run_fake
from tests.fakes.openai import openai_app
from uniinfer.config import Config
from uniinfer.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ProviderOverloadedError,
    ProviderTimeoutError,
    RateLimitError,
    RequestCancelledError,
    UniInferError,
)
from uniinfer.gateway import Gateway
from uniinfer.routing.breaker import BreakerState
from uniinfer.stages import RequestContext
from uniinfer.types import ChatRequest

MSG = [{"role": "user", "content": "hello there"}]


class FakeTime:
    """A monotonic clock that only moves when something sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 10_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def plan() -> dict[str, list[int]]:
    return {}


@pytest.fixture
async def url(plan: dict[str, list[int]]) -> AsyncIterator[str]:
    app: web.Application = openai_app(api_key=FAKE_KEY)
    app.middlewares.append(chaos(plan))
    async with run_fake(app) as base:
        yield base + "/v1"


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def build(url: str, clock: FakeTime) -> AsyncIterator[Callable[[str], Gateway]]:
    made: list[Gateway] = []

    def make(yaml_rest: str) -> Gateway:
        config: Config = make_config(
            f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: '{url}'}}\n"
            "  dead: {type: openai, api_key: k, base_url: 'http://127.0.0.1:9/v1'}\n" + yaml_rest
        )
        gw = Gateway(config, clock=clock.clock, sleep=clock.sleep)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        assert gw.http.busy_connections == 0, "a connection leaked"
        await gw.aclose()
    for _ in range(3):
        await asyncio.sleep(0)
    assert not gateway_tasks(), "a task leaked"


def gateway_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks running uniinfer code (the fake server's own tasks are not ours)."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and "uniinfer" in repr(t.get_coro())]


def chat(model: str, **extra: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": model, "messages": MSG, **extra})


async def run(gw: Gateway, model: str, **extra: Any) -> RequestContext:
    ctx = RequestContext("chat")
    response = await gw.chat(chat(model, **extra), ctx)
    assert response.choices[0].message.content == "echo: hello there"
    return ctx


#: Group ``m`` of one deployment whose circuit opens at two failures in its first two requests.
TWO_STRIKES = (
    "models:\n  m: {deployments: [up/gpt-a]}\n"
    "routing:\n  circuit_breaker: {min_requests: 2, failure_rate: 0.5, window_seconds: 10, cooldown_seconds: 5}\n"
)


def recorded(gw: Gateway, errors: list[UniInferError]) -> BreakerState:
    """``up/gpt-a``'s circuit after ``errors``, each an attempt's, recorded as the router does."""
    state = gw.router.states["up/gpt-a"]
    for error in errors:
        ticket = state.breaker.acquire()
        if ticket is not None:
            gw.router._record_failure(state, error, ticket)
    return state.breaker.state


async def test_5xx_burst_is_retried_with_backoff(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    plan["gpt-a"] = [500, 503]
    gw = build(
        "models:\n  m: {deployments: [up/gpt-a]}\nrouting:\n  retry: {max_retries: 2, initial_backoff_seconds: 0.5, jitter: 0}\n"
    )
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.attempts == 3
    assert ctx.route.retries == 2
    assert clock.sleeps == [0.5, 1.0]  # exponential, no jitter configured


async def test_429_falls_over_and_cools_the_deployment_down(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    plan["gpt-a"] = [429]
    gw = build("models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n")
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert (ctx.route.attempts, ctx.route.failed, ctx.route.upstream_model) == (2, ["up/gpt-a"], "gpt-b")
    ctx = await run(gw, "m")  # gpt-a waits out its Retry-After: 1
    assert ctx.route is not None
    assert (ctx.route.attempts, ctx.route.upstream_model) == (1, "gpt-b")
    clock.now += 1.01
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-a"
    assert clock.sleeps == []


async def test_a_429_without_retry_after_puts_the_deployment_last_for_a_while(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    # no word on how long: not skipped (alone in a group it is still tried), but the group's
    # others first, so that each request does not pay a 429 from it first
    plan["gpt-a"] = [-429]
    gw = build("models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n  solo: {deployments: [up/gpt-a]}\n")
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert (ctx.route.failed, ctx.route.upstream_model) == (["up/gpt-a"], "gpt-b")
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert (ctx.route.attempts, ctx.route.upstream_model) == (1, "gpt-b")
    ctx = await run(gw, "solo")  # alone in its group: tried as ever
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-a"
    clock.now += 5.01
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-a"


async def test_a_longer_wait_is_not_shortened_by_a_later_429(build: Callable[[str], Gateway]) -> None:
    from uniinfer.errors import ProviderQuotaExceededError

    gw = build("models:\n  m: {deployments: [up/gpt-a]}\n")
    state = gw.router.states["up/gpt-a"]
    for error in (
        ProviderQuotaExceededError("up: out of quota", provider="up", retry_after=60.0),
        RateLimitError("up: slow down", provider="up", retry_after=1.0),  # answered later, shorter
    ):
        ticket = state.breaker.acquire()
        assert ticket is not None
        gw.router._record_failure(state, error, ticket)
    assert state.back_in(gw.router._clock()) == pytest.approx(60.0)
    assert state.out_of_quota == "up: out of quota"


async def test_a_503_saying_when_to_come_back_cools_the_deployment_down(
    build: Callable[[str], Gateway],
) -> None:
    from uniinfer.errors import ProviderOverloadedError as Overloaded

    gw = build("models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n")
    state = gw.router.states["up/gpt-a"]
    ticket = state.breaker.acquire()
    assert ticket is not None
    gw.router._record_failure(
        state, Overloaded("up: busy", provider="up", upstream_status=503, retry_after=30), ticket
    )
    assert state.back_in(gw.router._clock()) == pytest.approx(30.0)
    assert [m.target.model for m in gw.router._ordered(gw.router.group("m"), set())] == ["gpt-b"]


async def test_an_answer_the_deployment_could_not_make_whole_counts_against_its_health(
    build: Callable[[str], Gateway],
) -> None:
    from uniinfer.errors import ProviderResponseError

    gw = build(TWO_STRIKES)
    # a 200 with garbage, say: not retried, but no healthy answer either
    unreadable: list[UniInferError] = [ProviderResponseError("up: unreadable", provider="up")] * 2
    assert recorded(gw, unreadable) is BreakerState.OPEN
    assert gw.router.states["up/gpt-a"].breaker.acquire() is None


async def test_also_retry_codes_move_on_without_retrying_the_same_deployment(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    # "survive one bad key": the next deployment at once; the revoked key is not tried again
    # each round after a backoff, and its failures count against its health
    plan["gpt-a"] = [401] * 10
    gw = build(
        "models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n"
        "routing:\n  retry: {also_retry_codes: [authentication_failed]}\n"
        "  circuit_breaker: {min_requests: 2, failure_rate: 0.5, window_seconds: 10, cooldown_seconds: 5}\n"
    )
    for _ in range(2):
        ctx = await run(gw, "m")
        assert ctx.route is not None
        assert (ctx.route.failed, ctx.route.upstream_model) == (["up/gpt-a"], "gpt-b")
    assert clock.sleeps == []
    assert gw.router.states["up/gpt-a"].breaker.state is BreakerState.OPEN


async def test_a_retry_round_waits_for_the_soonest_deployment_back_not_the_latest(
    build: Callable[[str], Gateway], clock: FakeTime
) -> None:
    gw = build("models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n")
    a, b = gw.router.states["up/gpt-a"], gw.router.states["up/gpt-b"]
    a.cool_down(30.0)
    b.cool_down(1.0)
    group = gw.router.group("m")
    assert gw.router._soonest_back(group, set()) == pytest.approx(1.0)
    assert gw.router._soonest_back(group, {1}) == pytest.approx(30.0)  # b cannot serve this request


async def test_a_request_does_not_sit_out_the_circuit_it_opened(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    # the breaker is there to fail fast: the request whose failures opened it waited out its
    # 30 s cooldown before failing all the same
    plan["gpt-a"] = [500] * 10
    gw = build(
        "models:\n  m: {deployments: [up/gpt-a]}\n"
        "routing:\n  retry: {max_retries: 2, initial_backoff_seconds: 0.1, jitter: 0}\n"
        "  circuit_breaker: {min_requests: 2, failure_rate: 0.5, window_seconds: 10, cooldown_seconds: 30}\n"
    )
    with pytest.raises(UniInferError):
        await gw.chat(chat("m"), RequestContext("chat"))
    assert gw.router.states["up/gpt-a"].breaker.state is BreakerState.OPEN
    assert clock.sleeps == [pytest.approx(0.1)]  # the round before the circuit opened, no more


async def test_retry_waits_at_least_retry_after_but_never_past_the_deadline(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    plan["gpt-a"] = [429, 429]
    gw = build(
        "models:\n  m: {deployments: [up/gpt-a]}\nrouting:\n  retry: {max_retries: 3, initial_backoff_seconds: 0.1}\n"
    )
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.attempts == 3
    assert clock.sleeps
    assert all(s >= 1.0 for s in clock.sleeps)  # Retry-After: 1 from the fake

    plan["gpt-z"] = [429] * 10
    gw = build(
        "models:\n  m: {deployments: [up/gpt-z]}\n"
        "routing:\n  retry: {max_retries: 5, deadline_seconds: 2.5}\n"
    )
    clock.sleeps.clear()
    ctx = RequestContext("chat")
    with pytest.raises(RateLimitError):  # one deployment, retried: its own error, typed
        await gw.chat(chat("m"), ctx)
    assert sum(clock.sleeps) < 2.5
    assert ctx.route is not None
    assert ctx.route.attempts > 1


async def test_connect_refused_falls_back(build: Callable[[str], Gateway]) -> None:
    gw = build("models:\n  m: {deployments: [dead/x, up/gpt-b]}\n")
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.failed == ["dead/x"]


async def test_slow_first_byte_beyond_the_timeout_falls_back(build: Callable[[str], Gateway]) -> None:
    gw = build(
        "models:\n  m:\n    deployments:\n"
        "      - {provider: up, model: slow-2, timeout: {connect: 1, read: 0.2, total: 5}}\n"
        "      - up/gpt-b\n"
    )
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.failed == ["up/slow-2"]


async def test_a_hanging_deployment_cannot_outlive_the_deadline(build: Callable[[str], Gateway]) -> None:
    gw = build(
        "models:\n  m: {deployments: [up/slow-30]}\nrouting:\n  retry: {deadline_seconds: 0.3, max_retries: 0}\n"
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProviderTimeoutError):
        await gw.chat(chat("m"))
    assert loop.time() - started < 5


async def test_client_errors_are_never_retried(
    build: Callable[[str], Gateway], plan: dict[str, list[int]]
) -> None:
    plan["gpt-a"] = [400]
    gw = build("models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\nrouting:\n  retry: {max_retries: 3}\n")
    ctx = RequestContext("chat")
    with pytest.raises(InvalidRequestError):
        await gw.chat(chat("m"), ctx)
    assert ctx.route is not None
    assert ctx.route.attempts == 1


async def test_context_length_and_content_filter_fall_back_to_configured_groups(
    build: Callable[[str], Gateway],
) -> None:
    gw = build(
        "models:\n"
        "  small: {deployments: [up/context-small], fallbacks: {context_length: big}}\n"
        "  big: {deployments: [up/gpt-big]}\n"
    )
    ctx = await run(gw, "small")
    assert ctx.route is not None
    assert ctx.route.fallback_groups == ["big"]
    assert ctx.route.upstream_model == "gpt-big"
    assert ctx.route.group == "big"  # x-uniinfer-group: the group that served


async def test_default_fallback_group_after_retries(
    build: Callable[[str], Gateway], plan: dict[str, list[int]]
) -> None:
    plan["gpt-a"] = [500] * 5
    gw = build(
        "models:\n"
        "  primary: {deployments: [up/gpt-a], fallbacks: {default: [backup]}, retry: {max_retries: 1}}\n"
        "  backup: {deployments: [up/gpt-b]}\n"
    )
    ctx = await run(gw, "primary")
    assert ctx.route is not None
    assert ctx.route.fallback_groups == ["backup"]
    assert ctx.route.attempts == 3


@pytest.mark.parametrize("final", [400, 401])
async def test_a_final_error_in_a_fallback_group_ends_the_request_there(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], final: int
) -> None:
    # a falls back to [b, c]; b's answer ends the request: c, still pending, is not tried
    plan["gpt-a"] = [503]
    plan["gpt-b"] = [final]
    gw = build(
        "models:\n"
        "  a: {deployments: [up/gpt-a], fallbacks: {default: [b, c]}, retry: {max_retries: 0}}\n"
        "  b: {deployments: [up/gpt-b]}\n"
        "  c: {deployments: [up/gpt-c]}\n"
    )
    ctx = RequestContext("chat")
    with pytest.raises(UniInferError) as info:
        await gw.chat(chat("a"), ctx)
    assert info.value.http_status == final or info.value.upstream_status == final
    assert ctx.route is not None
    assert ctx.route.fallback_groups == ["b"]  # c was never tried
    assert plan["gpt-b"] == []


async def test_a_retry_round_waits_for_the_retry_after_of_the_round_before_only(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    # the primary's 429 (Retry-After 1 s) is no reason for the backup's own retry to wait 1 s
    plan["gpt-a"] = [429]
    plan["gpt-b"] = [500]
    gw = build(
        "models:\n"
        "  primary: {deployments: [up/gpt-a], fallbacks: {default: [backup]}, retry: {max_retries: 0}}\n"
        "  backup: {deployments: [up/gpt-b], retry: {max_retries: 1, initial_backoff_seconds: 0.1, jitter: 0}}\n"
    )
    ctx = await run(gw, "primary")
    assert ctx.route is not None
    assert (ctx.route.group, ctx.route.retries) == ("backup", 1)
    assert clock.sleeps == [pytest.approx(0.1)]


async def _with_a_s_circuit_open(build: Callable[[str], Gateway], plan: dict[str, list[int]]) -> Gateway:
    """Group ``m`` of ``up/gpt-a`` and ``up/gpt-b``, after two 500s from a opened its circuit."""
    gw = build(
        "models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n"
        "routing:\n  circuit_breaker: {min_requests: 2, failure_rate: 0.5, window_seconds: 10, cooldown_seconds: 5}\n"
    )
    plan["gpt-a"] = [500, 500]
    for _ in range(2):
        await run(gw, "m")
    return gw


async def test_breaker_opens_sends_traffic_to_the_healthy_deployment_and_probes_back(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    gw = await _with_a_s_circuit_open(build, plan)
    state = gw.router.states["up/gpt-a"]
    assert state.breaker.state is BreakerState.OPEN
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert (ctx.route.attempts, ctx.route.upstream_model) == (1, "gpt-b")  # a's circuit is skipped
    clock.now += 5  # cooldown over: the next request probes a, which has healed
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-a"
    assert state.breaker.state is BreakerState.CLOSED


async def test_every_circuit_open_fails_fast_with_retry_after(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    gw = build(
        "models:\n  m: {deployments: [up/gpt-a]}\n"
        "routing:\n  circuit_breaker: {min_requests: 1, cooldown_seconds: 30}\n  retry: {max_retries: 0}\n"
    )
    plan["gpt-a"] = [500]
    with pytest.raises(Exception):  # noqa: B017, PT011 - the upstream's own 500
        await gw.chat(chat("m"))
    with pytest.raises(ProviderOverloadedError) as info:
        await gw.chat(chat("m"))
    assert info.value.retry_after == 30
    assert plan["gpt-a"] == []  # nothing more was sent upstream
    clock.now += 12
    with pytest.raises(ProviderOverloadedError) as info:
        await gw.chat(chat("m"))
    assert info.value.retry_after == 18  # the cooldown left, not all of it again


async def test_retry_after_is_when_the_first_deployment_is_back_for_good(
    build: Callable[[str], Gateway], clock: FakeTime
) -> None:
    gw = build(
        "models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n"
        "routing:\n  circuit_breaker: {cooldown_seconds: 30}\n"
    )
    a, b = gw.router.states["up/gpt-a"], gw.router.states["up/gpt-b"]
    a.breaker._open()  # a: its circuit open for 30 s and a 429 to wait out for 40 s
    a.cooldown_until = clock.now + 40
    clock.now += 1
    b.breaker._open()  # b: its circuit open for 30 s from now
    with pytest.raises(ProviderOverloadedError) as info:
        await gw.chat(chat("m"))
    # a is back in 39 s (its circuit's 29 s do not let it serve while the 429 lasts), b in 30
    assert info.value.retry_after == 30


async def test_stream_failure_before_the_first_chunk_falls_back(
    build: Callable[[str], Gateway], plan: dict[str, list[int]]
) -> None:
    plan["gpt-a"] = [503]
    gw = build("models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n")
    ctx = RequestContext("chat")
    stream = await gw.stream(chat("m", stream=True), ctx)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hello there"
    assert ctx.route is not None
    assert ctx.route.failed == ["up/gpt-a"]
    assert gw.router.states["up/gpt-b"].in_flight == 0
    assert gw.router.states["up/gpt-b"].ttft is not None


async def test_streams_cut_half_way_open_the_circuit_one_sample_each(build: Callable[[str], Gateway]) -> None:
    gw = build(
        "models:\n  m: {deployments: [up/cut-a]}\n"
        "routing:\n  circuit_breaker: {min_requests: 4, failure_rate: 0.75, window_seconds: 60}\n"
    )
    breaker = gw.router.states["up/cut-a"].breaker
    for n in range(4):
        assert breaker.state is BreakerState.CLOSED, n  # 3 failed streams are 3 samples, not 6
        stream = await gw.stream(chat("m", stream=True), RequestContext("chat"))
        with pytest.raises(UniInferError):  # the first chunk came; then the connection was cut
            async for _ in stream:
                pass
    assert breaker.state is BreakerState.OPEN  # 4 of 4 failed: was never opened (4 successes counted too)


async def test_without_direct_routing_callers_get_only_configured_names_but_the_config_s_own_targets_serve(
    build: Callable[[str], Gateway], plan: dict[str, list[int]]
) -> None:
    gw = build(
        "settings: {allow_direct_routing: false}\n"
        "models:\n  m: {deployments: [up/gpt-a], fallbacks: {default: [up/gpt-fb]}}\n"
        "  ab: {deployments: [up/gpt-ab]}\n"
        "routing:\n  retry: {max_retries: 0}\n"
        "  rules: [{name: pinned, when: {headers: {x-pin: '1'}}, route: {model: up/gpt-ruled}}]\n"
        "  experiments: [{name: ex, model: ab, variants: [{name: a, model: up/gpt-variant, weight: 1}, {name: b, model: up/gpt-variant, weight: 1}]}]\n"
    )
    with pytest.raises(ModelNotFoundError):
        await gw.chat(chat("up/gpt-fb"))  # a caller's provider/model: refused
    plan["gpt-a"] = [500]
    ctx = await run(gw, "m")  # the group's own fallback: served
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-fb"
    with pytest.raises(ModelNotFoundError):
        await gw.chat(chat("up/gpt-fb"))  # and still refused to callers once it has served
    ruled = RequestContext("chat", headers={"x-pin": "1"})
    await gw.chat(chat("m"), ruled)
    assert ruled.route is not None
    assert ruled.route.upstream_model == "gpt-ruled"
    ctx = await run(gw, "ab")
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-variant"


async def test_a_streaming_probe_closes_the_circuit_at_its_first_chunk(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    gw = await _with_a_s_circuit_open(build, plan)
    breaker = gw.router.states["up/gpt-a"].breaker
    clock.now += 5
    stream = await gw.stream(chat("m", stream=True), RequestContext("chat"))  # the probe, served by a
    assert breaker.state is BreakerState.CLOSED  # traffic need not wait for the stream's end
    async for _ in stream:
        pass
    assert breaker.state is BreakerState.CLOSED


async def test_a_stream_its_caller_closes_gives_the_breaker_no_sample(
    build: Callable[[str], Gateway],
) -> None:
    gw = build("models:\n  m: {deployments: [up/gpt-a]}\n")
    state = gw.router.states["up/gpt-a"]
    stream = await gw.stream(chat("m", stream=True), RequestContext("chat"))
    await stream.aclose()  # the caller left after the first chunk
    assert state.breaker._totals() == (0, 0)  # neither a success nor a failure
    assert state.in_flight == 0


async def test_a_stream_dropped_unclosed_gives_the_breaker_no_sample(build: Callable[[str], Gateway]) -> None:
    import gc
    import warnings

    gw = build("models:\n  m: {deployments: [up/gpt-a]}\n")
    state = gw.router.states["up/gpt-a"]
    stream = await gw.stream(chat("m", stream=True), RequestContext("chat"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the warning telling to close it
        del stream
        gc.collect()
    assert state.breaker._totals() == (0, 0)  # the caller left it: no verdict
    assert state.in_flight == 0


async def test_weighted_group_spreads_by_weight(build: Callable[[str], Gateway]) -> None:
    gw = build(
        "models:\n  m:\n    strategy: weighted\n    deployments:\n"
        "      - {provider: up, model: gpt-a, weight: 3}\n      - {provider: up, model: gpt-b, weight: 1}\n"
    )
    counts = {"gpt-a": 0, "gpt-b": 0}
    for _ in range(200):
        ctx = await run(gw, "m")
        assert ctx.route is not None
        counts[ctx.route.upstream_model or ""] += 1
    assert 120 <= counts["gpt-a"] <= 180  # 150 expected


async def test_least_inflight_prefers_the_idle_deployment(build: Callable[[str], Gateway]) -> None:
    gw = build("models:\n  m:\n    strategy: least_inflight\n    deployments: [up/slow-0.3, up/gpt-b]\n")
    slow = asyncio.create_task(gw.chat(chat("m")))
    await asyncio.sleep(0.05)
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-b"
    await slow


async def test_a_group_cooling_down_after_429s_answers_429_with_the_remaining_wait(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    plan["gpt-a"] = [429]
    gw = build("models:\n  m: {deployments: [up/gpt-a]}\nrouting:\n  retry: {max_retries: 0}\n")
    with pytest.raises(RateLimitError):
        await gw.chat(chat("m"))
    clock.now += 0.4
    with pytest.raises(RateLimitError, match="rate limited upstream") as info:
        await gw.chat(chat("m"))
    assert info.value.retry_after == pytest.approx(0.6)


class TickingTime(FakeTime):
    """Time that moves on by a microsecond whenever it is read, like a real clock."""

    def clock(self) -> float:
        self.now += 1e-6
        return self.now


@pytest.mark.parametrize("clock", [FakeTime(), TickingTime()], ids=["still", "ticking"])
async def test_timeouts_are_reused_unless_the_deadline_cuts_them(build: Callable[[str], Gateway]) -> None:
    # the default deadline (60 s) is shorter than the default read and total timeouts:
    # a first attempt gets them cut to 60 s, from one object made when the group was built
    gw = build("models:\n  m: {deployments: [up/gpt-a]}\n")
    for _ in range(20):
        await run(gw, "m")
    assert len(gw.http._timeouts) == 1  # one Timeouts, not one per request
    ((timeouts, _),) = gw.http._timeouts.values()
    assert (timeouts.connect, timeouts.read, timeouts.total) == (10.0, 60.0, 60.0)


async def test_a_probe_answered_with_429_leaves_the_circuit_unproven(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    gw = await _with_a_s_circuit_open(build, plan)
    breaker = gw.router.states["up/gpt-a"].breaker
    assert breaker.state is BreakerState.OPEN
    clock.now += 5
    plan["gpt-a"] = [429]  # the probe is throttled: no word on a's health
    await run(gw, "m")  # served by b
    assert breaker.state is not BreakerState.CLOSED
    clock.now += 1  # Retry-After: 1 over; the next probe succeeds and closes it
    ctx = await run(gw, "m")
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-a"
    assert breaker.state is BreakerState.CLOSED


async def test_a_probe_cut_by_its_caller_leaves_the_circuit_unproven(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], clock: FakeTime
) -> None:
    gw = await _with_a_s_circuit_open(build, plan)
    state = gw.router.states["up/gpt-a"]
    clock.now += 5
    probe = state.breaker.acquire()  # the probe goes out; its client closes under it
    assert probe is not None
    gw.router._record_failure(state, RequestCancelledError("the client was closed"), probe)
    assert state.breaker.state is BreakerState.HALF_OPEN  # not closed by an answer nobody heard
    assert state.breaker.available()  # and the next request may probe


async def test_a_request_refused_before_sending_leaves_the_circuit_as_it_was(
    build: Callable[[str], Gateway], plan: dict[str, list[int]], url: str, clock: FakeTime
) -> None:
    gw = build(
        f"  gq: {{type: groq, api_key: {FAKE_KEY}, base_url: '{url}'}}\n"
        "models:\n  m: {deployments: [gq/gpt-a, up/gpt-b]}\n"
        "routing:\n  circuit_breaker: {min_requests: 2, failure_rate: 0.5, window_seconds: 10, cooldown_seconds: 5}\n"
    )
    plan["gpt-a"] = [500, 500]
    for _ in range(2):
        await run(gw, "m")
    breaker = gw.router.states["gq/gpt-a"].breaker
    assert breaker.state is BreakerState.OPEN
    clock.now += 5
    ctx = await run(gw, "m", logprobs=True)  # groq cannot honour logprobs: refused before sending
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-b"
    assert breaker.state is not BreakerState.CLOSED  # nothing reached gq: its health is unknown


async def test_a_group_s_retry_and_a_deployment_s_timeout_override_only_what_they_set(
    build: Callable[[str], Gateway], url: str
) -> None:
    from uniinfer.http import Timeouts

    gw = build(
        f"  slowish: {{type: openai, api_key: {FAKE_KEY}, base_url: '{url}',"
        " timeout: {connect: 1, read: 0.5, total: 30}}\n"
        "models:\n"
        "  m:\n"
        "    deployments: [{provider: slowish, model: gpt-a, timeout: {total: 20}}]\n"
        "    retry: {max_retries: 1}\n"
        "routing:\n"
        "  retry: {max_retries: 0, deadline_seconds: 300, also_retry_codes: [authentication_failed]}\n"
    )
    group = gw.router.group("m")
    assert group.retry.max_retries == 1  # the group's own
    assert group.retry.deadline_seconds == 300  # the rest from routing.retry, not the defaults
    assert group.retry.also_retry_codes == ["authentication_failed"]
    assert group.members[0].timeouts == Timeouts(connect=1, read=0.5, total=20)  # the rest the provider's


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "nan"}, None),  # not a wait: the deployment was out until a restart
        ({"retry-after-ms": "nan", "retry-after": "3"}, 3.0),
        ({"retry-after": "1e999"}, 86_400.0),  # at most a day (inf broke the 429's own headers)
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "7"}, 7.0),
    ],
)
def test_a_retry_after_is_a_finite_wait_or_none(headers: dict[str, str], seconds: float | None) -> None:
    from uniinfer.transport_errors import retry_after_seconds

    assert retry_after_seconds(headers) == seconds


def test_lowest_latency_ranks_answers_by_latency_and_streams_by_time_to_first_token(
    build: Callable[[str], Gateway],
) -> None:
    # a: slow answers, streams that start at once; b: quick answers, streams that start late
    gw = build("models:\n  m: {deployments: [up/gpt-a, up/gpt-b], strategy: lowest_latency}\n")
    a, b = (gw.router.states[f"up/gpt-{x}"] for x in "ab")
    a.observe_latency(0.6)
    a.observe_latency(0.01, first_token=True)
    b.observe_latency(0.1)
    b.observe_latency(0.2, first_token=True)
    group = gw.router.group("m")
    plain = [m.target.model for m in gw.router._ordered(group, set())]
    streamed = [m.target.model for m in gw.router._ordered(group, set(), stream=True)]
    assert (plain, streamed) == (["gpt-b", "gpt-a"], ["gpt-a", "gpt-b"])


async def test_a_timeout_the_request_s_deadline_imposed_says_nothing_of_the_deployment(
    build: Callable[[str], Gateway], clock: FakeTime
) -> None:
    # tried late (little of the deadline left), a healthy deployment's cut timeout fired: it
    # counted as its failure, and enough of them opened its circuit
    from uniinfer.stages import Route

    gw = build(TWO_STRIKES)
    member = gw.router.group("m").members[0]

    def times_out_after(seconds: float, status: int | None = None) -> Callable[[Any, Any], Awaitable[Any]]:
        async def attempt(member: Any, timeouts: Any) -> Any:
            clock.now += seconds
            raise ProviderTimeoutError("up: timed out", provider="up", upstream_status=status)

        return attempt

    for _ in range(3):  # 0.05 s were left, and they ran out
        with pytest.raises(ProviderTimeoutError):
            await gw.router._attempt(member, Route("m"), times_out_after(0.05), 0.05, False)
    assert member.state.breaker.state is BreakerState.CLOSED
    for _ in range(2):  # its own read timeout, far from the deadline (the first attempt's or not)
        with pytest.raises(ProviderTimeoutError):
            await gw.router._attempt(member, Route("m"), times_out_after(0.3), 30.0, False)
    assert member.state.breaker.state is BreakerState.OPEN


async def test_a_deployment_that_hangs_for_a_first_attempt_s_whole_deadline_is_its_failure(
    build: Callable[[str], Gateway], clock: FakeTime
) -> None:
    # the defaults: timeout.read 120 s, deadline 60 s, so a first attempt's timeouts are cut to the
    # whole deadline; a deployment that never answers used all of it: its failure, or a stalled
    # primary would take every request's deadline for ever
    from uniinfer.stages import Route

    gw = build(
        "models:\n  m: {deployments: [up/gpt-a]}\n"
        "routing:\n  circuit_breaker: {min_requests: 2, failure_rate: 0.5, window_seconds: 100, cooldown_seconds: 5}\n"
    )
    member = gw.router.group("m").members[0]

    async def hangs(member: Any, timeouts: Any) -> Any:
        clock.now += 60.0
        raise ProviderTimeoutError("up: timed out", provider="up")

    for _ in range(2):
        with pytest.raises(ProviderTimeoutError):
            await gw.router._attempt(member, Route("m"), hangs, 60.0, False)
    assert member.state.breaker.state is BreakerState.OPEN


async def test_a_caller_s_error_the_group_moves_on_from_is_no_failure_of_the_deployment(
    build: Callable[[str], Gateway],
) -> None:
    # also_retry_codes: [context_length_exceeded] sends long prompts on to a larger model: the small
    # one is healthy (its circuit would shut out the short prompts); a provider refusing the
    # gateway's own key is its failure
    from uniinfer.errors import AuthenticationError, ContextLengthExceededError

    gw = build(TWO_STRIKES)
    too_long: list[UniInferError] = [ContextLengthExceededError("up: too long", provider="up")] * 3
    assert recorded(gw, too_long) is BreakerState.CLOSED
    bad_key: list[UniInferError] = [
        AuthenticationError("up: bad key", provider="up", upstream_status=401)
    ] * 3
    assert recorded(gw, bad_key) is BreakerState.OPEN


async def test_no_deployment_available_is_said_of_those_the_request_could_use(
    build: Callable[[str], Gateway],
) -> None:
    # embeddings use one model's deployments: the wait is theirs, not another model's idle one
    gw = build("models:\n  m: {deployments: [up/gpt-a, up/gpt-b]}\n")
    gw.router.states["up/gpt-a"].cool_down(30.0)
    error = gw.router._unavailable(gw.router.group("m"), {1})
    assert isinstance(error, RateLimitError)
    assert error.retry_after == pytest.approx(30.0)


async def test_an_upstream_s_own_504_at_the_deadline_is_still_its_failure(
    build: Callable[[str], Gateway], clock: FakeTime
) -> None:
    from uniinfer.stages import Route

    gw = build(TWO_STRIKES)
    member = gw.router.group("m").members[0]

    async def gateway_timeout(member: Any, timeouts: Any) -> Any:
        clock.now += 0.05
        raise ProviderTimeoutError("up: 504", provider="up", upstream_status=504)

    for _ in range(2):
        with pytest.raises(ProviderTimeoutError):
            await gw.router._attempt(member, Route("m"), gateway_timeout, 0.05, False)
    assert member.state.breaker.state is BreakerState.OPEN
