"""A faithful fake of the OpenAI API: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

It validates requests the way the real API does (same status, ``message``,
``param`` and ``code`` for the rules it implements), answers in the real wire
format (including the streaming chunk sequence, ``usage: null`` on every chunk
before the usage chunk, ``obfuscation`` fields and the ``[DONE]`` sentinel) and
fails on demand by model name (see :mod:`tests.fakes.common`). A strict schema
(``response_format`` json_schema or a tool with ``strict: true``) must be one strict mode
takes: every object with ``additionalProperties: false`` and all its properties required
(:func:`strict_schema_problem`).

Behaviour by model name, on top of :func:`tests.fakes.common.mode_of`:

- contains ``context``  400 ``context_length_exceeded`` (8192-token window)
- contains ``cached``   ``prompt_tokens_details.cached_tokens = prompt_tokens // 2``
- contains ``reason``   ``completion_tokens_details.reasoning_tokens = 5`` (part of
  ``completion_tokens``)
- starts with ``o1``, ``o3``, ``o4`` or ``gpt-5`` a reasoning model: ``max_tokens`` is a 400
  (``max_completion_tokens`` only)
- starts with ``tool``  a call to the first declared tool (also whenever
  ``tool_choice`` is ``"required"`` or names a function)
- contains ``parallel`` (with ``tool``) a call to every declared tool, in order, in one
  message (unless ``parallel_tool_calls`` is false)
- contains ``preamble`` (with ``tool``) the text ``"Let me check."`` before the call(s), in
  the same message, as models do
- ``error-502``         an HTML body, like the real edge proxy sends

Usage is deterministic: ``prompt_tokens`` is the number of whitespace-separated
words of every message's text plus 3 per message; ``completion_tokens`` the words
of the answer (times ``n``). ``max_tokens`` / ``max_completion_tokens`` truncate
the answer to that many words with ``finish_reason: "length"``; ``stop`` sequences cut it
before the first match (left out, ``finish_reason: "stop"``).

Every request is recorded in ``app["requests"]`` as ``{"method", "path",
"headers", "body"}`` (``headers`` is case-insensitive; ``body`` is the decoded
JSON, ``None`` for an empty body, the raw text when it is not JSON).

Impersonating an OpenAI-compatible provider (:func:`row_fake` builds one from a
registry row): ``openai_app(prefix=..., rejects=..., accepts=..., stream_usage=...,
finish_reasons=..., usage_in_choice=..., message_names=...)`` serves under the
provider's own path, answers 400 ``unsupported_parameter`` for a field the provider
rejects (and, like Groq, for a message's ``name``), takes the fields beyond OpenAI's
that it accepts (a row's ``extra_params``, e.g. ``top_k``), reports stream usage the
provider's way (``"stream_options"``: only when asked; ``"always"``: on the last
content chunk, unasked; ``"never"``: not at all), uses the provider's
``finish_reason`` vocabulary and, like Moonshot, can put stream usage inside the last
choice. ``api_key=None`` is a local server without auth.
The defaults are the real OpenAI API.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import random
import re
import string
import struct
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.common import FakeProvider, abort, last_user_text, mode_of, stream_response
from tests.fakes.structured import instance
from uniinfer.providers.base import ProviderSpec
from uniinfer.providers.openai import url_placeholders

__all__ = [
    "DEFAULT_MODELS",
    "TOOL_ARGUMENTS",
    "embedding_vector",
    "fake_provider",
    "mask_key",
    "openai_app",
    "prompt_tokens",
    "row_fake",
]

DEFAULT_MODELS = ("gpt-4o-mini", "text-embedding-3-small")
CONTEXT_WINDOW = 8192
FINGERPRINT = "fp_f4ke5e7e12"
TOOL_ARGUMENTS = '{"location": "Paris"}'

# Top-level fields of CreateChatCompletionRequest in the official spec.
_CHAT_FIELDS = frozenset(
    {
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "messages", "metadata", "modalities", "model",
        "moderation", "n", "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
        "prompt_cache_options", "prompt_cache_retention", "reasoning_effort", "response_format",
        "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options",
        "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
        "web_search_options",
    }
)  # fmt: skip
_EMBEDDING_FIELDS = frozenset({"dimensions", "encoding_format", "input", "model", "user"})

_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_MESSAGE_FIELDS = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "refusal", "tool_calls", "audio", "function_call"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
_PART_TYPES = ("text", "image_url", "input_audio", "refusal", "audio", "file")
_PARTS_BY_ROLE = {
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
    "function": frozenset({"text"}),
}
# prompt_cache_breakpoint: on text, image, audio and file parts (the spec's content part schemas)
_PART_FIELDS = {
    "text": frozenset({"type", "text", "prompt_cache_breakpoint"}),
    "image_url": frozenset({"type", "image_url", "prompt_cache_breakpoint"}),
    "input_audio": frozenset({"type", "input_audio", "prompt_cache_breakpoint"}),
    "refusal": frozenset({"type", "refusal"}),
    "audio": frozenset({"type", "audio"}),
    "file": frozenset({"type", "file", "prompt_cache_breakpoint"}),
}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

_PARSE_ERROR = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
    "If you have trouble figuring out how to fix this, please contact us through our help center at "
    "help.openai.com.)"
)
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username. You can obtain an API key "
    "from https://platform.openai.com/account/api-keys."
)
_BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


class APIError(Exception):
    """An error answered in the OpenAI shape ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return _json(body, status=self.status, headers=self.headers)


