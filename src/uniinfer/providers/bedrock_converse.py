"""Bedrock Converse wire format: the request, built from an OpenAI-shaped one (pure functions).

Pure functions used by :class:`uniinfer.providers.bedrock.BedrockAdapter`
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html).

Requests: ``system``/``developer`` messages become ``system: [{"text"}]``;
user parts ``{"text"}`` / ``{"image": {"format", "source": {"bytes"}}}`` /
``{"document": ...}`` blocks (Converse takes image *bytes*, so an http(s) URL is an
InvalidRequestError naming the part; documents below); assistant ``tool_calls``
``toolUse`` blocks; ``tool`` messages ``toolResult`` blocks of a user turn
(``{"json"}`` for a JSON object, else ``{"text"}``; OpenAI tool messages carry no
error flag, so no ``status``).
Same-role turns are merged (roles must alternate), blank (or whitespace-only)
text is dropped and an empty tool result becomes ``"(no output)"`` (Converse
rejects a blank text block). Signed reasoning (an assistant turn's
:attr:`~uniinfer.types.chat.AssistantMessage.signed_thinking`, as the Anthropic Messages ingress
takes it from its client, Claude Code say) goes back to a Claude model first in its turn, as
``reasoningContent`` blocks: ``reasoningText`` (text and ``signature``) or ``redactedContent``,
unmodified, as Claude wants them in a tool loop (its signatures hold on every platform), when
the request thinks (without thinking Claude ignores them); other models get none, no other
model's reasoning is taken for Claude's, and plain ``reasoning_content`` is never sent back. A turn whose text and tool calls the Anthropic Messages ingress kept
in its client's order (:attr:`~uniinfer.types.chat.AssistantMessage.content_blocks`: a text after
a call, say) goes in that order, while they still are the message's
(:func:`~uniinfer.providers.translation.turn_in_order`).
``inferenceConfig`` takes ``maxTokens``, ``temperature`` (unchanged: Bedrock's
range is 0..1, OpenAI's 0..2, and Bedrock's 400 names it), ``topP`` and
``stopSequences``. ``tool_choice`` auto / required / a function is
``{"auto"}`` / ``{"any"}`` / ``{"tool"}``; Converse has no "none", so "none"
sends no tools, and since Bedrock requires ``toolConfig`` once the history has
tool blocks, "none" is then an UnsupportedParamError (not a silent "auto").
``additionalModelRequestFields`` carries what a model family takes beyond
that: Anthropic ``top_k`` and ``thinking`` (``reasoning_effort``, as on the Claude API:
a budget of :func:`~uniinfer.providers.anthropic_request.thinking_budget` below
``maxTokens`` before Opus 4.7, adaptive thinking from it on; off while a tool loop is
open whose tool-calling turn has no signed reasoning to start with, which history from an OpenAI
client or another provider cannot carry), Amazon Nova ``inferenceConfig.topK``; other families get an
UnsupportedParamError for those params. The effort of adaptive thinking, and an
Anthropic Messages client's ``output_config.effort``, go to a Claude model as
``outputConfig.effort`` (refused for a model without that level); Claude from Opus 4.7
on takes no ``temperature``, ``top_p`` or ``top_k``.

Structured outputs (https://docs.aws.amazon.com/bedrock/latest/userguide/structured-output.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_OutputConfig.html), for the
models of :data:`~uniinfer.providers.bedrock_models.STRUCTURED_OUTPUTS`: ``response_format``
``json_schema`` becomes ``outputConfig: {"textFormat": {"type": "json_schema", "structure":
{"jsonSchema": {"schema": "<the schema as a JSON string>", "name", "description"}}}}`` and a
tool's ``strict: true`` the ``toolSpec``'s ``strict``. The schema goes as the caller wrote it:
Bedrock refuses what it cannot compile (numeric and string-length constraints,
``additionalProperties`` other than ``false``, recursive schemas...) with a 400. The answer is
an ordinary ``text`` block holding the JSON (streamed as text deltas; ``max_tokens`` ->
``length``: the JSON may then be cut). ``json_schema.strict: false`` cannot be expressed (the
service always constrains). For any other model nothing is sent: json_schema is an
UnsupportedFeatureError and a strict tool an UnsupportedParamError naming
``tools[i].function.strict`` (the gateway drops it visibly when configured to).

Documents (``file`` parts) become ``document`` blocks: see
:mod:`uniinfer.providers.bedrock_documents`.

Prompt caching (https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_CachePointBlock.html): a
``cache_control`` breakpoint (which the Anthropic Messages ingress keeps on text, image and file
parts, tool calls and tools) becomes a ``{"cachePoint": {"type": "default"}}`` block right after
the block it closes, in ``system``, a turn's ``content`` (after the ``toolResult`` for a tool
message's, or an image moved into a result) or ``toolConfig.tools``; ``ttl: "1h"`` is kept as the
``cachePoint``'s ``ttl`` where the model has one-hour caching (``HOUR_CACHE`` in
:mod:`~uniinfer.providers.bedrock_models`; ``5m`` is the default and not sent). Only the models
of its ``PROMPT_CACHING`` take checkpoints, and Amazon Nova not on tools; Bedrock refuses a
request with one anywhere else ("You invoked an unsupported model, or your request did not allow
prompt caching"). A breakpoint is a hint that changes what a request
costs, never what the model answers, so where the model cannot take it, it is left out rather than
the request refused, and :func:`cache_left_out` names it (``cache_control``, or
``cache_control.ttl`` for a lost one-hour TTL) for ``x-uniinfer-dropped-params``. More than four
checkpoints are sent as asked, as on the Claude API, for Bedrock's 400 to name.

Responses are parsed in :mod:`uniinfer.providers.bedrock_response`, streams decoded in
:mod:`uniinfer.providers.eventstream`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from uniinfer.errors import (
    InvalidRequestError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)
from uniinfer.providers.anthropic_request import (
    adaptive_thinking,
    enabled_thinking,
    output_effort,
    thinking_budget,
)
from uniinfer.providers.bedrock_documents import document, name_documents
from uniinfer.providers.bedrock_models import (
    NO_CACHING,
    PromptCaching,
    claude_name,
    prompt_caching,
    structured_outputs,
    unsupported_for,
)
from uniinfer.providers.bedrock_response import STOP_SEQUENCE_PATH
from uniinfer.providers.claude_models import (
    effort_error,
    effort_refused,
    sampling_conflict_error,
    sampling_conflicts,
    thinking_conflict_error,
    thinking_conflicts,
    thinks_adaptively,
)
from uniinfer.providers.translation import (
    add_turn,
    data_url,
    images_into_results,
    json_object,
    marked_result_image,
    plain_call_id,
    refuse_legacy_function_call,
    strict_tool_error,
    turn_in_order,
    word_call_id,
)
from uniinfer.types import ChatRequest, chat
from uniinfer.types.chat import ToolCall

__all__ = ["cache_left_out", "converse_payload", "thinking_left_out"]

Json = dict[str, Any]

_DEFAULT_MAX_TOKENS = 4096
_MIN_BUDGET = 1024
# https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ImageBlock.html
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_NEED_STRUCTURED = (
    "Bedrock has structured outputs for Claude Sonnet 4.5, Haiku 4.5, Opus 4.5 and later Claude "
    "models and for OpenAI gpt-oss models"
)
#: A block's ``cachePoint`` until it is placed after the block (the block may move first: an
#: image into its tool result).
_CACHE_POINT = "_cache_point"


# --- request ---------------------------------------------------------------------------


def converse_payload(request: ChatRequest, model: str) -> Json:
    """The Converse / ConverseStream body (the model id travels in the path)."""
    caching = prompt_caching(model)
    # signed reasoning goes back to Claude when this request thinks (else Claude ignores it,
    # and a model without thinking might refuse it)
    reasoning = "anthropic." in model and thinking_budget(request) is not None
    system, turns = _turns(request.messages, caching, reasoning=reasoning)
    payload: Json = {"messages": turns}
    if system:
        payload["system"] = system
    config = _inference_config(request)
    tool_loop = _thinking_left_out(turns)
    extra = _model_fields(request, model, config, tool_loop=tool_loop)
    if config:
        payload["inferenceConfig"] = config
    if extra:
        payload["additionalModelRequestFields"] = extra
    if request.stop is not None and "anthropic." in model:
        # which stop sequence ended the answer: Claude's response has it, Converse's does not
        payload["additionalModelResponseFieldPaths"] = [STOP_SEQUENCE_PATH]
    structured = structured_outputs(model)
    tools = _tool_config(request, turns, model, structured, caching)
    if tools is not None:
        payload["toolConfig"] = tools
    output = _output_config(request, model, structured)
    effort = output_effort(request, claude_name(model)) if "anthropic." in model else None
    if tool_loop and request.messages_intent is None:
        effort = None  # an OpenAI client's effort stood for the thinking a tool loop leaves out
    if effort is not None:
        if effort_refused(effort, claude_name(model)):
            raise effort_error("bedrock", model, effort)
        output = {**(output or {}), "effort": effort}
    if output is not None:
        payload["outputConfig"] = output
    return payload


def cache_left_out(request: ChatRequest, model: str) -> tuple[str, ...]:
    """What of ``request``'s prompt-cache breakpoints :func:`converse_payload` leaves out for
    ``model``: ``cache_control`` when some fall where it takes none, else ``cache_control.ttl``
    when a one-hour TTL is lost (the gateway reports it in ``x-uniinfer-dropped-params``)."""
    marks = list(_breakpoints(request))
    if not marks:
        return ()
    caching = prompt_caching(model)
    if any(place not in caching.places for place, _ in marks):
        return ("cache_control",)
    if not caching.hour and any(cache.get("ttl") == "1h" for _, cache in marks):
        return ("cache_control.ttl",)
    return ()


def _breakpoints(request: ChatRequest) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(place, ``cache_control``) of every breakpoint in ``request``; the place of one on a blank
    text outside a tool result is ``""``: the block is left out (Converse refuses it), and so is
    its breakpoint."""
    for msg in request.messages:
        place = "system" if isinstance(msg, chat.SystemMessage | chat.DeveloperMessage) else "messages"
        if isinstance(msg.content, list):
            for part in msg.content:
                cache = getattr(part, "cache_control", None)
                if cache is not None:
                    blank = isinstance(part, chat.TextPart) and not part.text.strip()
                    yield ("" if blank and not isinstance(msg, chat.ToolMessage) else place), cache
        if isinstance(msg, chat.AssistantMessage):
            calls = msg.tool_calls or ()
            yield from (("messages", c.cache_control) for c in calls if c.cache_control is not None)
    yield from (("tools", t.cache_control) for t in request.tools or () if t.cache_control is not None)


