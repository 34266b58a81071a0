"""Rules, profiles and experiments deciding where requests go, end to end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import FAKE_KEY, make_config
from tests.fakes.common import run_fake
from tests.fakes.openai import openai_app
from tests.server_helpers import serve
from uniinfer.cli.app import app as cli
from uniinfer.config import Config
from uniinfer.errors import ConfigError, ModelNotFoundError
from uniinfer.gateway import Gateway
from uniinfer.routing.breaker import BreakerState
from uniinfer.server import create_app
from uniinfer.stages import RequestContext
from uniinfer.types import ChatRequest, EmbeddingRequest

CONFIG = """
providers:
  up: {{type: openai, api_key: {key}, base_url: '{url}'}}
  box: {{type: vllm, api_key: {key}, base_url: '{url}'}}
models:
  general:
    deployments:
      - {{provider: up, model: gpt-general, input_cost_per_mtok: 2.5, output_cost_per_mtok: 10, tags: [quality]}}
  coder:
    deployments: [up/gpt-coder]
  budget:
    deployments:
      - {{provider: up, model: gpt-budget, input_cost_per_mtok: 0.1, output_cost_per_mtok: 0.4}}
  onprem:
    deployments: [box/llama-local]
  chat-a: {{deployments: [up/gpt-variant-a]}}
  chat-b: {{deployments: [up/gpt-variant-b]}}
routing:
  default_profile: cheap
  rules:
    - name: code-goes-to-coder
      priority: 10
      when: {{task: code, model: uniinfer/auto}}
      route: {{model: coder}}
    - name: gold-tier
      when: {{headers: {{x-tier: gold}}, model: uniinfer/auto}}
      route: {{profile: quality}}
  experiments:
    - name: ab
      model: chat
      sticky_by: user
      variants:
        - {{name: control, model: chat-a, weight: 1}}
        - {{name: candidate, model: chat-b, weight: 1}}