def _invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


# --- app ----------------------------------------------------------------------------


def openai_app(
    *,
    api_key: str | None = "sk-test",
    models: list[str] | None = None,
    prefix: str = "/v1",
    rejects: frozenset[str] = frozenset(),
    accepts: frozenset[str] = frozenset(),
    stream_usage: str = "stream_options",
    finish_reasons: Mapping[str, str] | None = None,
    usage_in_choice: bool = False,
    reasoning_limits: bool = True,
    message_names: bool = True,
    reasoning_back: frozenset[str] = frozenset(),
) -> web.Application:
    """The fake OpenAI API, served under ``prefix`` (see the module docstring).

    ``finish_reasons`` maps OpenAI's values to the impersonated provider's;
    ``accepts`` are top-level fields beyond OpenAI's that the provider takes
    (``top_k``: a positive integer), which the real API refuses as unrecognized.
    ``reasoning_limits``: OpenAI's reasoning models (o-series, GPT-5) refuse ``max_tokens``.
    ``message_names=False``: a ``name`` on a system, developer, user or assistant message is a
    400 ``unsupported_parameter``, as Groq answers it. ``reasoning_back``: the previous-turn
    reasoning fields an assistant message may carry (DeepSeek's ``reasoning_content``...).
    """
    if stream_usage not in ("stream_options", "always", "never"):
        raise ValueError(f"unknown stream_usage {stream_usage!r}")
    app = web.Application()
    with warnings.catch_warnings():
        # The tests address these by plain string keys (app["requests"]).
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["api_key"] = api_key
        app["models"] = list(models) if models is not None else list(DEFAULT_MODELS)
        app["requests"] = []
        app["rejects"] = frozenset(rejects)
        app["accepts"] = frozenset(accepts)
        app["stream_usage"] = stream_usage
        app["finish_reasons"] = dict(finish_reasons or {})
        app["usage_in_choice"] = usage_in_choice
        app["reasoning_limits"] = reasoning_limits
        app["message_names"] = message_names
        app["reasoning_back"] = reasoning_back
    prefix = prefix.rstrip("/")
    app.router.add_post(f"{prefix}/chat/completions", _endpoint(_chat))
    app.router.add_post(f"{prefix}/embeddings", _endpoint(_embeddings))
    app.router.add_get(f"{prefix}/models", _endpoint(_list_models))
    app.router.add_get(f"{prefix}/models/{{model:.+}}", _endpoint(_get_model))
    app.router.add_route("*", "/{tail:.*}", _endpoint(_invalid_url, auth=False))
    return app


# --- impersonating a registry row ---------------------------------------------------------

#: Wire details of real providers that need no adapter setting (the decoder copes generically).
_ROW_WIRE: dict[str, dict[str, Any]] = {
    # Kimi streams put usage in choices[0] of the last chunk:
    # https://platform.moonshot.ai/docs/api/chat
    "moonshot": {"usage_in_choice": True},
    # "The following fields are currently not supported and will result in a 400 error":
    # logprobs, logit_bias, top_logprobs, messages[].name
    # (https://console.groq.com/docs/openai#currently-unsupported-openai-features)
    "groq": {"message_names": False},
}
ROW_KEY = "sk-fake-key-0123456789"
#: OpenAI's reasoning models, which take ``max_completion_tokens`` only
#: (https://platform.openai.com/docs/guides/reasoning).
REASONING_MODELS = ("o1", "o3", "o4", "gpt-5")