def _marked(block: Json, item: Any, caching: PromptCaching, place: str) -> Json:
    """``block`` with the ``cachePoint`` of ``item``'s breakpoint, where ``caching`` takes it
    there, to place after it (:func:`_with_cache_points`)."""
    cache = getattr(item, "cache_control", None)
    if cache is not None and place in caching.places:
        block[_CACHE_POINT] = caching.point(cache)
    return block


def _with_cache_points(blocks: list[Json]) -> list[Json]:
    """``blocks`` with each marked one followed by its ``cachePoint`` block (a tool result's
    after the ``toolResult``: its content takes none)."""
    out: list[Json] = []
    for block in blocks:
        out.append(block)
        point = block.pop(_CACHE_POINT, None)
        result = block.get("toolResult")
        if result is not None:
            for item in result["content"]:
                point = item.pop(_CACHE_POINT, None) or point
        if point is not None:
            out.append({"cachePoint": point})
    return out


def _output_config(r: ChatRequest, model: str, structured: bool) -> Json | None:
    """``outputConfig`` for ``response_format`` json_schema (None: nothing to send)."""
    fmt = r.response_format
    if fmt is None or isinstance(fmt, chat.TextFormat):
        return None
    if isinstance(fmt, chat.JSONObjectFormat):
        raise UnsupportedFeatureError(
            "bedrock does not support JSON mode (response_format json_object): its structured outputs "
            "need a schema; send response_format json_schema",
            param="response_format",
        )
    if not structured:
        raise UnsupportedFeatureError(
            f"bedrock does not support structured output (response_format json_schema) for model "
            f"'{model}': {_NEED_STRUCTURED}",
            param="response_format",
        )
    spec = fmt.json_schema
    if spec.schema_ is None:
        raise InvalidRequestError(
            "response_format.json_schema.schema: bedrock needs the JSON schema of the answer",
            param="response_format",
        )
    definition: Json = {"schema": orjson.dumps(spec.schema_).decode(), "name": spec.name}
    if spec.description:
        definition["description"] = spec.description
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}