"""


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with run_fake(openai_app(api_key=FAKE_KEY)) as base:
        yield base + "/v1"


@pytest.fixture
def config(url: str) -> Config:
    return make_config(CONFIG.format(key=FAKE_KEY, url=url))


@pytest.fixture
async def gateway(config: Config) -> AsyncIterator[Gateway]:
    gw = Gateway(config)
    yield gw
    await gw.aclose()


def chat(model: str, text: str = "hello there", **extra: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    )


async def routed(gw: Gateway, request: ChatRequest, headers: dict[str, str] | None = None) -> RequestContext:
    ctx = RequestContext("chat", headers=headers or {})
    await gw.chat(request, ctx)
    return ctx


async def test_auto_applies_rules_then_the_default_profile(gateway: Gateway) -> None:
    code = "Fix this function:\n```python\ndef add(a, b):\n    return a - b\n```"
    ctx = await routed(gateway, chat("uniinfer/auto", code))
    assert ctx.route is not None
    assert (ctx.route.rule, ctx.route.group, ctx.route.upstream_model) == (
        "code-goes-to-coder",
        "coder",
        "gpt-coder",
    )

    ctx = await routed(gateway, chat("uniinfer/auto", "What a lovely day it is"), {"x-tier": "gold"})
    assert ctx.route is not None
    assert (ctx.route.rule, ctx.route.profile, ctx.route.upstream_model) == (
        "gold-tier",
        "quality",
        "gpt-general",
    )

    ctx = await routed(gateway, chat("uniinfer/auto", "What a lovely day it is"))
    assert ctx.route is not None
    assert (ctx.route.rule, ctx.route.profile) == (None, "cheap")
    assert ctx.route.upstream_model == "llama-local"  # a local server costs nothing: cheapest of all


async def test_profiles_by_name(gateway: Gateway) -> None:
    ctx = await routed(gateway, chat("profile:local"))
    assert ctx.route is not None
    assert ctx.route.upstream_model == "llama-local"
    ctx = await routed(gateway, chat("profile:quality"))
    assert ctx.route is not None
    assert ctx.route.upstream_model == "gpt-general"
    with pytest.raises(ModelNotFoundError, match="profile 'nope'"):
        await gateway.chat(chat("profile:nope"))


async def test_explicit_model_names_are_not_rerouted_by_auto_rules(gateway: Gateway) -> None:
    code = "```python\nprint('hi')\n```"
    ctx = await routed(gateway, chat("general", code))
    assert ctx.route is not None
    assert (ctx.route.rule, ctx.route.upstream_model) == (None, "gpt-general")


async def test_the_analyser_runs_only_for_rules_that_may_match_and_test_features(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uniinfer.routing import router

    analysed: list[str] = []
    real = router.analyse
    monkeypatch.setattr(router, "analyse", lambda request: analysed.append(request.model) or real(request))
    # every rule here tests `model: uniinfer/auto`: a named group skips the analyser (tens of µs)
    await routed(gateway, chat("general", "```python\nprint('hi')\n```"))
    await routed(gateway, chat("profile:quality"))
    assert analysed == []
    await routed(gateway, chat("uniinfer/auto"))
    assert analysed == ["uniinfer/auto"]


async def test_identity_rules_match_without_the_analyser(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from uniinfer.routing import router

    config = make_config(
        CONFIG.format(key=FAKE_KEY, url=url).replace(
            "when: {task: code, model: uniinfer/auto}", "when: {headers: {x-team: ml}}"
        )
    )
    monkeypatch.setattr(router, "analyse", lambda request: pytest.fail("the analyser ran"))
    gw = Gateway(config)
    try:
        ctx = await routed(gw, chat("general"), {"x-team": "ml"})
        assert ctx.route is not None
        assert (ctx.route.rule, ctx.route.upstream_model) == ("code-goes-to-coder", "gpt-coder")
        ctx = await routed(gw, chat("general"))
        assert ctx.route is not None
        assert (ctx.route.rule, ctx.route.upstream_model) == (None, "gpt-general")
    finally:
        await gw.aclose()


async def test_experiment_assignment_is_sticky_and_recorded(gateway: Gateway) -> None:
    variants: dict[str, set[str]] = {}
    for i in range(40):
        user = f"user-{i % 8}"
        ctx = await routed(gateway, chat("chat", user=user))
        assert ctx.route is not None
        assert ctx.route.experiment == "ab"
        variants.setdefault(user, set()).add(ctx.route.variant or "")
    assert all(len(v) == 1 for v in variants.values())  # one user, one variant
    assert {v for s in variants.values() for v in s} == {"control", "candidate"}
    report = gateway.router.experiments.report("ab").to_dict()
    assert sum(v["requests"] for v in report["variants"]) == 40
    assert report["variants"][0]["variant"] == "control"


EMBED_CONFIG = """
providers:
  up: {{type: openai, api_key: {key}, base_url: '{url}'}}
models:
  emb-a: {{deployments: [up/text-embedding-3-small]}}
  emb-b: {{deployments: [up/text-embedding-3-large]}}
routing:
  rules:
    - name: chat-only
      priority: 10
      when: {{model: vectors, max_prompt_tokens: 100000}}
      route: {{model: emb-a}}
    - name: by-header
      when: {{model: vectors, headers: {{x-index: new}}}}
      route: {{model: emb-b}}
    - name: any-model-for-chats
      when: {{headers: {{x-tier: free}}}}
      route: {{model: emb-b}}
  experiments:
    - name: emb-ab
      model: emb
      sticky_by: user
      variants:
        - {{name: a, model: emb-a}}
        - {{name: b, model: emb-b}}
