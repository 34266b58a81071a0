"""Bedrock prompt caching: ``cache_control`` breakpoints as Converse ``cachePoint`` blocks.

A breakpoint becomes ``{"cachePoint": {"type": "default"}}`` right after the block it closes, in
``system``, a turn's ``content`` and ``toolConfig.tools``
(https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html), for the models that
take one there (``bedrock_models.PROMPT_CACHING``); elsewhere it is left out, visibly. The
cache reads and writes Bedrock reports come back in the usage, JSON and streamed. Through the
server with the official ``anthropic`` and ``openai`` SDKs, over the faithful fake.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
import pytest_asyncio

from tests.fakes.anthropic import sign
from tests.fakes.bedrock import API_KEY, bedrock_app
from tests.fakes.common import run_fake
from tests.providers.bedrock_server import BedrockServer, bedrock_server
from tests.providers.test_bedrock import PNG, WEATHER, chat, make_adapter, sent
from uniinfer.fitting import RequestFitter
from uniinfer.providers.bedrock_models import prompt_caching
from uniinfer.routing.group import Target

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
POINT = {"cachePoint": {"type": "default"}}
#: Caching everywhere, one-hour TTL too.
SONNET_45 = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
#: Caching everywhere, five minutes only.
SONNET_37 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
#: Caching in system and messages, not on tools.
NOVA = "us.amazon.nova-pro-v1:0"
#: No caching.
LEGACY = "anthropic.claude-3-5-sonnet-20240620-v1:0"


def cached_tool() -> dict[str, Any]:
    return {**copy.deepcopy(WEATHER), "cache_control": EPHEMERAL}


def text(value: str, cache: dict[str, Any] | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": value}
    if cache is not None:
        part["cache_control"] = cache
    return part


# --- which models, where ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "places", "hour"),
    [
        (SONNET_45, {"system", "messages", "tools"}, True),
        ("global.anthropic.claude-opus-4-6-v1", {"system", "messages", "tools"}, True),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", {"system", "messages", "tools"}, True),
        (SONNET_37, {"system", "messages", "tools"}, False),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", {"system", "messages", "tools"}, False),
        ("eu.anthropic.claude-sonnet-4-20250514-v1:0", {"system", "messages", "tools"}, False),
        ("anthropic.claude-opus-4-1-20250805-v1:0", {"system", "messages", "tools"}, False),
        (NOVA, {"system", "messages"}, False),
        ("amazon.nova-micro-v1:0", {"system", "messages"}, False),
        (LEGACY, set(), False),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", set(), False),
        ("anthropic.claude-3-haiku-20240307-v1:0", set(), False),
        ("anthropic.claude-instant-v1", set(), False),
        ("meta.llama3-70b-instruct-v1:0", set(), False),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3", set(), False),
    ],
)
def test_which_models_take_checkpoints_where(model: str, places: set[str], hour: bool) -> None:
    caching = prompt_caching(model)
    assert (set(caching.places), caching.hour) == (places, hour)


# --- the request ------------------------------------------------------------------------------


def full_conversation() -> list[dict[str, Any]]:
    """A breakpoint on each kind of block the Anthropic Messages ingress can mark."""
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        }
    ]
    return [
        {"role": "system", "content": [text("You are terse."), text("Rules.", EPHEMERAL)]},
        {
            "role": "user",
            "content": [
                text("context", EPHEMERAL),
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                text("weather?"),
            ],
        },
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": [text("21 C", EPHEMERAL)]},
    ]


def test_breakpoints_become_cache_points_after_the_blocks_they_close() -> None:
    request = chat(full_conversation(), tools=[cached_tool()])
    body = sent(request, SONNET_45)
    assert body["system"] == [{"text": "You are terse."}, {"text": "Rules."}, POINT]
    user, assistant, result = body["messages"]
    assert user["content"] == [
        {"text": "context"},
        POINT,
        {"image": {"format": "png", "source": {"bytes": PNG}}},
        {"text": "weather?"},
    ]
    assert assistant["content"][-1].keys() == {"toolUse"}
    # a tool result's breakpoint follows the toolResult: its content takes no cachePoint
    assert result["content"] == [
        {"toolResult": {"toolUseId": "call_1", "content": [{"text": "21 C"}]}},
        POINT,
    ]
    assert body["toolConfig"]["tools"][1] == POINT
    assert body["toolConfig"]["tools"][0].keys() == {"toolSpec"}
    assert "_cache_point" not in str(body)
    assert make_adapter().params_left_out(request, SONNET_45) == ()


def test_tool_calls_images_and_files_close_their_own_prefix() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{}"},
        "cache_control": EPHEMERAL,
    }
    image = {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}"},
        "cache_control": EPHEMERAL,
    }
    pdf = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0xLjQ="},
        "cache_control": EPHEMERAL,
    }
    history = [
        {"role": "user", "content": [image, pdf, text("read these")]},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
    ]
    user, assistant, _ = sent(chat(history, tools=[WEATHER]), SONNET_45)["messages"]
    assert [next(iter(b)) for b in user["content"]] == [
        "image",
        "cachePoint",
        "document",
        "cachePoint",
        "text",
    ]
    assert [next(iter(b)) for b in assistant["content"]] == ["toolUse", "cachePoint"]


def test_an_image_moved_into_its_tool_result_puts_its_checkpoint_after_the_result() -> None:
    # what the Anthropic Messages ingress makes of a cached tool_result ending with an image
    from uniinfer.types.chat import UserMessage

    request = chat(
        [
            {"role": "user", "content": "look"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a photo"},
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
            },
        ],
        tools=[WEATHER],
    )
    last = request.messages[-1]
    assert isinstance(last, UserMessage)
    assert isinstance(last.content, list)
    image = last.content[0].model_copy(update={"of_tool_result": ("call_1", 1), "cache_control": EPHEMERAL})
    messages = [*request.messages[:-1], last.model_copy(update={"content": [image]})]
    body = sent(request.model_copy(update={"messages": messages}), SONNET_45)
    result, point = body["messages"][-1]["content"]
    assert [next(iter(c)) for c in result["toolResult"]["content"]] == ["text", "image"]
    assert point == POINT


def test_a_one_hour_ttl_is_kept_where_the_model_has_it() -> None:
    request = chat([{"role": "system", "content": [text("sys", HOUR)]}, {"role": "user", "content": "hi"}])
    assert sent(request, SONNET_45)["system"][1] == {"cachePoint": {"type": "default", "ttl": "1h"}}
    # five minutes is the default: not sent, and not a loss
    five = chat([{"role": "user", "content": [text("hi", {"type": "ephemeral", "ttl": "5m"})]}])
    assert sent(five, SONNET_45)["messages"][0]["content"][1] == POINT
    assert make_adapter().params_left_out(five, SONNET_37) == ()
    # a model without one-hour caching gets the default, and the loss is named
    assert sent(request, SONNET_37)["system"][1] == POINT
    assert make_adapter().params_left_out(request, SONNET_37) == ("cache_control.ttl",)


def test_where_the_model_takes_no_checkpoint_the_breakpoint_is_left_out_visibly() -> None:
    adapter = make_adapter()
    request = chat(full_conversation(), tools=[cached_tool()])
    body = sent(request, LEGACY)
    assert "cachePoint" not in str(body)
    assert adapter.params_left_out(request, LEGACY) == ("cache_control",)
    # Nova: system and messages, not tools
    nova = sent(request, NOVA)
    assert nova["system"][-1] == POINT
    assert POINT in nova["messages"][0]["content"]
    assert POINT not in nova["toolConfig"]["tools"]
    assert adapter.params_left_out(request, NOVA) == ("cache_control",)
    assert adapter.params_left_out(chat(full_conversation()), NOVA) == ()
    # not a param the fitter refuses: the request goes, the drop is named
    fitted, dropped = RequestFitter(drop=False).chat(request, Target("bedrock", LEGACY, adapter))
    assert (fitted, dropped) == (request, ("cache_control",))
    # nothing asked, nothing said
    assert adapter.params_left_out(chat(), LEGACY) == ()


def test_a_breakpoint_on_a_blank_text_is_left_out_visibly() -> None:
    # Converse refuses a blank text block: it is left out, and its breakpoint with it
    adapter = make_adapter()
    request = chat([{"role": "user", "content": [text("Question?"), text("  ", EPHEMERAL)]}])
    assert "cachePoint" not in str(sent(request, SONNET_45))
    assert adapter.params_left_out(request, SONNET_45) == ("cache_control",)
    kept = chat([{"role": "user", "content": [text("Question?", EPHEMERAL), text("  ")]}])
    assert adapter.params_left_out(kept, SONNET_45) == ()


def test_more_than_four_breakpoints_are_sent_as_asked() -> None:
    # as the Claude API adapter does: the provider's 400 names the limit (see the fake test below)
    request = chat([{"role": "user", "content": [text(f"part {i}", EPHEMERAL) for i in range(5)]}])
    assert sent(request, SONNET_45)["messages"][0]["content"].count(POINT) == 5


# --- the fake checks cachePoint blocks as Bedrock does ------------------------------------------


async def post(model: str, body: dict[str, Any]) -> tuple[int, str]:
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with (
        run_fake(bedrock_app()) as url,
        aiohttp.ClientSession() as session,
        session.post(f"{url}/model/{model}/converse", json=body, headers=headers) as resp,
    ):
        return resp.status, (await resp.json()).get("message", "")


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(blocks)}]}


SPEC = {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}


@pytest.mark.parametrize(
    ("model", "body", "text"),
    [
        (SONNET_45, user({"text": "hi"}, {"cachePoint": {"type": "ephemeral"}}), "enum value set: [default]"),
        (SONNET_45, user({"text": "hi"}, {"cachePoint": {}}), "must not be null"),
        (SONNET_45, user({"text": "hi"}, {"cachePoint": {"type": "default", "x": 1}}), "extraneous key"),
        (SONNET_45, user({"text": "hi"}, {"cachePoint": {"type": "default", "ttl": "2h"}}), "[5m, 1h]"),
        (SONNET_45, user({"text": "hi", "cachePoint": {"type": "default"}}), "exactly one of"),
        (LEGACY, user({"text": "hi"}, POINT), "unsupported model"),
        (
            SONNET_37,
            user({"text": "hi"}, {"cachePoint": {"type": "default", "ttl": "1h"}}),
            "unsupported model",
        ),
        (NOVA, {**user({"text": "hi"}), "toolConfig": {"tools": [SPEC, POINT]}}, "unsupported model"),
        (SONNET_45, user(*[b for _ in range(5) for b in ({"text": "hi"}, POINT)]), "A maximum of 4"),
        (
            SONNET_45,
            {
                "system": [{"text": "sys"}, POINT],
                **user({"text": "hi"}, {"cachePoint": {"type": "default", "ttl": "1h"}}),
            },
            "must not come after a ttl='5m'",
        ),
        (
            SONNET_45,
            {
                "messages": [
                    {"role": "user", "content": [{"text": "hi"}]},
                    {
                        "role": "assistant",
                        "content": [
                            {"reasoningContent": {"reasoningText": {"text": "x", "signature": sign("x")}}},
                            POINT,
                        ],
                    },
                    {"role": "user", "content": [{"text": "go"}]},
                ]
            },
            "after reasoning block",
        ),
        (
            SONNET_45,
            {
                "messages": [
                    {"role": "user", "content": [{"text": "hi"}]},
                    {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}],
                    },
                    {
                        "role": "user",
                        "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}, POINT]}}],
                    },
                ],
                "toolConfig": {"tools": [SPEC]},
            },
            "exactly one of: json, text, image, document",
        ),
    ],
)
async def test_the_fake_refuses_cache_points_as_bedrock_does(
    model: str, body: dict[str, Any], text: str
) -> None:
    status, message = await post(model, body)
    assert status == 400
    assert text in message


async def test_the_fake_takes_cache_points_where_bedrock_does() -> None:
    hour = {"cachePoint": {"type": "default", "ttl": "1h"}}
    body = {
        "system": [{"text": "sys"}, hour],
        "messages": [{"role": "user", "content": [{"text": "hi"}, {"text": "there"}, POINT]}],
        "toolConfig": {"tools": [SPEC, hour]},
    }
    assert (await post(SONNET_45, body))[0] == 200
    nova = {
        "system": [{"text": "sys"}, POINT],
        "messages": [{"role": "user", "content": [{"text": "hi"}, POINT]}],
    }
    assert (await post(NOVA, nova))[0] == 200


# --- through the server --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def env() -> AsyncIterator[BedrockServer]:
    async with bedrock_server() as server:
        yield server


def messages_request(model: str) -> dict[str, Any]:
    """An Anthropic Messages request with breakpoints on its tools, system and first user text."""
    tool = {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
        "cache_control": HOUR,
    }
    return {
        "model": f"bedrock/{model}",
        "max_tokens": 256,
        "system": [{"type": "text", "text": "You answer from the manual below.", "cache_control": HOUR}],
        "tools": [tool],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "The manual: a long text that stays the same.",
                        "cache_control": EPHEMERAL,
                    },
                    {"type": "text", "text": "hello there"},
                ],
            }
        ],
    }


async def ask(env: BedrockServer, stream: bool, model: str = SONNET_45) -> anthropic.types.Message:
    kw = messages_request(model)
    if stream:
        async with env.anthropic.messages.stream(**kw) as events:
            return await events.get_final_message()
    return await env.anthropic.messages.create(**kw)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_messages_breakpoints_reach_bedrock_and_cache_usage_comes_back(
    env: BedrockServer, stream: bool
) -> None:
    first = await ask(env, stream)
    body = env.bodies()[-1]
    assert body["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default", "ttl": "1h"}}
    assert body["system"] == [
        {"text": "You answer from the manual below."},
        {"cachePoint": {"type": "default", "ttl": "1h"}},
    ]
    assert body["messages"][0]["content"] == [
        {"text": "The manual: a long text that stays the same."},
        POINT,
        {"text": "hello there"},
    ]
    assert first.content[0].text == "echo: The manual: a long text that stays the same. hello there"  # type: ignore[union-attr]
    # the first request writes the prefix; the same request again reads all of it
    assert first.usage.cache_read_input_tokens == 0
    written = first.usage.cache_creation_input_tokens
    assert written
    second = await ask(env, stream)
    assert (second.usage.cache_read_input_tokens, second.usage.cache_creation_input_tokens) == (written, 0)
    assert second.usage.input_tokens == first.usage.input_tokens > 0  # the part after the last checkpoint
    assert second.usage.output_tokens == first.usage.output_tokens


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_openai_clients_see_cached_tokens_in_prompt_details(env: BedrockServer, stream: bool) -> None:
    messages: Any = [
        {"role": "system", "content": [text("You answer from the manual below.", EPHEMERAL)]},
        {"role": "user", "content": "hello there"},
    ]
    model = f"bedrock/{SONNET_45}"
    usages = []
    for _ in range(2):
        if stream:
            chunks = [
                c
                async for c in await env.openai.chat.completions.create(
                    model=model, messages=messages, stream=True, stream_options={"include_usage": True}
                )
            ]
            usages.append(chunks[-1].usage)
        else:
            usages.append((await env.openai.chat.completions.create(model=model, messages=messages)).usage)
    assert env.bodies()[-1]["system"][-1] == POINT
    first, second = usages
    assert first is not None
    assert second is not None
    assert first.prompt_tokens_details is not None
    assert second.prompt_tokens_details is not None
    assert first.prompt_tokens_details.cached_tokens == 0
    assert getattr(first.prompt_tokens_details, "cache_write_tokens", None) == 6
    assert second.prompt_tokens_details.cached_tokens == 6  # "You answer from the manual below."
    # prompt_tokens includes what was read and written: the same both times
    assert first.prompt_tokens == second.prompt_tokens
    assert second.total_tokens == second.prompt_tokens + second.completion_tokens


async def test_a_model_without_prompt_caching_answers_and_names_the_drop(env: BedrockServer) -> None:
    raw = await env.anthropic.messages.with_raw_response.create(**messages_request(LEGACY))
    assert raw.headers["x-uniinfer-dropped-params"] == "cache_control"
    message = await raw.parse()
    assert message.content[0].text.startswith("echo: ")  # type: ignore[union-attr]
    assert "cachePoint" not in str(env.bodies()[-1])
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (0, 0)
    # a model with five-minute caching only: checkpoints sent, the one-hour TTL named
    raw = await env.anthropic.messages.with_raw_response.create(**messages_request(SONNET_37))
    assert raw.headers["x-uniinfer-dropped-params"] == "cache_control.ttl"
    assert env.bodies()[-1]["system"][-1] == POINT


async def test_more_than_four_breakpoints_get_bedrocks_400(env: BedrockServer) -> None:
    kw = messages_request(SONNET_45)
    kw["messages"][0]["content"] = [
        {"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(3)
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        await env.anthropic.messages.create(**kw)
    assert "A maximum of 4" in info.value.message
    assert str(env.bodies()[-1]).count("cachePoint") == 5