def row_fake(spec: ProviderSpec) -> FakeProvider:
    """This fake impersonating one OpenAI-compatible registry row.

    It serves under the row's own URL path (placeholders such as Cloudflare's
    ``{account_id}`` filled from the options it hands the suite), rejects what
    the row declares unsupported, the old names of renamed params and, for rows
    that do not ask for stream usage, ``stream_options``; it takes the row's
    ``extra_params`` (OpenAI itself refuses them as unrecognized); it reports usage and
    finish reasons the row's way. Rows that need no key get a server without auth.
    """
    values = {name: f"fake-{name.replace('_', '-')}" for name in url_placeholders(spec.base_url)}
    path = urlsplit(spec.base_url).path.rstrip("/")
    rejects = spec.unsupported_params | frozenset(spec.param_renames)
    if spec.stream_usage != "stream_options":
        rejects |= {"stream_options"}
    finish_reasons: dict[str, str] = {}
    for theirs, ours in spec.finish_reason_map.items():
        finish_reasons.setdefault(ours, theirs)
    key = ROW_KEY if spec.key_required else None

    def app() -> web.Application:
        return openai_app(
            api_key=key,
            prefix=path.format_map(values),
            rejects=rejects,
            accepts=spec.extra_params,
            stream_usage=spec.stream_usage,
            finish_reasons=finish_reasons,
            reasoning_limits=spec.name == "openai",
            reasoning_back=spec.reasoning_back,
            **_ROW_WIRE.get(spec.name, {}),
        )

    return FakeProvider(spec.name, app, base_path=path, api_key=key, options=lambda url: dict(values))


def fake_provider() -> FakeProvider:
    """The contract suite's fake for the ``openai`` provider type: the real API's behaviour."""
    from uniinfer.providers.registry import default_registry

    return row_fake(default_registry().get("openai"))


Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]


def _endpoint(
    handler: Handler, *, auth: bool = True
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Record the request, check the key, decode the body, map APIError to its response."""

    async def run(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        parsed = True
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body, parsed = raw.decode("utf-8", "replace"), False
        request.app["requests"].append(
            {
                "method": request.method,
                "path": request.path,
                "headers": CIMultiDict(request.headers),
                "body": body,
            }
        )
        try:
            if auth:
                _check_key(request)
            if auth and request.method == "POST" and (not parsed or not isinstance(body, dict)):
                raise _invalid(_PARSE_ERROR)
            return await handler(request, body)
        except APIError as exc:
            return exc.response()

    return run


def _check_key(request: web.Request) -> None:
    if request.app.get("api_key", "") is None:
        return  # a local server without auth
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if not header or scheme.lower() != "bearer" or not key:
        raise APIError(401, _NO_KEY, code=None)
    if key != request.app["api_key"]:
        raise APIError(
            401,
            f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


def mask_key(key: str) -> str:
    """Mask a key like the real API: a short prefix, asterisks, the last four characters."""
    if len(key) >= 16:
        return key[:8] + "*" * (len(key) - 12) + key[-4:]
    if len(key) > 3:
        return key[:3] + "*" * (len(key) - 3)
    return "*" * len(key)


def _headers(**extra: str) -> dict[str, str]:
    return {
        "x-request-id": f"req_{uuid.uuid4().hex}",
        "openai-processing-ms": "1",
        "openai-version": "2020-10-01",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "10000000",
        "x-ratelimit-remaining-tokens": "9999990",
        "x-ratelimit-reset-tokens": "0s",
        **extra,
    }


def _json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers=_headers(**(headers or {})),
    )


async def _invalid_url(request: web.Request, body: Any) -> web.StreamResponse:
    raise APIError(404, f"Invalid URL ({request.method} {request.path})")


# --- failure modes ----------------------------------------------------------------------


async def _apply_mode(request: web.Request, model: str) -> None:
    """Delay, fail or drop as the model name asks (after validation, like the real API)."""
    mode = mode_of(model)
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        abort(request)
    if mode.status is not None:
        raise _status_error(mode.status, model)


def _status_error(status: int, model: str) -> APIError:
    if status == 429:
        return APIError(
            429,
            f"Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
            "Limit 500, Used 500, Requested 1. Please try again in 7s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            type="requests",
            code="rate_limit_exceeded",
            headers={
                "Retry-After": "7",
                "x-ratelimit-limit-requests": "500",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "7s",
            },
        )
    if status == 500:
        return APIError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    if status == 503:
        return APIError(503, "The server is overloaded or not ready yet.", type="server_error")
    if status == 401:
        return APIError(
            401,
            "Incorrect API key provided: sk-fake*****************1234. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    if status == 403:
        return APIError(403, "You are not allowed to sample from this model")
    if status == 404:
        return APIError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    if status == 400:
        return _invalid(f"Invalid request for model '{model}'.")
    return APIError(
        status,
        f"The server returned HTTP {status}.",
        type="server_error" if status >= 500 else "invalid_request_error",
    )


def _bad_gateway() -> web.Response:
    """The real API's edge answers a 502 with HTML, not JSON."""
    return web.Response(text=_BAD_GATEWAY_HTML, status=502, content_type="text/html")


# --- validation helpers ---------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(param: str, expected: str, value: Any) -> APIError:
    return _invalid(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param,
        "invalid_type",
    )


def _missing(param: str) -> APIError:
    return _invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _unknown(param: str) -> APIError:
    return _invalid(f"Unknown parameter: '{param}'.", param, "unknown_parameter")


def _supported(values: Iterable[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) == 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _bad_value(param: str, value: Any, allowed: Iterable[str]) -> APIError:
    return _invalid(
        f"Invalid value: '{value}'. Supported values are: {_supported(allowed)}.", param, "invalid_value"
    )


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _check_number(
    body: dict[str, Any], name: str, lo: float | None, hi: float | None, *, integer: bool
) -> None:
    value = body.get(name)
    if value is None:
        return
    kind = "integer" if integer else "decimal"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and isinstance(value, float) and not value.is_integer())
    ):
        raise _wrong_type(name, "an integer" if integer else "a decimal", value)
    if lo is not None and value < lo:
        raise _invalid(
            f"Invalid '{name}': {kind} below minimum value. Expected a value >= {_fmt(lo)}, "
            f"but got {value} instead.",
            name,
            f"{kind}_below_min_value",
        )
    if hi is not None and value > hi:
        raise _invalid(
            f"Invalid '{name}': {kind} above maximum value. Expected a value <= {_fmt(hi)}, "
            f"but got {value} instead.",
            name,
            f"{kind}_above_max_value",
        )


