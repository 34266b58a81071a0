"""The local OpenAI-compatible rows (vLLM, llama.cpp server, LM Studio): what they can honour.

A field these servers do not read is dropped without an error, so every OpenAI param a row's
server would silently ignore is refused by the gateway (400 naming the param and the row), or
dropped visibly with ``settings.drop_unsupported_params``. ``top_k``, which OpenAI's API has not
but all three servers read, is accepted and forwarded (the row's ``extra_params``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.conftest import make_config
from tests.contract.harness import configured
from tests.server_helpers import serve
from uniinfer.errors import UnsupportedParamError
from uniinfer.gateway import Gateway
from uniinfer.server import create_app
from uniinfer.types import ChatRequest

#: Fields vLLM's ChatCompletionRequest (vllm/entrypoints/openai/protocol.py) does not have, or
#: documents as ignored (parallel_tool_calls, user): its OpenAIBaseModel takes extra fields and
#: only logs "The following fields were present in the request but ignored".
VLLM_IGNORES: dict[str, Any] = {
    "parallel_tool_calls": False,
    "user": "u-1",
    "safety_identifier": "u-1",
    "metadata": {"k": "v"},
    "service_tier": "flex",
    "verbosity": "low",
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "store": True,
}
#: Fields llama-server never reads: oaicompat_chat_params_parse (tools/server/server-common.cpp)
#: copies the body into the task params, and params_from_json_cmpl (server-task.cpp) reads only
#: the fields it knows.
LLAMACPP_IGNORES: dict[str, Any] = {
    "user": "u-1",
    "safety_identifier": "u-1",
    "metadata": {"k": "v"},
    "service_tier": "flex",
    "verbosity": "low",
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "store": True,
    "prediction": {"type": "content", "content": "x"},
    "web_search_options": {},
    "audio": {"voice": "alloy", "format": "wav"},
}
#: Fields outside LM Studio's "supported payload parameters" and API changelog; its server takes
#: them without an error (logprobs is accepted and never answered: lmstudio-ai/lms#60).
LMSTUDIO_IGNORES: dict[str, Any] = {
    **VLLM_IGNORES,
    "n": 2,
    "logprobs": True,
    "top_logprobs": 2,
    "prediction": {"type": "content", "content": "x"},
    "web_search_options": {},
    "modalities": ["text"],
}
#: OpenAI's prompt-cache hints: left out and named, whatever the setting (see fitting).
CACHE_HINTS = ("prompt_cache_key", "prompt_cache_retention")
IGNORED = [
    (row, param, value)
    for row, ignores in (
        ("vllm", VLLM_IGNORES),
        ("llamacpp", LLAMACPP_IGNORES),
        ("lmstudio", LMSTUDIO_IGNORES),
    )
    for param, value in ignores.items()
    if param not in CACHE_HINTS
]
#: What each server reads (and so must reach it): llama.cpp reads n, logprobs and
#: parallel_tool_calls, and max_completion_tokens as well as max_tokens (server-task.cpp).
HONOURED: dict[str, dict[str, Any]] = {
    "llamacpp": {"n": 2, "logprobs": True, "top_logprobs": 2, "max_completion_tokens": 5, "seed": 7},
    "lmstudio": {"seed": 7, "logit_bias": {"50256": -100}, "stop": ["x"], "presence_penalty": 0.5},
    "vllm": {"n": 2, "logprobs": True, "seed": 7},
}
LOCAL_ROWS = ["vllm", "llamacpp", "lmstudio"]
MSG: Any = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    # Nothing listens on port 9: a request that got past the checks would fail to connect.
    gw = Gateway(
        make_config(
            "providers:\n"
            + "".join(f"  {row}: {{base_url: 'http://127.0.0.1:9/v1'}}\n" for row in LOCAL_ROWS)
        )
    )
    yield gw
    await gw.aclose()


def _request(row: str, param: str, value: Any) -> ChatRequest:
    fields: dict[str, Any] = {"model": f"{row}/m", "messages": MSG, param: value}
    if param == "top_logprobs":
        fields["logprobs"] = True  # required with it, and refused too: both are named
    if param == "parallel_tool_calls":
        fields["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    return ChatRequest.model_validate(fields)


@pytest.mark.parametrize(("row", "param", "value"), IGNORED, ids=[f"{r}-{p}" for r, p, _ in IGNORED])
async def test_a_param_the_server_would_silently_ignore_is_refused(
    gateway: Gateway, row: str, param: str, value: Any
) -> None:
    with pytest.raises(UnsupportedParamError) as info:
        await gateway.chat(_request(row, param, value))
    assert info.value.param == ("logprobs" if param == "top_logprobs" else param)
    assert info.value.provider == row
    assert f"provider '{row}'" in info.value.message
    assert param in info.value.message


@pytest.mark.parametrize("row", LOCAL_ROWS)
async def test_what_the_server_reads_reaches_it(row: str) -> None:
    """The params a row's server honours are sent as given (or under the name it documents)."""
    async with configured(row) as (fake, app, _url, config):
        gw = Gateway(config)
        try:
            request = ChatRequest.model_validate(
                {"model": f"{row}/{fake.chat_model}", "messages": MSG, **HONOURED[row]}
            )
            await gw.chat(request)
        finally:
            await gw.aclose()
    sent = app["requests"][-1]["body"]
    for param, value in HONOURED[row].items():
        assert sent[param] == value, param


