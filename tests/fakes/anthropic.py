"""A faithful fake of Anthropic's Messages API: ``POST /v1/messages``.

It checks what the real API checks (https://docs.anthropic.com/en/api/messages)
and answers 400 ``invalid_request_error`` with the real API's message style
(``"<field path>: <what is wrong>"``):

- headers: ``x-api-key`` (401 ``authentication_error`` when missing, empty or,
  with ``anthropic_app(api_key=...)``, different) and ``anthropic-version``;
- top-level fields: unknown ones are ``"<field>: Extra inputs are not permitted"``;
  ``model``, ``messages`` (non-empty) and ``max_tokens`` (int >= 1) required;
  ``temperature`` and ``top_p`` in 0..1 (Anthropic's range, not OpenAI's 0..2), not both from
  Opus 4.1 on ("temperature and top_p cannot both be specified for this model");
- messages: roles ``user``/``assistant`` only; consecutive same-role turns are
  combined into one, as the API documents (an assistant first turn is accepted,
  as the first-party API does); text blocks non-empty; block types per role;
  tool ``id`` pattern; image and document sources (a base64 document is a
  PDF, a text one ``text/plain``); every ``tool_result`` answers a ``tool_use`` of the
  previous assistant turn and every ``tool_use`` is answered in the next turn;
- ``system`` a string or text blocks; ``tools`` need ``input_schema``;
  ``tool_choice`` only with tools; ``thinking`` budget >= 1024 and below
  ``max_tokens``, no ``temperature`` other than 1, no ``top_k``, no forced tool
  use, and a final assistant turn with tool calls must start with thinking
  (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking);
- ``thinking`` ``display: omitted`` (from Opus 4.7 on, the default) gives thinking blocks without text;
- ``thinking`` ``enabled`` (with a budget) only for the models before Opus 4.7, ``adaptive`` only for
  Opus 4.6, Sonnet 4.6 and later (:data:`BEFORE_OPUS_4_7`; any other ``claude-`` name is taken for a
  newer model, a name that is not one, a failure mode's, takes both);
- structured outputs (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs):
  ``output_config`` takes ``format``, ``{"type": "json_schema", "schema": {...}}``, and
  ``effort`` (one of the documented levels, for a model that has it: :data:`NO_EFFORT`); a tool
  may carry ``strict`` (a boolean). With either (a strict tool: ``strict: true``), a model the
  docs leave out (:data:`NO_STRUCTURED_OUTPUTS`: Claude 3.x, Sonnet 4, Opus 4 and 4.1) is refused,
  and so is a schema using what the docs list as not supported: numeric constraints
  (``minimum``...), ``minLength``/``maxLength``, array constraints beyond ``minItems`` 0 or 1,
  ``additionalProperties`` other than ``false``, enums of objects or arrays, external or
  recursive ``$ref``; JSON outputs refuse a prefilled (final assistant) turn. The docs do not
  quote the messages; these follow the API's ``"<field path>: <what>"`` style;
- thinking blocks sent back must be the fake's own, unmodified: a ``thinking``
  block's ``signature`` must sign its text, a ``redacted_thinking`` block's
  ``data`` must be what the fake sent ("Invalid `signature` in `thinking`
  block", as the API answers a block it did not sign or that was changed).

Answers: ``"echo: <last user text>"`` (or of the last tool result), or with
``output_config.format`` a JSON text matching the schema (every string the last user text,
see :func:`instance`); with the
``tool`` failure mode, a forcing ``tool_choice`` or a named tool, a
``tool_use`` block for that tool with input ``{"location": "Paris"}`` (a strict tool's: an
instance of its ``input_schema`` whose strings are ``"Paris"``; a model name
containing ``parallel``: one for every declared tool, unless ``disable_parallel_tool_use``;
containing ``preamble``: after a text block ``"Let me check."``; containing ``interleave``:
that text first and ``"And also:"`` between two calls, as Claude interleaves text and tool
calls); a model
name containing ``think`` (or ``thinking`` enabled) adds a thinking block
first, signed (:func:`sign`), and one containing ``redact`` a
``redacted_thinking`` block before it.
Tokens are whitespace-separated words; ``max_tokens`` and ``stop_sequences``
cut the answer with the real stop reasons. Usage reports
``cache_read_input_tokens: 100`` when any block carried ``cache_control``.

Streams follow https://docs.anthropic.com/en/docs/build-with-claude/streaming:
``message_start``, per block ``content_block_start`` / ``ping`` (once) /
``content_block_delta`` ... / ``content_block_stop`` (a thinking block ends
with its ``signature_delta``; a redacted one has no delta), then ``message_delta``
and ``message_stop``, written in awkward splits. Failure modes come from
:func:`tests.fakes.common.mode_of`. Every parsed request body is appended to
``app["requests"]``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
import uuid
import warnings
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.common import FakeProvider, Mode, abort, last_user_text, mode_of, stream_response
from tests.fakes.structured import instance, schema_problem

__all__ = [
    "INTERLUDE",
    "NO_STRUCTURED_OUTPUTS",
    "PREAMBLE",
    "REDACTED_DATA",
    "anthropic_app",
    "instance",
    "sign",
]

Block = dict[str, Any]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ERROR_MESSAGES = {
    429: "Number of request tokens has exceeded your per-minute rate limit",
    500: "Internal server error",
    529: "Overloaded",
}
_TOP_LEVEL = frozenset(
    {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream"}
    | {"temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier"}
    | {"output_config", "inference_geo", "speed"}
)
#: Models without structured outputs: the docs list Sonnet 4.5, Haiku 4.5, Opus 4.5 and later
#: (Opus 4.1 only in the beta). Name prefixes, so a failure-mode name (``tool-...``) is a model
#: the table does not know, as for the adapter.
NO_STRUCTURED_OUTPUTS = (
    "claude-instant",
    "claude-2",
    "claude-3",
    "claude-sonnet-4-0",
    "claude-sonnet-4-2025",
    "claude-opus-4-0",
    "claude-opus-4-2025",
    "claude-opus-4-1",
    "claude-sonnet-4@",  # Vertex AI's names for Sonnet 4 and Opus 4
    "claude-opus-4@",
    "claude-v2",  # Bedrock's for Claude 2
)
#: Models without the effort parameter: the docs list Opus 4.5 and later models (Sonnet 4.5 and
#: Haiku 4.5 have none); ``max`` came with Opus 4.6 and Sonnet 4.6, ``xhigh`` with Opus 4.7.
NO_EFFORT = (*NO_STRUCTURED_OUTPUTS, "claude-sonnet-4-5", "claude-haiku-4-5")
_EFFORT_LACKING = {
    "max": ("claude-opus-4-5",),
    "xhigh": ("claude-opus-4-5", "claude-opus-4-6", "claude-sonnet-4-6", "claude-mythos-preview"),
}
#: Models whose thinking takes a budget (``enabled``): those before Opus 4.7, which refuses one and
#: thinks only adaptively (https://docs.anthropic.com/en/docs/build-with-claude/adaptive-thinking);
#: of them, Opus 4.6 and Sonnet 4.6 take ``adaptive`` too. Any other ``claude-`` name is a newer model.
BEFORE_OPUS_4_7 = (*NO_EFFORT, "claude-opus-4-5", "claude-opus-4-6", "claude-sonnet-4-6")
ADAPTIVE_TOO = ("claude-opus-4-6", "claude-sonnet-4-6")
#: JSON-schema keywords structured outputs refuse ("Not supported" in the docs).
_SCHEMA_REFUSED = frozenset(
    {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    | {"minLength", "maxLength", "maxItems", "uniqueItems", "contains", "minContains", "maxContains"}
)
#: block type -> (required fields, optional fields)
_BLOCKS: dict[str, tuple[set[str], set[str]]] = {
    "text": ({"text"}, {"cache_control", "citations"}),
    "image": ({"source"}, {"cache_control"}),
    "document": ({"source"}, {"cache_control", "title", "context", "citations"}),
    "tool_use": ({"id", "name", "input"}, {"cache_control"}),
    "tool_result": ({"tool_use_id"}, {"content", "is_error", "cache_control"}),
    "thinking": ({"thinking", "signature"}, set()),
    "redacted_thinking": ({"data"}, set()),
}
_ROLE_BLOCKS = {
    "user": {"text", "image", "document", "tool_result"},
    "assistant": {"text", "tool_use", "thinking", "redacted_thinking"},
}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
#: document source type -> its required fields
_DOCUMENT_SOURCES = {
    "base64": {"media_type", "data"},
    "text": {"media_type", "data"},
    "content": {"content"},
    "url": {"url"},
    "file": {"file_id"},
}
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_THINKING_DOCS = (
    "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)
_THOUGHT = "The user wants an echo."
#: The text a ``preamble`` model says before its tool calls.
PREAMBLE = "Let me check."
#: The text an ``interleave`` model says between two tool calls.
INTERLUDE = "And also:"


def sign(thinking: str) -> str:
    """The fake's signature of a thinking text (the real one is opaque; this one is checkable)."""
    digest = hashlib.sha256(b"fake-anthropic-thinking:" + thinking.encode()).digest()
    return "Eq" + base64.b64encode(digest).decode()