def _inference_config(r: ChatRequest) -> Json:
    pairs = (("maxTokens", r.max_completion_tokens or r.max_tokens), ("temperature", r.temperature))
    config: Json = {key: value for key, value in (*pairs, ("topP", r.top_p)) if value is not None}
    if r.stop is not None:
        config["stopSequences"] = [r.stop] if isinstance(r.stop, str) else list(r.stop)
    return config


def _model_fields(r: ChatRequest, model: str, config: Json, *, tool_loop: bool) -> Json:
    """``additionalModelRequestFields`` for the model's family (thinking may set ``maxTokens``)."""
    if "anthropic." in model and sampling_conflicts(r, claude_name(model)):
        raise sampling_conflict_error("bedrock", model)  # a value refused (BedrockAdapter.values_refused)
    lacking = unsupported_for(model)
    for param, families in (
        ("top_k", "Anthropic Claude and Amazon Nova"),
        ("reasoning_effort", "Anthropic Claude"),
    ):
        if getattr(r, param) is not None and param in lacking:
            if param == "reasoning_effort" and "anthropic." in model:
                raise UnsupportedParamError(
                    f"bedrock: model '{model}' has no extended thinking (Claude 3.7 Sonnet and later "
                    "models have it): leave reasoning_effort out, or set settings.drop_unsupported_params",
                    param=param,
                )
            raise UnsupportedParamError(
                f"'{param}' is passed (as additionalModelRequestFields) to {families} models on Bedrock "
                f"only, not to '{model}'",
                param=param,
            )
    fields: Json = {}
    if r.top_k is not None:
        fields.update({"top_k": r.top_k} if "anthropic." in model else {"inferenceConfig": {"topK": r.top_k}})
    budget = thinking_budget(r)
    if budget is not None and not tool_loop:
        conflicts = thinking_conflicts(r, thinking_on=True)
        if conflicts:  # a value refused (BedrockAdapter.values_refused): dropped when configured
            raise thinking_conflict_error("bedrock", model, conflicts[0])
        if thinks_adaptively(r, claude_name(model)):
            config.setdefault("maxTokens", budget + _DEFAULT_MAX_TOKENS)
            fields["thinking"] = adaptive_thinking(r)
        else:
            limit = "max_completion_tokens" if r.max_completion_tokens else "max_tokens"
            fields["thinking"] = enabled_thinking(r, _budget(budget, config, limit))
    return fields