def _unrecognized(body: dict[str, Any], known: frozenset[str]) -> None:
    unknown = [k for k in body if k not in known]
    if len(unknown) == 1:
        raise _invalid(f"Unrecognized request argument supplied: {unknown[0]}")
    if unknown:
        raise _invalid(f"Unrecognized request arguments supplied: {', '.join(unknown)}")


def _require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise _invalid("you must provide a model parameter")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    return model


# --- chat validation ------------------------------------------------------------------------------


def _validate_chat(
    body: dict[str, Any], accepts: frozenset[str] = frozenset(), reasoning_back: frozenset[str] = frozenset()
) -> None:
    _unrecognized(body, _CHAT_FIELDS | accepts)
    _require_model(body)
    if "messages" not in body or body["messages"] is None:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array of objects", messages)
    if not messages:
        raise _invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for i, msg in enumerate(messages):
        _validate_message(i, msg, reasoning_back)
    _validate_tool_sequence(messages)

    _check_number(body, "temperature", 0, 2, integer=False)
    _check_number(body, "top_p", 0, 1, integer=False)
    _check_number(body, "n", 1, 128, integer=True)
    _check_number(body, "max_tokens", 1, None, integer=True)
    _check_number(body, "max_completion_tokens", 1, None, integer=True)
    _check_number(body, "presence_penalty", -2, 2, integer=False)
    _check_number(body, "frequency_penalty", -2, 2, integer=False)
    _check_number(body, "top_logprobs", 0, 20, integer=True)
    _check_number(body, "seed", None, None, integer=True)
    for token, bias in (body.get("logit_bias") or {}).items():  # integers, -100 to 100
        if isinstance(bias, bool) or not isinstance(bias, int):
            raise _wrong_type(f"logit_bias.{token}", "an integer", bias)
        if not -100 <= bias <= 100:
            raise _invalid(
                f"Invalid 'logit_bias': {bias} is outside [-100, 100].", "logit_bias", "invalid_value"
            )
    if "top_k" in accepts:
        _check_number(body, "top_k", 1, None, integer=True)

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise _invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
            )
        if not isinstance(options, dict):
            raise _wrong_type("stream_options", "an object", options)
        for key in options:
            if key not in ("include_usage", "include_obfuscation"):
                raise _unknown(f"stream_options.{key}")

    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, list):
            if len(stop) > 4:
                raise _invalid(
                    "Invalid 'stop': array too long. Expected an array with maximum length 4, "
                    f"but got an array with length {len(stop)} instead.",
                    "stop",
                    "array_above_max_length",
                )
        elif not isinstance(stop, str):
            raise _wrong_type("stop", "one of a string or array of strings", stop)

    _validate_tools(body)
    _validate_response_format(body)


