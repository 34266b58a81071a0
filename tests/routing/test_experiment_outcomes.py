"""What an experiment records of a request, end to end against the OpenAI fake."""

from __future__ import annotations

import pytest

from tests.conftest import FAKE_KEY, make_config
from tests.fakes.common import run_fake
from tests.fakes.openai import openai_app
from uniinfer.errors import ConfigError
from uniinfer.gateway import Gateway
from uniinfer.stages import RequestContext
from uniinfer.types import ChatRequest

EXPERIMENT = """
routing:
  experiments:
    - name: ab
      model: chat
      variants:
        - {name: control, model: chat-a}
        - {name: candidate, model: chat-b}
"""


async def test_a_variant_answered_by_a_fallback_group_is_an_error_of_the_variant() -> None:
    """The candidate's group always fails and falls back to the control's group: the candidate
    answered nothing, so its report says so (it showed no errors, with the control's latency)."""
    async with run_fake(openai_app(api_key=FAKE_KEY)) as base:
        gw = Gateway(
            make_config(
                f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: '{base}/v1'}}\n"
                "models:\n  chat-a: {deployments: [up/gpt-a]}\n"
                "  chat-b: {deployments: [up/error-500], retry: {max_retries: 0}, fallbacks: {default: [chat-a]}}\n"
                + EXPERIMENT
            )
        )
        try:
            served: dict[str, set[str]] = {}
            for i in range(30):
                ctx = RequestContext("chat")
                request = {"model": "chat", "user": f"u{i}", "messages": [{"role": "user", "content": "hi"}]}
                answer = await gw.chat(ChatRequest.model_validate(request), ctx)
                assert answer.choices[0].message.content  # every caller was answered
                assert ctx.route is not None
                assert ctx.route.variant is not None
                served.setdefault(ctx.route.variant, set()).add(ctx.route.group or "")
            assert served == {"control": {"chat-a"}, "candidate": {"chat-a"}}
            report = {v["variant"]: v for v in gw.router.experiments.report("ab").to_dict()["variants"]}
            candidate, control = report["candidate"], report["control"]
            assert candidate["requests"] == candidate["errors"] > 0
            assert candidate["error_rate"] == 1.0
            assert candidate["latency_s"]["n"] == 0  # the fallback's latency is not the candidate's
            assert (control["errors"], control["latency_s"]["n"]) == (0, control["requests"])
        finally:
            await gw.aclose()


def test_two_experiments_cannot_take_one_model_name() -> None:
    second = EXPERIMENT.replace("routing:\n  experiments:\n", "").replace("name: ab", "name: other")
    with pytest.raises(ConfigError, match="experiment 'ab' already takes model 'chat'"):
        make_config(
            "providers:\n  up: {type: openai, api_key: k}\n"
            "models:\n  chat-a: {deployments: [up/a]}\n  chat-b: {deployments: [up/b]}\n"
            + EXPERIMENT
            + second
        )


@pytest.mark.parametrize("sticky_by", ["metadata.", "header.", "session"])
def test_a_sticky_key_names_where_it_comes_from(sticky_by: str) -> None:
    # "metadata." with no key passed, and assigned every request at random without a word
    with pytest.raises(ConfigError, match="sticky_by is 'user'"):
        make_config(
            "providers:\n  up: {type: openai, api_key: k}\n"
            "models:\n  chat-a: {deployments: [up/a]}\n  chat-b: {deployments: [up/b]}\n"
            + EXPERIMENT.replace("model: chat\n", f"model: chat\n      sticky_by: '{sticky_by}'\n")
        )