def _budget(budget: int, config: Json, limit: str) -> int:
    """The thinking budget, kept below ``maxTokens`` (which is set when unset)."""
    max_tokens = config.get("maxTokens")
    if max_tokens is None:
        config["maxTokens"] = budget + _DEFAULT_MAX_TOKENS
    elif max_tokens <= _MIN_BUDGET:
        raise InvalidRequestError(
            f"with 'reasoning_effort', Claude on Bedrock needs '{limit}' above {_MIN_BUDGET} "
            f"(the minimum thinking budget), got {max_tokens}",
            param=limit,
        )
    else:
        budget = min(budget, max_tokens - 1)
    return budget


def _thinking_left_out(turns: list[Json]) -> bool:
    """Whether the last assistant turn called tools without its signed reasoning to start with:
    with thinking on Claude refuses it, so thinking is left out (history from an OpenAI client or
    another provider has no signature to send)."""
    last = next((t for t in reversed(turns) if t["role"] == "assistant"), None)
    if last is None or not any("toolUse" in b for b in last["content"]):
        return False
    return "reasoningContent" not in last["content"][0]


def _turns(
    messages: list[chat.Message], caching: PromptCaching = NO_CACHING, *, reasoning: bool = False
) -> tuple[list[Json], list[Json]]:
    """(system blocks, alternating user/assistant turns), with the cache checkpoints ``caching``
    takes, unique document names, and (``reasoning``: for Claude) the turns' signed reasoning."""
    system: list[Json] = []
    turns: list[Json] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, chat.SystemMessage | chat.DeveloperMessage):
            system += _text_blocks(msg.content, caching, "system")
            continue
        if isinstance(msg, chat.AssistantMessage):
            role, blocks = "assistant", _assistant_blocks(msg, i, caching, reasoning=reasoning)
        elif isinstance(msg, chat.ToolMessage):
            role, blocks = "user", [_tool_result(msg, caching)]
        else:
            role, blocks = "user", _user_blocks(msg.content, i, caching)
        add_turn(turns, role, blocks)
    names: set[str] = set()
    for turn in turns:
        if turn["role"] == "user":
            _images_into_results(turn["content"])
            name_documents(turn["content"], names)
        if "messages" in caching.places:
            turn["content"] = _with_cache_points(turn["content"])
    return _with_cache_points(system) if "system" in caching.places else system, turns