def _validate_message(i: int, msg: Any, reasoning_back: frozenset[str] = frozenset()) -> None:
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise _wrong_type(where, "an object", msg)
    role = msg.get("role")
    if role is None:
        raise _missing(f"{where}.role")
    if role not in _ROLES:
        raise _bad_value(f"{where}.role", role, _ROLES)
    for key in msg:
        if key not in _MESSAGE_FIELDS[role] and not (role == "assistant" and key in reasoning_back):
            raise _unknown(f"{where}.{key}")
    content = msg.get("content")
    if role == "assistant":
        if content is None and not msg.get("tool_calls") and msg.get("function_call") is None:
            raise _invalid(
                "Invalid value for 'content': expected a string, got null.", f"messages.[{i}].content"
            )
        for j, call in enumerate(msg.get("tool_calls") or ()):
            _validate_tool_call(f"{where}.tool_calls[{j}]", call)
    elif "content" not in msg or content is None:
        raise _missing(f"{where}.content")
    if role == "tool" and not msg.get("tool_call_id"):
        raise _missing(f"{where}.tool_call_id")
    if role == "tool":
        _check_id_length(f"{where}.tool_call_id", msg["tool_call_id"])
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _wrong_type(f"{where}.content", "one of a string or array of objects", content)
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise _wrong_type(at, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise _missing(f"{at}.type")
        if kind not in _PART_TYPES:
            raise _bad_value(f"{at}.type", kind, _PART_TYPES)
        if kind not in _PARTS_BY_ROLE[role]:
            raise _invalid(
                f"Invalid value: '{kind}'. Supported values are: {_supported(sorted(_PARTS_BY_ROLE[role]))}.",
                f"{at}.type",
                "invalid_value",
            )
        for key in part:
            if key not in _PART_FIELDS[kind]:
                raise _unknown(f"{at}.{key}")
        if kind not in part:
            raise _missing(f"{at}.{kind}")


def _validate_tool_call(where: str, call: Any) -> None:
    if not isinstance(call, dict):
        raise _wrong_type(where, "an object", call)
    for key in ("id", "type", "function"):
        if not call.get(key):
            raise _missing(f"{where}.{key}")
    if call["type"] != "function":
        raise _bad_value(f"{where}.type", call["type"], ("function", "custom"))
    _check_id_length(f"{where}.id", call["id"])
    function = call["function"]
    if not isinstance(function, dict):
        raise _wrong_type(f"{where}.function", "an object", function)
    for key in ("name", "arguments"):
        if key not in function:
            raise _missing(f"{where}.function.{key}")


#: OpenAI's limit on tool call ids ("string_above_max_length"), in assistant turns and tool results.
MAX_TOOL_CALL_ID = 40


def _check_id_length(where: str, value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_TOOL_CALL_ID:
        raise _invalid(
            f"Invalid '{where}': string too long. Expected a string with maximum length "
            f"{MAX_TOOL_CALL_ID}, but got a string with length {len(value)} instead.",
            where,
            "string_above_max_length",
        )


def _validate_tool_sequence(messages: list[dict[str, Any]]) -> None:
    """Tool messages answer the tool_calls of the assistant message before them, every one of them."""
    pending: list[str] = []
    answerable: set[str] = set()
    for i, msg in enumerate(messages):
        if msg["role"] == "tool":
            call_id = msg["tool_call_id"]
            if call_id not in answerable:
                raise _invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                    "message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            if call_id in pending:
                pending.remove(call_id)
            continue
        if pending:
            raise _unanswered(pending, i)
        calls = msg.get("tool_calls") if msg["role"] == "assistant" else None
        pending = [c["id"] for c in calls or ()]
        answerable = set(pending)
    if pending:
        raise _unanswered(pending, len(messages))


def _unanswered(ids: list[str], i: int) -> APIError:
    return _invalid(
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(ids)}",
        f"messages.[{i}].role",
    )


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _wrong_type("tools", "an array of objects", tools)
        if not tools:
            raise _invalid(
                "Invalid 'tools': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                "tools",
                "empty_array",
            )
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise _wrong_type(where, "an object", tool)
            if tool.get("type") != "function":
                raise _bad_value(f"{where}.type", tool.get("type"), ("function", "custom"))
            function = tool.get("function")
            if function is None:
                raise _missing(f"{where}.function")
            name = function.get("name") if isinstance(function, dict) else None
            if name is None:
                raise _missing(f"{where}.function.name")
            if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                raise _invalid(
                    f"Invalid '{where}.function.name': string does not match pattern. Expected a string "
                    "that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                    f"{where}.function.name",
                    "invalid_value",
                )
    for i, tool in enumerate(tools or ()):
        function = tool["function"]
        problem = (
            strict_schema_problem(function.get("parameters")) if function.get("strict") is True else None
        )
        if problem is not None:
            raise _invalid(
                f"Invalid schema for function '{function['name']}': {problem}",
                f"tools[{i}].function.parameters",
                "invalid_function_parameters",
            )
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not tools:
        raise _invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            "tool_choice",
        )
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _bad_value("tool_choice", choice, ("none", "auto", "required"))
    elif not isinstance(choice, dict):
        raise _wrong_type("tool_choice", "one of a string or object", choice)