"""


async def test_embedding_requests_take_part_in_experiments_and_rules(url: str) -> None:
    gw = Gateway(make_config(EMBED_CONFIG.format(key=FAKE_KEY, url=url)))
    try:
        models: dict[str, set[str]] = {}
        for i in range(24):  # one caller's vectors all come from one model
            user = f"user-{i % 6}"
            ctx = RequestContext("embeddings")
            await gw.embed(EmbeddingRequest(model="emb", input="hi", user=user), ctx)
            assert ctx.route is not None
            assert ctx.route.experiment == "emb-ab"
            models.setdefault(user, set()).add(ctx.route.upstream_model)
        assert all(len(m) == 1 for m in models.values())
        assert {m for s in models.values() for m in s} == {"text-embedding-3-small", "text-embedding-3-large"}
        # a rule on the model and a header redirects an embedding; one testing what only a chat
        # has (a feature: its prompt's tokens) does not match it
        ctx = RequestContext("embeddings", headers={"x-index": "new"})
        await gw.embed(EmbeddingRequest(model="vectors", input="hi"), ctx)
        assert ctx.route is not None
        assert (ctx.route.rule, ctx.route.upstream_model) == ("by-header", "text-embedding-3-large")
        # a rule that names no model was written for chats: it does not take embeddings
        ctx = RequestContext("embeddings", headers={"x-tier": "free"})
        await gw.embed(EmbeddingRequest(model="emb-a", input="hi"), ctx)
        assert ctx.route is not None
        assert (ctx.route.rule, ctx.route.upstream_model) == (None, "text-embedding-3-small")
    finally:
        await gw.aclose()
    # the server hands the request's headers on
    app = create_app(make_config(EMBED_CONFIG.format(key=FAKE_KEY, url=url)))
    async with serve(app) as base, aiohttp.ClientSession() as session:
        payload = {"model": "vectors", "input": "hi"}
        async with session.post(f"{base}/v1/embeddings", json=payload, headers={"x-index": "new"}) as resp:
            assert resp.status == 200
            assert resp.headers["x-uniinfer-model"] == "text-embedding-3-large"


async def test_explain_shows_the_rules_as_matched_against_the_variant(url: str) -> None:
    config = make_config(
        CONFIG.format(key=FAKE_KEY, url=url).replace(
            "when: {task: code, model: uniinfer/auto}",
            "when: {model: [chat-a, chat-b], headers: {x-up: '1'}}",
        )
    )
    gw = Gateway(config)
    try:
        ctx = RequestContext("chat", headers={"x-up": "1"})
        explained = gw.router.explain(chat("chat", user="u1"), ctx)
        verdicts = {r["name"]: r["passed"] for r in explained["rules"]}
        assert explained["matched_rule"] == "code-goes-to-coder"  # for the variant's chat-a or chat-b
        assert verdicts["code-goes-to-coder"] is True  # the table agrees with the decision
        served = await routed(gw, chat("chat", user="u1"), {"x-up": "1"})
        assert served.route is not None
        assert served.route.rule == "code-goes-to-coder"
    finally:
        await gw.aclose()


async def test_a_stream_its_caller_left_is_no_outcome_of_its_variant(gateway: Gateway) -> None:
    ctx = RequestContext("chat")
    stream = await gateway.stream(chat("chat", user="u1", stream=True), ctx)
    await stream.aclose()  # the caller left after the first chunk
    assert ctx.error is not None
    assert ctx.error.code == "request_cancelled"
    report = gateway.router.experiments.report("ab").to_dict()
    assert [(v["requests"], v["errors"]) for v in report["variants"]] == [(0, 0), (0, 0)]
    await routed(gateway, chat("chat", user="u1"))
    report = gateway.router.experiments.report("ab").to_dict()
    assert sum(v["requests"] for v in report["variants"]) == 1


async def test_server_explain_feedback_and_report(config: Config) -> None:
    app = create_app(config)
    async with serve(app) as base, aiohttp.ClientSession() as session:
        body = {"model": "uniinfer/auto", "messages": [{"role": "user", "content": "```js\nlet x = 1;\n```"}]}
        async with session.post(base + "/v1/route/explain", json=body) as resp:
            assert resp.status == 200
            explained = await resp.json()
        assert explained["matched_rule"] == "code-goes-to-coder"
        assert explained["decision"]["group"] == "coder"
        assert explained["features"]["task"] == "code"
        assert explained["attempt_order"] == ["up/gpt-coder"]

        request_ids = []
        for user in ("ann", "bob", "cyd", "dee"):
            payload = {"model": "chat", "user": user, "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(base + "/v1/chat/completions", json=payload) as resp:
                assert resp.status == 200
                assert resp.headers["x-uniinfer-experiment"] == "ab"
                assert resp.headers["x-uniinfer-variant"] in {"control", "candidate"}
                request_ids.append(resp.headers["x-request-id"])
        for rid in request_ids:
            async with session.post(base + "/v1/feedback", json={"request_id": rid, "score": 1}) as resp:
                assert resp.status == 200
        async with session.post(base + "/v1/feedback", json={"request_id": "unknown", "score": 1}) as resp:
            assert resp.status == 404
        for bad in ("x", 1e308, -1e7):  # not a number, or beyond what the statistics can sum
            async with session.post(
                base + "/v1/feedback", json={"request_id": request_ids[0], "score": bad}
            ) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["param"] == "score"
        async with session.get(base + "/v1/experiments/ab") as resp:
            report = await resp.json()
        assert sum(v["feedback"]["n"] for v in report["variants"]) == 4
        async with session.get(base + "/v1/experiments") as resp:
            assert (await resp.json())["data"] == ["ab"]
        async with session.get(base + "/v1/experiments/missing") as resp:
            assert resp.status == 404

        def cli_report() -> str:
            result = CliRunner().invoke(cli, ["experiments", "report", "ab", "--url", base])
            assert result.exit_code == 0, result.output
            return result.output

        import asyncio

        output = await asyncio.to_thread(cli_report)
        assert "control" in output
        assert "candidate" in output


def test_cli_route_explain(tmp_path: Path, config: Config) -> None:
    request = tmp_path / "req.json"
    request.write_text(
        json.dumps(
            {"model": "uniinfer/auto", "messages": [{"role": "user", "content": "Summarise: the cat sat."}]}
        )
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(key=FAKE_KEY, url="http://127.0.0.1:9/v1"))
    result = CliRunner().invoke(cli, ["route", "explain", str(request), "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "rule code-goes-to-coder (priority 10): no match" in result.output
    assert "FAIL task" in result.output
    assert "profile cheap" in result.output
    result = CliRunner().invoke(cli, ["route", "explain", str(request), "-c", str(cfg), "--json"])
    assert json.loads(result.output)["decision"]["profile"] == "cheap"


def test_contradictory_rules_are_rejected_at_load() -> None:
    text = (
        "providers: {up: {type: openai, api_key: k}}\nmodels: {m: {deployments: [up/x]}}\n"
        "routing:\n  rules:\n    - {name: r, when: {min_prompt_tokens: 10, max_prompt_tokens: 5}, route: {model: m}}\n"
    )
    located = r"line 5, column 24: routing\.rules\.0\.when\.min_prompt_tokens: .*can never match"
    with pytest.raises(ConfigError, match=located):
        make_config(text)
    with pytest.raises(ConfigError, match=r"routing\.rules\.0\.route\.model: 'nope'"):
        make_config(
            text.replace("max_prompt_tokens: 5", "max_prompt_tokens: 50").replace("model: m}", "model: nope}")
        )


def test_contradictory_rules_in_a_config_built_in_python_are_rejected_by_the_gateway() -> None:
    rules = [
        {"name": "r", "when": {"min_messages": 3, "max_messages": 2}, "route": {"model": "m"}},
        {"name": "r", "route": {"model": "m"}},
    ]
    config = Config.model_validate(
        {
            "providers": {"up": {"type": "openai", "api_key": "k"}},
            "models": {"m": {"deployments": ["up/x"]}},
            "routing": {"rules": rules},
        }
    )
    with pytest.raises(ConfigError) as info:
        Gateway(config)
    assert info.value.message == (
        "embedded default: routing.rules.0.when.min_messages: 3 is greater than max_messages (2): "
        "rule 'r' can never match; routing.rules.1.name: 'r' is already the name of routing.rules.0"
    )


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    open_=st.sets(st.integers(0, 4)),
    strategy=st.sampled_from(["priority", "least_inflight", "lowest_latency", "weighted"]),
)
def test_open_circuits_are_never_picked_and_priority_order_holds(open_: set[int], strategy: str) -> None:
    deployments = ", ".join(f"up/gpt-{i}" for i in range(5))
    config = make_config(
        f"providers: {{up: {{type: openai, api_key: k}}}}\nmodels:\n  m: {{strategy: {strategy}, deployments: [{deployments}]}}\n"
    )
    gw = Gateway(config)
    group = gw.router.group("m")
    for member in group.members:
        if member.index in open_:
            for _ in range(10):
                member.state.breaker.record(False)
            assert member.state.breaker.state is BreakerState.OPEN
    picked = gw.router._ordered(group, set())
    assert {m.index for m in picked} == set(range(5)) - open_
    if strategy == "priority":
        assert [m.index for m in picked] == sorted(set(range(5)) - open_)