def _images_into_results(blocks: list[Json]) -> None:
    """A tool result's images back in its ``toolResult``, which takes images, as on the Claude API
    (:func:`~uniinfer.providers.translation.images_into_results`)."""
    results = {b["toolResult"]["toolUseId"]: b["toolResult"] for b in blocks if "toolResult" in b}
    images_into_results(blocks, results, _result_content, _call_id)


def _result_content(result: Json) -> list[Json]:
    return [c for c in result["content"] if c != {"text": EMPTY_RESULT}]  # not empty once it has one


def _texts(content: str | list[Any] | None) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [p.text if isinstance(p, chat.TextPart) else str(getattr(p, "refusal", "")) for p in content]


def _text_blocks(content: str | list[Any] | None, caching: PromptCaching, place: str) -> list[Json]:
    """Text blocks, blank ones left out (Converse refuses them), each marked with its part's
    cache checkpoint."""
    if not isinstance(content, list):
        return [{"text": t} for t in _texts(content) if t.strip()]
    return [
        _marked({"text": text}, part, caching, place)
        for part, text in zip(content, _texts(content), strict=True)
        if text.strip()
    ]


def _user_blocks(content: str | list[Any], i: int, caching: PromptCaching) -> list[Json]:
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    blocks: list[Json] = []
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        if isinstance(part, chat.TextPart):
            if part.text.strip():
                blocks.append(_marked({"text": part.text}, part, caching, "messages"))
        elif isinstance(part, chat.ImagePart):
            image = marked_result_image(_image(part.image_url.url, where), part)
            blocks.append(_marked(image, part, caching, "messages"))
        elif isinstance(part, chat.FilePart):
            blocks.append(_marked(document(part, where), part, caching, "messages"))
        else:
            raise UnsupportedFeatureError(
                f"{where}: bedrock does not accept '{part.type}' content parts", param=where
            )
    return blocks


def _image(url: str, where: str) -> Json:
    if url.startswith(("http://", "https://")):
        raise InvalidRequestError(
            f"{where}: Bedrock Converse takes image bytes, not image URLs; send a base64 data: URL",
            param=where,
        )
    parsed = data_url(url)
    if parsed is None:
        raise InvalidRequestError(f"{where}: an image must be a base64 data: URL", param=where)
    media, data = parsed
    fmt = _IMAGE_FORMATS.get(media)
    if fmt is None:
        raise InvalidRequestError(
            f"{where}: Bedrock accepts image/png, image/jpeg, image/gif and image/webp, not '{media}'",
            param=where,
        )
    return {"image": {"format": fmt, "source": {"bytes": data}}}


def _assistant_blocks(
    msg: chat.AssistantMessage, i: int, caching: PromptCaching, *, reasoning: bool
) -> list[Json]:
    refuse_legacy_function_call(msg, i)
    ordered = turn_in_order(msg)  # the client's order, else signed reasoning, the text, the calls
    blocks: list[Json] = []
    if ordered is None:
        blocks += [_reasoning(t) for t in msg.signed_thinking or ()] if reasoning else []
        blocks += _text_blocks(msg.content, caching, "messages")
    k = 0
    for item in (msg.tool_calls or ()) if ordered is None else ordered:
        if isinstance(item, chat.SignedThinking):
            if reasoning:
                blocks.append(_reasoning(item))
        elif isinstance(item, chat.TextPart):
            blocks += _text_blocks([item], caching, "messages")
        elif isinstance(item, ToolCall):
            use = {
                "toolUseId": _call_id(item.id),
                "name": item.function.name,
                "input": _arguments(item, i, k),
            }
            blocks.append(_marked({"toolUse": use}, item, caching, "messages"))
            k += 1
    return blocks


def _reasoning(signed: chat.SignedThinking) -> Json:
    """A signed thinking block as Converse's ``reasoningContent``, unmodified."""
    if signed.type == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": signed.data}}
    return {"reasoningContent": {"reasoningText": {"text": signed.thinking, "signature": signed.signature}}}


