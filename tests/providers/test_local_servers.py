"""The local OpenAI-compatible rows (vLLM, llama.cpp server, LM Studio): what they can honour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import make_config
from uniinfer.errors import UnsupportedParamError
from uniinfer.gateway import Gateway
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


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    # Nothing listens on port 9: a request that got past the checks would fail to connect.
    gw = Gateway(make_config("providers:\n  vllm: {base_url: 'http://127.0.0.1:9/v1'}\n"))
    yield gw
    await gw.aclose()


@pytest.mark.parametrize(("param", "value"), list(VLLM_IGNORES.items()), ids=list(VLLM_IGNORES))
async def test_vllm_refuses_the_params_it_would_silently_ignore(
    gateway: Gateway, param: str, value: Any
) -> None:
    fields: dict[str, Any] = {
        "model": "vllm/m",
        "messages": [{"role": "user", "content": "hi"}],
        param: value,
    }
    if param == "parallel_tool_calls":
        fields["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    with pytest.raises(UnsupportedParamError) as info:
        await gateway.chat(ChatRequest.model_validate(fields))
    assert info.value.param == param
    assert info.value.provider == "vllm"
    assert "vllm" in info.value.message