def strict_schema_problem(schema: Any, context: tuple[str, ...] = ()) -> str | None:
    """What strict mode refuses in ``schema`` (None: nothing), in the API's words.

    https://platform.openai.com/docs/guides/structured-outputs#supported-schemas: every object
    needs ``additionalProperties: false`` and all its properties in ``required``; the API names
    the first offending place as a tuple of keys ("In context=('properties', 'a', 'items'), ...").
    """
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "object" or "properties" in schema:
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={context!r}, 'additionalProperties' is required to be supplied and to be false."
            )
        required = schema.get("required")
        required = required if isinstance(required, list) else []
        properties = schema.get("properties") or {}
        if not isinstance(properties, dict):
            return f"In context={context!r}, 'properties' must be an object."
        missing = [name for name in properties if name not in required]
        if missing:
            return (
                f"In context={context!r}, 'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing '{missing[0]}'."
            )
    subschemas: list[tuple[tuple[str, ...], Any]] = []
    for key in ("properties", "$defs", "definitions"):
        subs = schema.get(key) or {}
        if not isinstance(subs, dict):
            return f"In context={context!r}, '{key}' must be an object."
        subschemas += [((*context, key, name), sub) for name, sub in subs.items()]
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        listed = schema.get(key) or []
        if not isinstance(listed, list):
            return f"In context={context!r}, '{key}' must be an array."
        subschemas += [((*context, key, str(i)), sub) for i, sub in enumerate(listed)]
    subschemas += [((*context, "items"), schema.get("items"))]
    for where, sub in subschemas:
        problem = strict_schema_problem(sub, where)
        if problem is not None:
            return problem
    return None