def _arguments(call: ToolCall, i: int, k: int) -> Json:
    raw = call.function.arguments
    value = json_object(raw) if raw.strip() else {}
    if value is None:
        raise InvalidRequestError(
            f"messages[{i}].tool_calls[{k}].function.arguments must be a JSON object, got {raw[:80]!r}",
            param=f"messages[{i}].tool_calls",
        )
    return value


#: A tool result with no text: Converse refuses a blank text block (400), so one stands in.
EMPTY_RESULT = "(no output)"


def _tool_result(msg: chat.ToolMessage, caching: PromptCaching) -> Json:
    text = "\n".join(_texts(msg.content))  # an MCP result's text items, one a line
    value = json_object(text)
    content = {"json": value} if value is not None else {"text": text if text.strip() else EMPTY_RESULT}
    block = {"toolResult": {"toolUseId": _call_id(msg.tool_call_id), "content": [content]}}
    # the result's breakpoint (on its last text part, from the Anthropic ingress) follows it
    cached = [p for p in msg.content if p.cache_control is not None] if isinstance(msg.content, list) else []
    return _marked(block, cached[-1], caching, "messages") if cached else block


def _call_id(tool_call_id: str) -> str:
    """Bedrock's ``toolUseId``: at most 64 characters, letters, digits, ``_`` and ``-``."""
    return word_call_id(plain_call_id(tool_call_id), limit=64)


def _tool_config(
    r: ChatRequest, turns: list[Json], model: str, structured: bool, caching: PromptCaching
) -> Json | None:
    if not r.tools:
        return _history_tools(turns)
    choice = r.tool_choice
    if choice == "none":
        if any("toolUse" in b or "toolResult" in b for turn in turns for b in turn["content"]):
            raise UnsupportedParamError(
                "tool_choice 'none' cannot be expressed on Bedrock Converse: it has no 'none' choice "
                "and needs the tool definitions while the conversation holds tool calls; "
                "omit tool_choice (or the tools)",
                param="tool_choice",
            )
        return None
    specs = [_marked(_tool_spec(t, i, model, structured), t, caching, "tools") for i, t in enumerate(r.tools)]
    config: Json = {"tools": _with_cache_points(specs) if "tools" in caching.places else specs}
    if isinstance(choice, chat.ToolChoiceFunction):
        config["toolChoice"] = {"tool": {"name": choice.function.name}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    # "auto" is Converse's default, and left unsaid: the API documents toolChoice for some model
    # families only (Claude, Nova, Mistral Large), and the others may refuse the field itself
    return config


#: How a tool of the history is declared when the request has none (see :func:`_history_tools`).
_PAST_TOOL = "Called earlier in this conversation; not available now."


def _history_tools(turns: list[Json]) -> Json | None:
    """The ``toolConfig`` of a conversation that holds tool calls and results but declares no
    tools (an OpenAI client's last turn without ``tools``, asking for a summary): Converse
    refuses such a request ("The toolConfig field must be defined when using toolUse and
    toolResult content blocks"), so the history's tools are declared, each with any input and
    said to be unavailable now."""
    names = {b["toolUse"]["name"]: None for turn in turns for b in turn["content"] if "toolUse" in b}
    if not names:
        return None
    schema = {"json": {"type": "object"}}
    return {
        "tools": [{"toolSpec": {"name": n, "description": _PAST_TOOL, "inputSchema": schema}} for n in names]
    }


def _tool_spec(tool: chat.Tool, i: int, model: str, structured: bool) -> Json:
    fn = tool.function
    spec: Json = {"name": fn.name}
    if fn.description:  # a NonEmptyString upstream
        spec["description"] = fn.description
    spec["inputSchema"] = {"json": fn.parameters or {"type": "object", "properties": {}}}
    if fn.strict:
        if not structured:  # a value refused (BedrockAdapter.values_refused): dropped when configured
            raise strict_tool_error("bedrock", i, model, _NEED_STRUCTURED)
        spec["strict"] = True
    return {"toolSpec": spec}


def thinking_left_out(request: ChatRequest) -> bool:
    """Whether :func:`converse_payload` leaves ``reasoning_effort`` out (an open tool loop)."""
    if thinking_budget(request) is None:
        return False
    try:
        _, turns = _turns(request.messages, reasoning=True)  # only Claude takes thinking
    except UniInferError:
        return False  # converse_payload raises it
    return _thinking_left_out(turns)