async def test_lmstudio_gets_the_output_limit_as_max_tokens() -> None:
    """LM Studio documents max_tokens only; max_completion_tokens (the openai SDK's) is renamed."""
    async with configured("lmstudio") as (fake, app, _url, config):
        gw = Gateway(config)
        try:
            request = ChatRequest.model_validate(
                {"model": f"lmstudio/{fake.chat_model}", "messages": MSG, "max_completion_tokens": 2}
            )
            answer = await gw.chat(request)
        finally:
            await gw.aclose()
    sent = app["requests"][-1]["body"]
    assert sent["max_tokens"] == 2
    assert "max_completion_tokens" not in sent
    assert answer.choices[0].finish_reason == "length"


# --- top_k: accepted by the local servers, refused for OpenAI itself --------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("row", LOCAL_ROWS)
async def test_top_k_is_forwarded_to_a_local_server_through_the_server(row: str, stream: bool) -> None:
    async with configured(row) as (fake, app, _url, config), serve(create_app(config)) as base:
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=f"{row}/{fake.chat_model}", messages=MSG, stream=stream, extra_body={"top_k": 20}
            )
            if stream:
                text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
            else:
                text = raw.parse().choices[0].message.content or ""
        finally:
            await client.close()
    assert text == "echo: hello there"
    assert "x-uniinfer-dropped-params" not in raw.headers
    assert app["requests"][-1]["body"]["top_k"] == 20


@pytest.mark.parametrize("drop", [False, True], ids=["strict", "drop"])
async def test_top_k_stays_refused_for_openai_itself(drop: bool) -> None:
    """OpenAI's API has no top_k (its fake answers 'Unrecognized request argument'): never sent."""
    async with (
        configured("openai", drop=drop) as (fake, app, _url, config),
        serve(create_app(config)) as base,
    ):
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        try:
            call = client.chat.completions.with_raw_response.create(
                model=f"openai/{fake.chat_model}", messages=MSG, extra_body={"top_k": 20}
            )
            if drop:
                raw = await call
                assert raw.headers["x-uniinfer-dropped-params"] == "top_k"
                assert raw.parse().choices[0].message.content == "echo: hello there"
            else:
                with pytest.raises(openai.BadRequestError) as info:
                    await call
                assert isinstance(info.value.body, dict)
                assert info.value.body["param"] == "top_k"
                assert "openai" in info.value.message
        finally:
            await client.close()
    assert all("top_k" not in r["body"] for r in app["requests"] if isinstance(r["body"], dict))


# --- tool_choice: llama.cpp reads a string only ----------------------------------------------------

WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
NAMED: Any = {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("drop", [False, True], ids=["strict", "drop"])
async def test_a_named_tool_choice_is_refused_by_llamacpp_not_turned_into_auto(drop: bool) -> None:
    """llama-server reads tool_choice with json_value(body, "tool_choice", "auto"): an object
    fails its type check and the model may answer without the tool the caller forced."""
    async with (
        configured("llamacpp", drop=drop) as (fake, app, _url, config),
        serve(create_app(config)) as base,
    ):
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        try:
            call = client.chat.completions.with_raw_response.create(
                model=f"llamacpp/{fake.chat_model}", messages=MSG, tools=[WEATHER], tool_choice=NAMED
            )
            if drop:
                raw = await call
                assert raw.headers["x-uniinfer-dropped-params"] == "tool_choice"
                assert "tool_choice" not in app["requests"][-1]["body"]
                assert app["requests"][-1]["body"]["tools"][0]["function"]["name"] == "get_weather"
            else:
                with pytest.raises(openai.BadRequestError) as info:
                    await call
                assert isinstance(info.value.body, dict)
                assert info.value.body["param"] == "tool_choice"
                assert "llamacpp" in info.value.message
                assert "get_weather" in info.value.message
                assert not app["requests"]  # nothing reached the server
        finally:
            await client.close()


@pytest.mark.parametrize(
    ("row", "choice"),
    [
        ("llamacpp", "auto"),
        ("llamacpp", "none"),
        ("llamacpp", "required"),
        ("vllm", NAMED),
        ("lmstudio", NAMED),
    ],
    ids=["llamacpp-auto", "llamacpp-none", "llamacpp-required", "vllm-named", "lmstudio-named"],
)
async def test_the_tool_choices_a_server_reads_reach_it(row: str, choice: Any) -> None:
    """llama.cpp's strings, and a named function where the server reads one (vLLM, LM Studio)."""
    async with configured(row) as (fake, app, _url, config):
        gw = Gateway(config)
        try:
            request = ChatRequest.model_validate(
                {
                    "model": f"{row}/{fake.chat_model}",
                    "messages": MSG,
                    "tools": [WEATHER],
                    "tool_choice": choice,
                }
            )
            await gw.chat(request)
        finally:
            await gw.aclose()
    assert app["requests"][-1]["body"]["tool_choice"] == choice