def _validate_response_format(body: dict[str, Any]) -> None:
    fmt = body.get("response_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise _wrong_type("response_format", "an object", fmt)
    kind = fmt.get("type")
    if kind is None:
        raise _missing("response_format.type")
    if kind not in ("text", "json_object", "json_schema"):
        raise _bad_value("response_format.type", kind, ("text", "json_object", "json_schema"))
    if kind == "json_schema":
        schema = fmt.get("json_schema")
        if not isinstance(schema, dict):
            raise _missing("response_format.json_schema")
        if not schema.get("name"):
            raise _missing("response_format.json_schema.name")
        problem = strict_schema_problem(schema.get("schema")) if schema.get("strict") is True else None
        if problem is not None:
            raise _invalid(
                f"Invalid schema for response_format '{schema['name']}': {problem}", "response_format"
            )
    if kind == "json_object" and not any("json" in _message_text(m).lower() for m in body["messages"]):
        raise _invalid(
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
            "'json_object'.",
            "messages",
        )


# --- chat answers -------------------------------------------------------------------------------------


def _message_text(msg: dict[str, Any]) -> str:
    content = msg.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Whitespace words of every message's text plus 3 per message."""
    return sum(len(_message_text(m).split()) + 3 for m in messages)


def _rand_id(prefix: str, length: int) -> str:
    return prefix + "".join(random.choices(string.ascii_letters + string.digits, k=length))


PREAMBLE = "Let me check."


def _chosen_tools(body: dict[str, Any], model: str) -> list[str]:
    """The functions the model calls (none for a text answer)."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return []
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return [name]
    if choice == "required" or mode_of(model).tool:
        names = [str(t["function"]["name"]) for t in tools]
        parallel = "parallel" in model and body.get("parallel_tool_calls") is not False
        return names if parallel else names[:1]
    return []


class _Answer:
    """What the fake model 'generates' for one request (same for each of the n choices)."""

    def __init__(self, body: dict[str, Any]) -> None:
        model = body["model"]
        self.model = model
        self.n = int(body.get("n") or 1)
        self.tools = _chosen_tools(body, model)
        self.tool = self.tools[0] if self.tools else None
        text = last_user_text(body["messages"])
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":  # constrained decoding: an instance of the schema
            content = orjson.dumps(instance(fmt["json_schema"].get("schema"), text)).decode()
        elif fmt.get("type") == "json_object":
            content = orjson.dumps({"echo": text}).decode()
        else:
            content = f"echo: {text}"
        self.reasoning = 5 if "reason" in model else 0
        self.finish = "tool_calls" if self.tool else "stop"
        stops = body.get("stop")
        for stop in [stops] if isinstance(stops, str) else stops or ():
            if stop and stop in content:  # the answer ends before the sequence, which is left out
                content = content[: content.index(stop)]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        words = content.split()
        if self.tool is None and limit is not None and len(words) + self.reasoning > limit:
            content = " ".join(words[: max(limit - self.reasoning, 0)])
            self.finish = "length"
        self.content = content
        if self.tool:
            self.content = PREAMBLE if "preamble" in model else None
        said = len(self.content.split()) if self.content else 0
        per_choice = said + len(TOOL_ARGUMENTS.split()) * len(self.tools) + self.reasoning
        prompt = prompt_tokens(body["messages"])
        completion = per_choice * self.n
        self.usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {
                "cached_tokens": prompt // 2 if "cached" in model else 0,
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning * self.n,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        #: per choice, one id per call
        self.call_ids = [[_rand_id("call_", 24) for _ in self.tools] for _ in range(self.n)]
        #: with ``logprobs``: an entry per token of the content (the stream's pieces), else None
        self.token_logprobs = (
            token_logprobs(_pieces(self.content or ""), int(body.get("top_logprobs") or 0))
            if body.get("logprobs")
            else None
        )

    def logprobs(self, entries: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """A choice's ``logprobs``: ``entries`` (default: the whole content's), or None if not asked."""
        if self.token_logprobs is None:
            return None
        return {"content": self.token_logprobs if entries is None else entries, "refusal": None}


def token_logprobs(tokens: list[str], top: int) -> list[dict[str, Any]]:
    """OpenAI's logprob entries for ``tokens``: made-up, stable values; the chosen token first
    among ``top`` alternatives (the shape of ChatCompletionTokenLogprob)."""

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    out = []
    for k, token in enumerate(tokens):
        logprob = -0.05 * (k % 7 + 1)
        alternatives = [entry(token, logprob)] + [entry(f" alt{j}", logprob - j) for j in range(1, top)]
        out.append({**entry(token, logprob), "top_logprobs": alternatives[:top]})
    return out


def _check_rejected(body: dict[str, Any], rejects: frozenset[str]) -> None:
    """A field the impersonated provider does not accept is a 400, like the provider answers it."""
    for name in sorted(rejects & body.keys()):
        raise _invalid(
            f"Unsupported parameter: '{name}' is not supported by this provider.",
            name,
            "unsupported_parameter",
        )


def _check_no_message_names(body: dict[str, Any]) -> None:
    """A participant ``name`` on a message, for a provider that refuses ``messages[].name``."""
    messages = body.get("messages")
    for i, msg in enumerate(messages if isinstance(messages, list) else ()):
        if isinstance(msg, dict) and "name" in msg and msg.get("role") != "function":
            raise _invalid(
                "Unsupported parameter: 'messages[].name' is not supported by this provider.",
                f"messages[{i}].name",
                "unsupported_parameter",
            )


async def _chat(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    app = request.app  # other fakes (Azure) serve this handler from their own apps: defaults apply
    _check_rejected(body, app.get("rejects", frozenset()))
    if not app.get("message_names", True):
        _check_no_message_names(body)
    _validate_chat(body, app.get("accepts", frozenset()), app.get("reasoning_back", frozenset()))
    model = body["model"]
    if app.get("reasoning_limits", False) and model.startswith(REASONING_MODELS) and "max_tokens" in body:
        raise _invalid(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    if "context" in model:
        used = CONTEXT_WINDOW + prompt_tokens(body["messages"])
        raise _invalid(
            f"This model's maximum context length is {CONTEXT_WINDOW} tokens. However, your messages "
            f"resulted in {used} tokens. Please reduce the length of the messages.",
            "messages",
            "context_length_exceeded",
        )
    if mode_of(model).status == 502:
        return _bad_gateway()
    await _apply_mode(request, model)
    answer = _Answer(body)
    answer.finish = app.get("finish_reasons", {}).get(answer.finish, answer.finish)
    completion_id = _rand_id("chatcmpl-", 29)
    created = int(time.time())
    if body.get("stream"):
        options = body.get("stream_options") or {}
        usage = _StreamUsage(
            app.get("stream_usage", "stream_options"), app.get("usage_in_choice", False), options
        )
        events = _stream_events(answer, completion_id, created, options, usage)
        mode = mode_of(model)
        return await stream_response(
            request, events, cut=mode.cut, cut_first=mode.cut_first, stall=mode.stall, whole=mode.whole
        )

    choices = []
    for i in range(answer.n):
        message: dict[str, Any] = {
            "role": "assistant",
            "content": answer.content,
            "refusal": None,
            "annotations": [],
        }
        if answer.tools:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}
                for call_id, name in zip(answer.call_ids[i], answer.tools, strict=True)
            ]
        choices.append(
            {"index": i, "message": message, "logprobs": answer.logprobs(), "finish_reason": answer.finish}
        )
    return _json(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": answer.usage,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
    )


def _pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _choice_deltas(answer: _Answer, index: int) -> list[dict[str, Any]]:
    """The stream choices of one completion choice, in order."""

    def choice(
        delta: dict[str, Any], finish: str | None = None, logprobs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}

    entries = answer.token_logprobs or []
    # with logprobs, each content piece carries its token's entry
    said = [
        choice({"content": piece}, logprobs=answer.logprobs(entries[k : k + 1]))
        for k, piece in enumerate(_pieces(answer.content or ""))
    ]
    if answer.tools:
        first = choice({"role": "assistant", "content": "" if said else None, "refusal": None})
        rest = list(said)
        for k, (call_id, name) in enumerate(zip(answer.call_ids[index], answer.tools, strict=True)):
            start = {
                "index": k,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            rest.append(choice({"tool_calls": [start]}))
            rest += [
                choice({"tool_calls": [{"index": k, "function": {"arguments": piece}}]})
                for piece in _pieces(TOOL_ARGUMENTS)
            ]
        if not said:  # the first call starts in the role chunk, as the real API sends it
            first["delta"]["tool_calls"] = rest.pop(0)["delta"]["tool_calls"]
    else:
        first = choice({"role": "assistant", "content": "", "refusal": None})
        rest = said
    return [first, *rest, choice({}, answer.finish)]


class _StreamUsage:
    """Where a stream reports usage: OpenAI's separate chunk, or the impersonated provider's way."""

    def __init__(self, mode: str, in_choice: bool, options: dict[str, Any]) -> None:
        asked = bool(options.get("include_usage"))
        #: OpenAI: ``usage: null`` on every chunk, then a chunk with empty choices.
        self.separate = mode == "stream_options" and asked and not in_choice
        #: "always" providers put it on the last content chunk (inside its choice for Moonshot).
        self.on_last = mode == "always" or (mode == "stream_options" and asked and in_choice)
        self.in_choice = in_choice


def _stream_events(
    answer: _Answer,
    completion_id: str,
    created: int,
    options: dict[str, Any],
    usage: _StreamUsage | None = None,
) -> list[bytes]:
    usage = usage or _StreamUsage("stream_options", False, options)
    obfuscate = options.get("include_obfuscation", True) is not False
    base: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": answer.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    noise = itertools.cycle(range(1, 12))

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        out = {**base, "choices": choices}
        if usage.separate:
            out["usage"] = None
        if obfuscate:
            out["obfuscation"] = _rand_id("", next(noise))
        return out

    per_choice = [_choice_deltas(answer, i) for i in range(answer.n)]
    # Like the real API, choices of n > 1 interleave, one choice per chunk.
    chunks = [chunk([c]) for step in itertools.zip_longest(*per_choice) for c in step if c is not None]
    if usage.on_last:
        target = chunks[-1]["choices"][0] if usage.in_choice else chunks[-1]
        target["usage"] = answer.usage
    if usage.separate:
        chunks.append({**chunk([]), "usage": answer.usage})
    return [*(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks), b"data: [DONE]\n\n"]


# --- embeddings ---------------------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[str] | list[list[int]]:
    bad = _invalid(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    )
    if isinstance(value, str):
        if not value:
            raise bad
        return [value]
    if not isinstance(value, list) or not value:
        raise bad
    if len(value) > 2048:
        raise _invalid(
            "Invalid 'input': array too long. Expected an array with maximum length 2048, "
            f"but got an array with length {len(value)} instead.",
            "input",
            "array_above_max_length",
        )
    if all(isinstance(v, str) and v for v in value):
        return list(value)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [list(value)]
    if all(
        isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)
        for v in value
    ):
        return [list(v) for v in value]
    raise bad


def embedding_vector(model: str, item: str | list[int], dims: int) -> list[float]:
    """A deterministic unit vector (float32 values) for one input."""
    key = item if isinstance(item, str) else " ".join(map(str, item))
    seed = hashlib.sha256(f"{model}\0{key}".encode()).digest()
    raw: list[float] = []
    counter = 0
    while len(raw) < dims:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        raw.extend(v / 2147483647.5 - 1.0 for v in struct.unpack("<8I", block))
        counter += 1
    raw = raw[:dims]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    packed = struct.pack(f"<{dims}f", *(v / norm for v in raw))
    return list(struct.unpack(f"<{dims}f", packed))


async def _embeddings(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    _unrecognized(body, _EMBEDDING_FIELDS)
    model = _require_model(body)
    if "input" not in body or body["input"] is None:
        raise _missing("input")
    items = _embedding_inputs(body["input"])
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _bad_value("encoding_format", fmt, ("float", "base64"))
    _check_number(body, "dimensions", 1, None, integer=True)
    if body.get("dimensions") is not None and "ada-002" in model:
        raise _invalid("This model does not support specifying dimensions.")
    tokens = sum(len(i.split()) if isinstance(i, str) else len(i) for i in items)
    if "context" in model:
        used = CONTEXT_WINDOW + tokens
        raise _invalid(
            f"This model's maximum context length is {CONTEXT_WINDOW} tokens, however you requested {used} "
            f"tokens ({used} in your prompt; 0 for the completion). Please reduce your prompt; or "
            "completion length."
        )
    if mode_of(model).status == 502:
        return _bad_gateway()
    if mode_of(model).cut:
        abort(request)
    await _apply_mode(request, model)
    dims = int(body.get("dimensions") or 8)
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(model, item, dims)
        encoded: list[float] | str = vector
        if fmt == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return _json(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


# --- models -------------------------------------------------------------------------------------------


def _model_card(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1721172741, "owned_by": "system"}


async def _list_models(request: web.Request, body: Any) -> web.StreamResponse:
    return _json({"object": "list", "data": [_model_card(m) for m in request.app["models"]]})


async def _get_model(request: web.Request, body: Any) -> web.StreamResponse:
    model = request.match_info["model"]
    if model not in request.app["models"]:
        raise APIError(
            404,
            f"The model '{model}' does not exist",
            param="model",
            code="model_not_found",
        )
    return _json(_model_card(model))
