"""Translation helpers several adapters share (pure functions of data).

JSON objects in tool arguments, Gemini's signed tool call ids seen by providers that cap id
length, other providers' ids in the narrower alphabet of Claude and Bedrock, alternating turns
(Anthropic Messages, Bedrock Converse), an assistant turn's blocks in its client's order, and
strict tools on models that cannot guarantee a tool's schema, which schemas OpenAI's strict
mode takes, and token log probabilities in OpenAI's shape.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from uniinfer.errors import InvalidRequestError, UnsupportedFeatureError, UnsupportedParamError
from uniinfer.types import ChatRequest
from uniinfer.types.chat import (
    AnswerBlock,
    AssistantMessage,
    FilePart,
    ImagePart,
    Message,
    SignedThinking,
    TextPart,
    ToolCall,
    ToolMessage,
    TurnBlock,
)

__all__ = [
    "GEMINI_ID_MARK",
    "SIGNED_ID_MARK",
    "add_answer_text",
    "add_turn",
    "answer_order",
    "call_ordered",
    "data_url",
    "images_into_results",
    "inline_file_data",
    "json_object",
    "logprobs_of",
    "marked_result_image",
    "openai_strict_schema",
    "plain_call_id",
    "refuse_legacy_function_call",
    "strict_tool_error",
    "strict_tools",
    "token_logprob",
    "turn_in_order",
    "without_strict",
    "word_call_id",
]


def json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed, if it is a JSON object (tool arguments and results); else None."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


#: Gemini 3's thought signatures ride in the tool call ids uniinfer makes for its answers,
#: ``<id>__ts<payload>`` (see ``providers/gemini_request.py``): hundreds of characters.
SIGNED_ID_MARK = "__ts"
#: Gemini's own id for a call rides in the same ids, before the signature: ``<id>__id<hex>``.
GEMINI_ID_MARK = "__id"


def plain_call_id(tool_call_id: str) -> str:
    """A tool call id without a Gemini signature or id: what a provider that caps id length gets.

    OpenAI refuses ids over 40 characters and Bedrock over 64, so a conversation
    that moves there from Gemini 3 sends them the id's plain part (the same in the
    assistant turn and its tool results, so they still pair up).
    """
    base, mark, _ = tool_call_id.partition(SIGNED_ID_MARK)
    base = base if mark and base else tool_call_id
    plain, mark, _ = base.partition(GEMINI_ID_MARK)
    return plain if mark and plain else base


_WORD_ID = re.compile(r"[A-Za-z0-9_-]+")
_NOT_WORD = re.compile(r"[^A-Za-z0-9_-]")


def word_call_id(tool_call_id: str, limit: int | None = None) -> str:
    """A tool call id in the alphabet Claude and Bedrock take: letters, digits, ``_`` and ``-``.

    Both refuse any other id with a 400 (``^[a-zA-Z0-9_-]+$``), yet other providers'
    ids carry more (Kimi's ``functions.get_weather:0``), and a conversation may move
    between them. An id already so (and, with ``limit``, no longer) passes as it is;
    another is spelled in that alphabet, plus a hash of the original so that two ids
    stay two. The mapping is the same every time, so a call and its result still pair.
    """
    if _WORD_ID.fullmatch(tool_call_id) and (limit is None or len(tool_call_id) <= limit):
        return tool_call_id
    digest = hashlib.blake2s(tool_call_id.encode(), digest_size=6).hexdigest()
    head = _NOT_WORD.sub("_", tool_call_id)
    if limit is not None:
        head = head[: limit - len(digest) - 1]
    return f"{head}_{digest}"


def inline_file_data(part: FilePart, where: str, provider: str, thing: str, media: str) -> str:
    """A ``file`` part's inline ``file_data`` (a data URL, not yet parsed).

    A ``file_id`` names a file uploaded to OpenAI, which no other provider can read: that, or
    a part without data, is an UnsupportedFeatureError naming ``{where}.file``, saying to
    send ``thing`` inline as a ``data:{media};base64,...`` URL instead.
    """
    url = part.file.get("file_data")
    if url is not None:
        return url
    what = "a 'file_id' reference" if "file_id" in part.file else "a file part without 'file_data'"
    raise UnsupportedFeatureError(
        f"{where}.file: {provider} cannot resolve {what}; send {thing} inline as 'file_data' "
        f"(a data:{media};base64,... URL)",
        param=f"{where}.file",
    )


def refuse_legacy_function_call(msg: AssistantMessage, i: int) -> None:
    """A 400 for an assistant turn's deprecated ``function_call`` (one call, no id), which
    native wire formats have no place for: sent on without it, the call would vanish from the
    history."""
    if msg.function_call is not None:
        raise InvalidRequestError(
            f"messages[{i}].function_call: the legacy function_call is not supported; use tool_calls",
            param=f"messages[{i}].function_call",
        )


#: Media types clients write that no API takes, as the registered ones (``image/jpg``, common
#: in OpenAI clients, is refused by Gemini and Claude).
_MEDIA_ALIASES = {"image/jpg": "image/jpeg"}


def data_url(url: str) -> tuple[str, str] | None:
    """``(media type, base64 data)`` of a ``data:<type>[;param...];base64,<data>`` URL, else None.

    The scheme, the type and ``base64`` are case-insensitive (RFC 2397, RFC 2045), so
    the type comes back in lower case: ``image/JPEG`` is ``image/jpeg`` to every API, and so
    is ``image/jpg``.
    """
    header, sep, data = url.partition(",")
    if not (sep and data and header[:5].lower() == "data:"):
        return None
    media, *params = header[5:].split(";")
    if not media or not params or params[-1].strip().lower() != "base64":
        return None
    media = media.strip().lower()
    return _MEDIA_ALIASES.get(media, media), data


def call_ordered(messages: list[Message]) -> list[tuple[int, Message]]:
    """The messages with their indexes, each run of tool results in the order of the calls
    they answer.

    OpenAI's format pairs a result with its call by ``tool_call_id``, so a client may send
    them in any order. Gemini (a ``functionResponse`` names only the function) and Ollama
    (a tool message names only the tool) pair them by position: two calls to one function
    answered out of order would give each the other's result. Results whose id no call of
    the turn before has keep their place after the others.
    """
    out: list[tuple[int, Message]] = []
    order: dict[str, int] = {}
    run: list[tuple[int, ToolMessage]] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, ToolMessage):
            run.append((i, msg))
            continue
        if run:
            out += _in_call_order(run, order)
            run = []
        if isinstance(msg, AssistantMessage):
            order = {call.id: k for k, call in enumerate(msg.tool_calls or ())}
        out.append((i, msg))
    return out + _in_call_order(run, order)


def _in_call_order(run: list[tuple[int, ToolMessage]], order: dict[str, int]) -> list[tuple[int, Message]]:
    last = len(order)

    def position(item: tuple[int, ToolMessage]) -> int:
        return order.get(item[1].tool_call_id, last)

    ordered = sorted(run, key=position)
    return [*ordered]


#: The mark on an image block made from a tool result's image (``ImagePart.of_tool_result``):
#: ``(tool_use_id, place in the result)``, taken off before sending.
_RESULT_IMAGE = "_of_tool_result"


def marked_result_image(block: dict[str, Any], part: ImagePart) -> dict[str, Any]:
    """``block``, the image ``part`` became, marked with the tool result it came out of, if any."""
    if part.of_tool_result is not None:
        block[_RESULT_IMAGE] = part.of_tool_result
    return block


def images_into_results(
    blocks: list[dict[str, Any]],
    results: Mapping[str, dict[str, Any]],
    content_of: Callable[[dict[str, Any]], list[dict[str, Any]]],
    call_id: Callable[[str], str],
) -> None:
    """Put a user turn's marked images back into their tool results, in place, in their place.

    The Anthropic Messages ingress moves an image out of a ``tool_result`` (OpenAI's tool
    messages take only text) into the user message after the results
    (:attr:`~uniinfer.types.chat.ImagePart.of_tool_result`); the Messages API and Bedrock's
    ``toolResult`` take images inside, where the model sees which result each belongs to.
    ``results`` maps a result's id, as sent (``call_id``), to the block whose ``content`` the
    image joins; ``content_of`` gives that content as a list. An image whose result is not in
    the turn stays where it is.
    """
    placed: list[dict[str, Any]] = []
    for image in [b for b in blocks if _RESULT_IMAGE in b]:
        owner_id, position = image.pop(_RESULT_IMAGE)
        owner = results.get(call_id(owner_id))
        if owner is not None:
            content = content_of(owner)
            owner["content"] = [*content[:position], image, *content[position:]]
            placed.append(image)
    if placed:
        blocks[:] = [b for b in blocks if not any(b is p for p in placed)]


def add_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add ``blocks`` as a ``role`` turn, merged into the last turn when it has that role
    (Anthropic's Messages and Bedrock's Converse want user and assistant turns to alternate)."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def add_answer_text(blocks: list[AnswerBlock], text: str) -> None:
    """Append an answer's ``text`` block to ``blocks`` (its blocks in order), joined to a text
    just before it (a stream shows them as one); an empty text is no block."""
    if text and blocks and isinstance(blocks[-1], str):
        blocks[-1] += text
    elif text:
        blocks.append(text)


def answer_order(
    blocks: list[AnswerBlock], text: str, calls: list[ToolCall], signed: Sequence[SignedThinking] = ()
) -> list[AnswerBlock] | None:
    """An answer's ``blocks`` for :attr:`~uniinfer.types.chat.ResponseMessage.content_blocks`:
    None when OpenAI's shape (signed thinking, the joined ``text``, then the ``calls``) keeps
    their order anyway."""
    return None if blocks == [*signed, *([text] if text else ()), *calls] else blocks


def turn_in_order(msg: AssistantMessage) -> list[TurnBlock] | None:
    """The blocks of an assistant turn in its client's order, when they still are the turn's
    text parts, tool calls and signed thinking; else None (send the turn in OpenAI's order).

    The Anthropic Messages ingress keeps that order
    (:attr:`~uniinfer.types.chat.AssistantMessage.content_blocks`) when OpenAI's shape (signed
    thinking, text, then the tool calls) loses it: a text after a ``tool_use``, say. A stage on
    the way may have rewritten the message since (a text redacted, a call dropped, a refusal
    part added), and then the message is what goes upstream: the blocks are stale. A provider
    that takes an ordered turn (Claude, Bedrock Converse, Gemini) sends it in this order.
    """
    blocks = msg.content_blocks
    if blocks is None:
        return None
    texts = [b.text for b in blocks if isinstance(b, TextPart)]
    calls = [b for b in blocks if isinstance(b, ToolCall)]
    signed = [b for b in blocks if isinstance(b, SignedThinking)]
    content = msg.content if msg.content is not None else []
    # a refusal part matches no block: the message changed
    sent = (
        [content]
        if isinstance(content, str)
        else [p.text if isinstance(p, TextPart) else None for p in content]
    )
    if texts != sent or calls != (msg.tool_calls or []) or signed != (msg.signed_thinking or []):
        return None
    return blocks


def strict_tools(request: ChatRequest) -> tuple[str, ...]:
    """The param paths of the tools marked ``strict`` (for :meth:`ProviderAdapter.values_refused`
    where a model cannot guarantee a tool's schema)."""
    return tuple(
        f"tools[{i}].function.strict" for i, t in enumerate(request.tools or ()) if t.function.strict
    )


def without_strict(request: ChatRequest) -> ChatRequest:
    """``request`` with no tool marked ``strict`` (for :meth:`ProviderAdapter.without_values`)."""
    tools = [
        t.model_copy(update={"function": t.function.model_copy(update={"strict": None})})
        for t in request.tools or ()
    ]
    return request.model_copy(update={"tools": tools})


def strict_tool_error(provider: str, i: int, model: str, why: str) -> UnsupportedParamError:
    """A strict tool the model cannot honour, named (the gateway drops it instead when configured)."""
    return UnsupportedParamError(
        f"{provider} does not support strict tools (tools[{i}].function.strict) for model "
        f"'{model}': {why}; remove it or set settings.drop_unsupported_params",
        param=f"tools[{i}].function.strict",
    )


#: Keywords whose value is one subschema, or a list or map of them.
_SUBSCHEMA = ("items", "additionalProperties", "not")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")


def openai_strict_schema(schema: Any) -> bool:
    """Whether OpenAI's strict mode (structured outputs) takes ``schema`` as it is.

    https://platform.openai.com/docs/guides/structured-outputs#supported-schemas: every
    object sets ``additionalProperties: false`` and lists each of its properties in
    ``required`` (an optional field is a required one that may be null). Anthropic's
    structured outputs allow optional properties, so its schemas often fail this.
    """
    if not isinstance(schema, dict):
        return True
    kind = schema.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in schema:
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(properties, dict) or not isinstance(required, list):
            return False  # not a schema strict mode compiles; the provider says what is wrong
        if schema.get("additionalProperties") is not False or any(p not in required for p in properties):
            return False
    for key in _SUBSCHEMA:
        if not openai_strict_schema(schema.get(key)):
            return False
    for key in _SUBSCHEMA_LISTS:
        subs = schema.get(key, [])
        if not isinstance(subs, list) or not all(openai_strict_schema(sub) for sub in subs):
            return False
    for key in _SUBSCHEMA_MAPS:
        subs = schema.get(key, {})
        if not isinstance(subs, dict) or not all(openai_strict_schema(sub) for sub in subs.values()):
            return False
    return True


def token_logprob(token: str, logprob: float, token_bytes: list[int] | None = None) -> dict[str, Any]:
    """OpenAI's ``ChatCompletionTokenLogprob`` without its ``top_logprobs``; ``bytes`` (the
    token's UTF-8, which a token cut inside a character needs) from the token text when the
    provider gives none."""
    return {
        "token": token,
        "logprob": logprob,
        "bytes": token_bytes if token_bytes is not None else list(token.encode()),
    }


def logprobs_of(content: list[dict[str, Any]]) -> dict[str, Any]:
    """A choice's ``logprobs`` (OpenAI's shape) for the entries of its content tokens."""
    return {"content": content, "refusal": None}