#: The ``data`` of the fake's ``redacted_thinking`` block (encrypted thinking, opaque to clients).
REDACTED_DATA = "EmwKAhgBEgy3va3pzix/LafPsn4a" + sign("redacted")[2:]


class InvalidError(Exception):
    """A 400 ``invalid_request_error`` with the real API's message."""


def anthropic_app(*, api_key: str | None = None) -> web.Application:
    """The fake; with ``api_key`` only that key is accepted, otherwise any non-empty one."""
    app = web.Application()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []
        app["headers"] = []  # each request's headers, beside its body

    async def messages(request: web.Request) -> web.StreamResponse:
        return await _handle(request, app, api_key)

    app.router.add_post("/v1/messages", messages)
    return app


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error in Anthropic's shape (https://docs.anthropic.com/en/api/errors)."""
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return web.json_response(body, status=status, headers={"request-id": request_id, **(headers or {})})


async def _handle(request: web.Request, app: web.Application, api_key: str | None) -> web.StreamResponse:
    key = request.headers.get("x-api-key", "")
    if not key:
        return error(401, "x-api-key header is required")
    if api_key is not None and key != api_key:
        return error(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        return error(400, "anthropic-version: header is required")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error(400, "There was an error parsing the body of your request as JSON")
    app["requests"].append(body)
    app["headers"].append(dict(request.headers))
    try:
        turns = validate(body)
    except InvalidError as exc:
        return error(400, str(exc))
    mode = mode_of(str(body["model"]))
    failure = await _failure(request, mode)
    if failure is not None:
        return failure
    message = answer(body, turns, mode)
    if body.get("stream"):
        return await stream_response(
            request, events(message), cut=mode.cut, stall=mode.stall, whole=mode.whole
        )
    return web.json_response(message, headers={"request-id": f"req_{uuid.uuid4().hex[:24]}"})


async def _failure(request: web.Request, mode: Mode) -> web.StreamResponse | None:
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        return abort(request)
    if mode.status is not None:
        headers = {"retry-after": "7"} if mode.status == 429 else None
        return error(mode.status, _ERROR_MESSAGES.get(mode.status, f"error {mode.status}"), headers)
    return None


# --- validation ------------------------------------------------------------------


def validate(body: Any) -> list[Block]:
    """Check a request body like the real API; return the messages as merged turns."""
    if not isinstance(body, dict):
        raise InvalidError("Input should be a valid dictionary")
    for name in body:
        if name not in _TOP_LEVEL:
            raise InvalidError(f"{name}: Extra inputs are not permitted")
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            raise InvalidError(f"{name}: Field required")
    if not isinstance(body["model"], str) or not body["model"]:
        raise InvalidError("model: Input should be a valid string")
    _check_int(body, "max_tokens", 1)
    _check_int(body, "top_k", 0)
    for name in ("temperature", "top_p"):
        _check_unit(body, name)
    if "temperature" in body and "top_p" in body and _one_sampler(str(body["model"])):
        raise InvalidError(
            "temperature and top_p cannot both be specified for this model. Please use only one."
        )
    _check_misc(body)
    _check_system(body.get("system"))
    _check_output_config(body)
    names = _check_tools(body.get("tools"), str(body["model"]))
    _check_tool_choice(body.get("tool_choice"), names)
    turns = _check_messages(body["messages"])
    _check_thinking(body, turns)
    return turns


#: The Claude models that take temperature and top_p together: those before Opus 4.1 (the
#: migration guide to Claude 4.5: "use only temperature or top_p, not both"; the API's 400
#: quoted above, reported for Opus 4.1, Sonnet 4.5 and Haiku 4.5).
_BOTH_SAMPLERS = ("claude-instant", "claude-2", "claude-3", "claude-sonnet-4-0", "claude-sonnet-4-2025")
_BOTH_SAMPLERS += ("claude-opus-4-0", "claude-opus-4-2025", "claude-sonnet-4@", "claude-opus-4@")


#: The Claude models without extended thinking (its docs' "Supported models" start at 3.7 Sonnet).
_NO_THINKING = (
    "claude-instant",
    "claude-2",
    "claude-3-haiku",
    "claude-3-sonnet",
    "claude-3-opus",
    "claude-3-5",
)


def _one_sampler(model: str) -> bool:
    return model.startswith("claude") and not model.startswith(_BOTH_SAMPLERS)


def _check_int(body: Block, name: str, minimum: int) -> None:
    value = body.get(name)
    if value is None and name != "max_tokens":
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidError(f"{name}: Input should be a valid integer")
    if value < minimum:
        raise InvalidError(f"{name}: Input should be greater than or equal to {minimum}")


def _check_unit(body: Block, name: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidError(f"{name}: Input should be a valid number")
    if value < 0:
        raise InvalidError(f"{name}: Input should be greater than or equal to 0")
    if value > 1:
        raise InvalidError(f"{name}: Input should be less than or equal to 1")


def _check_misc(body: Block) -> None:
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise InvalidError("stop_sequences: Input should be a valid list of strings")
    if stops is not None and not all(s.strip() for s in stops):  # as reported (BerriAI/litellm#3286)
        raise InvalidError("stop_sequences: each stop sequence must contain non-whitespace")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidError("metadata: Input should be a valid dictionary")
        for name in metadata:
            if name != "user_id":
                raise InvalidError(f"metadata.{name}: Extra inputs are not permitted")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidError("stream: Input should be a valid boolean")
    if body.get("speed") not in (None, "standard", "fast"):
        raise InvalidError("speed: Input should be 'standard' or 'fast'")
    if body.get("service_tier") not in (None, "auto", "standard_only"):
        raise InvalidError("service_tier: Input should be 'auto' or 'standard_only'")
    if "inference_geo" in body and not isinstance(body["inference_geo"], str | None):
        raise InvalidError("inference_geo: Input should be a valid string")


def _check_fields(block: Block, required: set[str], optional: set[str], where: str) -> None:
    for name in sorted(required - block.keys()):
        raise InvalidError(f"{where}.{name}: Field required")
    for name in sorted(block.keys() - required - optional - {"type"}):
        raise InvalidError(f"{where}.{name}: Extra inputs are not permitted")
    cache = block.get("cache_control")
    if cache is not None and (not isinstance(cache, dict) or cache.get("type") != "ephemeral"):
        raise InvalidError(f"{where}.cache_control.type: Input should be 'ephemeral'")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise InvalidError("system: Input should be a valid string or list of text blocks")
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise InvalidError(f"system.{j}.type: Input should be 'text'")
        _check_fields(block, {"text"}, {"cache_control", "citations"}, f"system.{j}")
        if not block["text"]:
            raise InvalidError("system: text content blocks must be non-empty")


#: https://docs.anthropic.com/en/docs/build-with-claude/effort
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
_EFFORTS_TEXT = ", ".join(f"'{e}'" for e in _EFFORTS[:-1]) + f" or '{_EFFORTS[-1]}'"


def _check_output_config(body: Block) -> None:
    config = body.get("output_config")
    if config is None:
        return
    if not isinstance(config, dict):
        raise InvalidError("output_config: Input should be a valid dictionary")
    _check_fields(config, set(), {"format", "effort"}, "output_config")
    if "effort" in config:
        effort, model = config["effort"], str(body["model"]).lower()
        if effort not in _EFFORTS:
            raise InvalidError(f"output_config.effort: Input should be {_EFFORTS_TEXT}")
        if model.startswith(NO_EFFORT) or model.startswith(_EFFORT_LACKING.get(effort, ())):
            raise InvalidError(
                f"output_config.effort: '{effort}' is not supported by model '{body['model']}'"
            )
    fmt = config.get("format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise InvalidError("output_config.format.type: Input should be 'json_schema'")
    _check_fields(fmt, {"schema"}, set(), "output_config.format")
    _check_structured_model(str(body["model"]), "output_config.format")
    _check_schema(fmt["schema"], "output_config.format.schema")
    messages = body["messages"]
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "assistant":
        raise InvalidError("output_config.format: prefilling the assistant message is not supported")


def _check_structured_model(model: str, where: str) -> None:
    if model.lower().startswith(NO_STRUCTURED_OUTPUTS):
        raise InvalidError(f"{where}: structured outputs are not supported for model '{model}'")


def _check_schema(schema: Any, where: str) -> None:
    """Refuse what structured outputs cannot compile (the docs' "Not supported" list)."""
    if not isinstance(schema, dict):
        raise InvalidError(f"{where}: Input should be a valid dictionary")
    found = schema_problem(schema, where, _SCHEMA_REFUSED)
    if found is not None:
        raise InvalidError(f"{found.where}: {_SCHEMA_WORDS[found.kind].format(found.detail)}")


#: How the Messages API words each schema problem (tests/fakes/structured.py).
_SCHEMA_WORDS = {
    "keyword": "'{}' is not supported in structured outputs schemas",
    "minItems": "'minItems' values other than 0 or 1 are not supported",
    "additionalProperties": "'additionalProperties' must be false for objects",
    "enum": "'enum' values must be strings, numbers, booleans or null",
    "ref": "external or unknown '$ref' {!r} is not supported",
    "recursive": "Too many recursive definitions in schema",
    "shape": "'{}' has an invalid value: not a valid JSON Schema",
}


def _check_tools(tools: Any, model: str) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidError("tools: Input should be a valid list")
    names: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise InvalidError(f"tools.{i}: Input should be a valid dictionary")
        optional = {"description", "cache_control", "strict", "eager_input_streaming", "input_examples"}
        _check_fields(tool, {"name", "input_schema"}, optional, f"tools.{i}")
        if tool.get("eager_input_streaming") not in (None, True, False):
            raise InvalidError(f"tools.{i}.eager_input_streaming: Input should be a valid boolean")
        examples = tool.get("input_examples", [])
        if not (isinstance(examples, list) and all(isinstance(e, dict) for e in examples)):
            raise InvalidError(f"tools.{i}.input_examples: Input should be a valid list of objects")
        if not isinstance(tool["name"], str) or not _TOOL_NAME.match(tool["name"]):
            raise InvalidError(f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        schema = tool["input_schema"]
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise InvalidError(f"tools.{i}.input_schema.type: Input should be 'object'")
        if "strict" in tool and not isinstance(tool["strict"], bool):
            raise InvalidError(f"tools.{i}.strict: Input should be a valid boolean")
        if tool.get("strict"):
            _check_structured_model(model, f"tools.{i}.strict")
            _check_schema(schema, f"tools.{i}.input_schema")
        names.append(tool["name"])
    if len(set(names)) != len(names):
        raise InvalidError("tools: Tool names must be unique.")
    return names


def _check_tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None:
        return
    if not names:
        raise InvalidError("tool_choice may only be specified while providing tools.")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise InvalidError("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    optional = {"disable_parallel_tool_use"} if kind != "none" else set()
    _check_fields(choice, {"name"} if kind == "tool" else set(), optional, f"tool_choice.{kind}")
    if kind == "tool" and choice["name"] not in names:
        raise InvalidError(f"Tool '{choice['name']}' not found in provided tools")


def _check_messages(messages: Any) -> list[Block]:
    if not isinstance(messages, list):
        raise InvalidError("messages: Input should be a valid list")
    if not messages:
        raise InvalidError("messages: at least one message is required")
    turns: list[Block] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise InvalidError(f"messages.{i}: Input should be a valid dictionary")
        _check_fields(msg, {"role", "content"}, set(), f"messages.{i}")
        role = msg["role"]
        if role not in _ROLE_BLOCKS:
            raise InvalidError(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _check_content(msg["content"], role, f"messages.{i}")
        if not blocks and not (i == len(messages) - 1 and role == "assistant"):
            raise InvalidError(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        if turns and turns[-1]["role"] == role:  # the API combines consecutive turns
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    _check_tool_pairs(turns)
    final = turns[-1]["content"] if turns and turns[-1]["role"] == "assistant" else []
    if final and final[-1].get("type") == "text" and final[-1]["text"] != final[-1]["text"].rstrip():
        raise InvalidError("messages: final assistant content cannot end with trailing whitespace")
    return turns


def _check_content(content: Any, role: str, where: str) -> list[Block]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidError(f"{where}.content: Input should be a valid string or list")
    for j, block in enumerate(content):
        _check_block(block, role, f"{where}.content.{j}")
    return list(content)


def _check_block(block: Any, role: str, where: str) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in _BLOCKS:
        raise InvalidError(
            f"{where}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags"
        )
    if kind not in _ROLE_BLOCKS[role]:
        raise InvalidError(f"{where}.type: '{kind}' blocks are not allowed in '{role}' messages")
    _check_fields(block, *_BLOCKS[kind], where)
    if kind == "text" and not block["text"]:
        raise InvalidError("messages: text content blocks must be non-empty")
    if kind == "text" and not block["text"].strip():  # as reported against the API
        raise InvalidError("messages: text content blocks must contain non-whitespace text")
    if kind == "image":
        _check_image(block["source"], f"{where}.source")
    if kind == "document":
        _check_document(block["source"], f"{where}.source")
    if kind == "tool_use":
        if not isinstance(block["id"], str) or not _TOOL_ID.match(block["id"]):
            raise InvalidError(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
        if not isinstance(block["input"], dict):
            raise InvalidError(f"{where}.input: Input should be a valid dictionary")
    if kind == "tool_result":
        _check_tool_result_content(block.get("content"), where)
    if kind == "thinking" and block["signature"] != sign(str(block["thinking"])):
        raise InvalidError(f"{where}: Invalid `signature` in `thinking` block")
    if kind == "redacted_thinking" and block["data"] != REDACTED_DATA:
        raise InvalidError(f"{where}: Invalid `data` in `redacted_thinking` block")


def _check_image(source: Any, where: str) -> None:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url":
        _check_fields(source, {"url"}, set(), f"{where}.url")
        return
    if kind != "base64":
        raise InvalidError(f"{where}.type: Input should be 'base64' or 'url'")
    _check_fields(source, {"media_type", "data"}, set(), f"{where}.base64")
    if source["media_type"] not in _IMAGE_TYPES:
        raise InvalidError(
            f"{where}.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        )
    try:
        base64.b64decode(source["data"], validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise InvalidError(f"{where}.base64.data: invalid base64 data") from exc


def _check_document(source: Any, where: str) -> None:
    """https://docs.anthropic.com/en/docs/build-with-claude/pdf-support: the document source kinds."""
    kind = source.get("type") if isinstance(source, dict) else None
    if kind not in _DOCUMENT_SOURCES:
        raise InvalidError(f"{where}.type: Input should be 'base64', 'text', 'content', 'url' or 'file'")
    _check_fields(source, _DOCUMENT_SOURCES[kind], set(), f"{where}.{kind}")
    if kind in ("base64", "text"):
        media_type = "application/pdf" if kind == "base64" else "text/plain"
        if source["media_type"] != media_type:
            raise InvalidError(f"{where}.{kind}.media_type: Input should be '{media_type}'")
    if kind == "base64":
        try:
            base64.b64decode(source["data"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise InvalidError(f"{where}.base64.data: invalid base64 data") from exc


def _check_tool_result_content(content: Any, where: str) -> None:
    if content is None:
        return
    if isinstance(content, str):
        # as reported (zed-industries/zed#27130, anomalyco/opencode#15371): a blank result is refused
        if not content.strip():
            raise InvalidError(f"{where}.content: text content blocks must contain non-whitespace text")
        return
    if not isinstance(content, list):
        raise InvalidError(f"{where}.content: Input should be a valid string or list")
    for k, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in ("text", "image"):
            raise InvalidError(f"{where}.content.{k}.type: Input should be 'text' or 'image'")
        _check_block(block, "user", f"{where}.content.{k}")


def _ids(turn: Block, kind: str, key: str) -> list[str]:
    return [b[key] for b in turn["content"] if b.get("type") == kind]


def _check_tool_pairs(turns: list[Block]) -> None:
    """tool_use / tool_result pairing across adjacent turns (messages are indexed after merging)."""
    for t, turn in enumerate(turns):
        if turn["role"] == "user":
            offered = set(_ids(turns[t - 1], "tool_use", "id")) if t else set()
            for j, block in enumerate(turn["content"]):
                if block.get("type") == "tool_result" and block["tool_use_id"] not in offered:
                    raise InvalidError(
                        f"messages.{t}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
        elif t + 1 < len(turns):
            answered = set(_ids(turns[t + 1], "tool_result", "tool_use_id"))
            missing = [i for i in _ids(turn, "tool_use", "id") if i not in answered]
            if missing:
                raise InvalidError(
                    f"messages.{t}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message."
                )


def _check_thinking(body: Block, turns: list[Block]) -> None:
    thinking = body.get("thinking")
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled":
        return
    if kind not in ("enabled", "adaptive"):
        raise InvalidError("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    model = str(body["model"]).lower()
    if model.startswith(_NO_THINKING):  # extended thinking came with Claude 3.7 Sonnet
        raise InvalidError(f"thinking: '{body['model']}' does not support thinking.")
    known = model.startswith("claude")  # a test's failure-mode name takes both kinds
    budgets = model.startswith(BEFORE_OPUS_4_7)
    if kind == "adaptive":
        if known and budgets and not model.startswith(ADAPTIVE_TOO):
            raise InvalidError("thinking.type.adaptive is not supported for this model.")
        _check_fields(thinking, set(), {"display"}, "thinking.adaptive")
    else:
        if known and not budgets:
            raise InvalidError(
                '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" '
                'and "output_config.effort" to control thinking behavior.'
            )
        _check_fields(thinking, {"budget_tokens"}, {"display"}, "thinking.enabled")
        budget = thinking["budget_tokens"]
        if not isinstance(budget, int) or budget < 1024:
            raise InvalidError(
                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if budget >= body["max_tokens"]:
            raise InvalidError(
                f"`max_tokens` must be greater than `thinking.budget_tokens`. {_THINKING_DOCS}"
            )
    if body.get("temperature") not in (None, 1):
        raise InvalidError(f"`temperature` may only be set to 1 when thinking is enabled. {_THINKING_DOCS}")
    if body.get("top_k") is not None:
        raise InvalidError(f"`top_k` must be unset when thinking is enabled. {_THINKING_DOCS}")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        raise InvalidError("Thinking may not be enabled when `tool_choice` forces tool use.")
    _check_thinking_turn(turns)


def _check_thinking_turn(turns: list[Block]) -> None:
    last = next((t for t in reversed(range(len(turns))) if turns[t]["role"] == "assistant"), None)
    if last is None or not _ids(turns[last], "tool_use", "id"):
        return
    first = turns[last]["content"][0].get("type")
    if first not in ("thinking", "redacted_thinking"):
        raise InvalidError(
            f"messages.{last}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
            "thinking block. To avoid this requirement, disable `thinking`. " + _THINKING_DOCS
        )


# --- answers ---------------------------------------------------------------------


def _omitted(body: Block) -> bool:
    """Whether the thinking text is left out (``display: omitted``; from Opus 4.7 on, the default)."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict):
        return False  # a "think" model name's thinking, unasked
    model = str(body["model"]).lower()
    default = "omitted" if model.startswith("claude") and not model.startswith(BEFORE_OPUS_4_7) else None
    return thinking.get("display", default) == "omitted"


def answer(body: Block, turns: list[Block], mode: Mode) -> Block:
    """The non-streaming ``message`` object the real API would return."""
    model = str(body["model"])
    blocks: list[Block] = []
    if "redact" in model:
        blocks.append({"type": "redacted_thinking", "data": REDACTED_DATA})
    if "think" in model or (body.get("thinking") or {}).get("type") in ("enabled", "adaptive"):
        thought = "" if _omitted(body) else _THOUGHT
        blocks.append({"type": "thinking", "thinking": thought, "signature": sign(thought)})
    tools = _tools_to_call(body, turns, mode)
    stop_reason, stop_sequence = "end_turn", None
    if tools:
        interleave = "interleave" in model
        if "preamble" in model or interleave:
            blocks.append({"type": "text", "text": PREAMBLE})
        for k, tool in enumerate(tools):
            if interleave and k:
                blocks.append({"type": "text", "text": INTERLUDE})
            use = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool}
            blocks.append({**use, "input": _tool_input(body, tool)})
        stop_reason = "tool_use"
    else:
        fmt = (body.get("output_config") or {}).get("format")
        said = f"echo: {_last_text(turns)}"
        if fmt is not None:
            said = orjson.dumps(instance(fmt["schema"], _last_text(turns))).decode()
        text, stop_reason, stop_sequence = _cut(said, body)
        if text:
            blocks.append({"type": "text", "text": text})
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(body, blocks),
    }


def _tool_input(body: Block, name: str) -> Any:
    tool = next(t for t in body["tools"] if t["name"] == name)
    return instance(tool["input_schema"], "Paris") if tool.get("strict") else {"location": "Paris"}


def _tools_to_call(body: Block, turns: list[Block], mode: Mode) -> list[str]:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return []
    if choice["type"] == "tool":
        return [str(choice["name"])]
    answering = bool(_ids(turns[-1], "tool_result", "tool_use_id")) if turns[-1]["role"] == "user" else False
    if choice["type"] == "any" or (mode.tool and not answering):
        names = [str(t["name"]) for t in tools]
        parallel = "parallel" in str(body["model"]) and not choice.get("disable_parallel_tool_use")
        return names if parallel else names[:1]
    return []


def _last_text(turns: list[Block]) -> str:
    text = last_user_text(turns)
    if text:
        return text
    for block in reversed(turns[-1]["content"]):
        if block.get("type") == "tool_result":
            content = block.get("content") or ""
            return content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
    return ""


def _cut(text: str, body: Block) -> tuple[str, str, str | None]:
    """Apply stop sequences, then max_tokens (a token is a word here)."""
    for stop in body.get("stop_sequences") or ():
        if stop and stop in text:
            return text[: text.index(stop)], "stop_sequence", stop
    words = text.split(" ")
    if len(words) > body["max_tokens"]:
        return " ".join(words[: body["max_tokens"]]), "max_tokens", None
    return text, "end_turn", None


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(_words(v) for k, v in value.items() if k in ("text", "content", "system", "messages"))
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    return 0


def _cached(value: Any) -> bool:
    if isinstance(value, dict):
        return "cache_control" in value or any(_cached(v) for v in value.values())
    if isinstance(value, list):
        return any(_cached(v) for v in value)
    return False


def _usage(body: Block, blocks: list[Block]) -> Block:
    cached = _cached([body.get("system"), body.get("messages"), body.get("tools")])
    output = sum(_words(b.get("text") or b.get("thinking") or "") for b in blocks)
    output += 5 * sum(b["type"] == "tool_use" for b in blocks)
    return {
        "input_tokens": max(1, _words({"system": body.get("system"), "messages": body["messages"]})),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 100 if cached else 0,
        "output_tokens": max(1, output),
        "service_tier": "standard",
    }


# --- streaming -------------------------------------------------------------------


def _sse(payload: Block) -> bytes:
    kind: str = payload["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _deltas(block: Block) -> list[Block]:
    if block["type"] == "text":
        return [{"type": "text_delta", "text": p} for p in _pieces(block["text"], 5)]
    if block["type"] == "thinking":
        pieces = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"], 6)]
        return [*pieces, {"type": "signature_delta", "signature": block["signature"]}]
    if block["type"] == "redacted_thinking":
        return []  # the whole block is in its content_block_start
    if not block["input"]:  # a tool without input: one empty partial_json, nothing else
        return [{"type": "input_json_delta", "partial_json": ""}]
    partial = orjson.dumps(block["input"]).decode()
    return [{"type": "input_json_delta", "partial_json": p} for p in ["", *_pieces(partial, 4)]]


def _empty(block: Block) -> Block:
    if block["type"] == "text":
        return {"type": "text", "text": ""}
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if block["type"] == "redacted_thinking":
        return block
    return {**block, "input": {}}


def events(message: Block) -> list[bytes]:
    """The SSE events that stream ``message``."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    out = [_sse({"type": "message_start", "message": start})]
    for i, block in enumerate(message["content"]):
        out.append(_sse({"type": "content_block_start", "index": i, "content_block": _empty(block)}))
        if i == 0:
            out.append(_sse({"type": "ping"}))
        out += [_sse({"type": "content_block_delta", "index": i, "delta": d}) for d in _deltas(block)]
        out.append(_sse({"type": "content_block_stop", "index": i}))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    out.append(
        _sse({"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage["output_tokens"]}})
    )
    out.append(_sse({"type": "message_stop"}))
    return out


def fake_provider() -> FakeProvider:
    """How the contract suite (tests/contract/) runs the ``anthropic`` type against this fake.

    Its chat model has a Claude 3 name: the row declares no structured output (it exists per
    model), so the suite's refusal checks need a model without it; the failure-mode names
    built on it (``tool-...``) are names the model table does not know, with structured outputs.
    """
    key = "sk-ant-fake-0123456789"
    return FakeProvider(
        "anthropic", lambda: anthropic_app(api_key=key), api_key=key, chat_model="claude-3-fake"
    )
