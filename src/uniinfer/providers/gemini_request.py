"""Google Gemini ``generateContent`` wire format: request translation.

Pure functions used by :class:`uniinfer.providers.gemini.GeminiAdapter` (and
so by Vertex AI's Gemini models); see that module for the documentation links.

Messages: system/developer messages become ``systemInstruction`` (Gemini has
one, wherever they stood); assistant turns are role ``model`` with ``text`` and
``functionCall`` parts (the text first, or in the order an Anthropic Messages client sent
them: :attr:`~uniinfer.types.chat.AssistantMessage.content_blocks`, a text after a call, say);
tool results are ``functionResponse`` parts in a role ``user`` turn (the current
function-calling docs use ``user``; ``function`` is legacy), named after the call they answer
and shaped ``{"result": ...}``. Consecutive turns of one role are merged, as Gemini expects
parallel function responses in one turn. Previous reasoning (``reasoning_content``) is
not sent back: Gemini has no input form for it.

Thought signatures (https://ai.google.dev/gemini-api/docs/thought-signatures,
https://cloud.google.com/vertex-ai/generative-ai/docs/thought-signatures): Gemini 3
models answer a function call with an opaque ``thoughtSignature`` on its
``functionCall`` part and reject (400) the next request of the tool loop unless the
first ``functionCall`` part of each model step carries it back. OpenAI and Anthropic
clients echo only the tool call id, so the signature travels inside it
(:func:`call_id`, :func:`split_call_id`): ``call_<hex>__ts<mode><payload>``, the
payload URL-safe base64 so the id stays ``[A-Za-z0-9_-]`` (Anthropic's tool_use id
pattern). It is put back on the ``functionCall`` part the id names and sent nowhere
else. Gemini's own id for a call (``FunctionCall.id``: "This must be sent back in the
associated FunctionResponse"; Gemini 3 gives one) rides the same way, hex after ``__id``
(``call_<hex>__id<hex>__ts...``), and goes back on the call and on its
``functionResponse``; a call that came without one goes back without. Providers that cap
id length get the ``call_<hex>`` part only (:func:`~uniinfer.providers.translation.plain_call_id`).
Ids carry signatures only from Gemini 3 models (where
they are required), keeping other models' ids short. In a request to a Gemini 3
model, a model step whose first function call has no signature (history from another
provider, or an OpenAI client that made the call up) gets the dummy the docs give for
calls Gemini did not make, ``skip_thought_signature_validator``, on that part only.
Signatures on text parts are optional per the docs and are dropped.

Strict tools (OpenAI's ``"strict": true``: arguments that follow the schema, not
just usually): with ``tool_choice`` auto (or unset) they set
``functionCallingConfig.mode`` ``VALIDATED``, which constrains the calls the model
chooses to make to their declarations; ``required`` and a named tool are ``ANY``,
constrained already. Gemini's mode covers every declared function, so a strict
tool beside loose ones constrains them all, which loses nothing a caller asked for.

``reasoning_effort`` (https://ai.google.dev/gemini-api/docs/thinking): Gemini 3
models take ``thinkingLevel`` (:data:`_THINKING_LEVELS`, by model-name prefix: each
effort becomes the nearest level the model accepts), the others ``thinkingBudget``
(:data:`_THINKING_BUDGET`), where ``none`` and ``minimal`` turn thinking off (0) except on
models that cannot turn it off, which get their smallest budget (:data:`_MIN_BUDGET`), and
``xhigh``/``max`` get the largest 2.5 Flash takes. Thought summaries are asked for unless the
client asked for no thinking (``none``, or an Anthropic client's thinking turned off, which
reaches the models that think by default, :data:`_THINKS_BY_DEFAULT`).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from uniinfer.errors import InvalidRequestError
from uniinfer.providers.translation import (
    GEMINI_ID_MARK,
    SIGNED_ID_MARK,
    call_ordered,
    data_url,
    json_object,
    refuse_legacy_function_call,
    turn_in_order,
)
from uniinfer.types import ChatRequest, chat

__all__ = [
    "SKIP_SIGNATURE",
    "EmbedTaskType",
    "call_id",
    "chat_payload",
    "embed_item",
    "gemini_call_id",
    "model_path",
    "signs_calls",
    "split_call_id",
]

Json = dict[str, Any]

# https://ai.google.dev/gemini-api/docs/thinking#set-budget (0 turns thinking off where allowed)
#: ``xhigh`` and ``max``: 24576, the largest budget 2.5 Flash takes (Pro's is 32768).
_THINKING_BUDGET = {
    "none": 0,
    "minimal": 0,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
    "max": 24576,
}
#: (model-name prefix, smallest budget) for models that cannot turn thinking off (2.5 Pro: 128-32768).
_MIN_BUDGET: tuple[tuple[str, int], ...] = (("gemini-2.5-pro", 128),)
#: 2.5 Pro's largest budget (the others': 24576, :data:`_THINKING_BUDGET`'s ``max``).
_MAX_PRO_BUDGET = 32768
#: (model-name prefix, effort -> thinkingLevel), first match wins. Gemini 3 Pro takes
#: low/high, 3.1 Pro low/medium/high, the other Gemini 3 models (Flash) all four.
_THINKING_LEVELS: tuple[tuple[str, Mapping[str, str]], ...] = (
    ("gemini-3-pro", {"none": "low", "minimal": "low", "low": "low", "medium": "high", "high": "high"}),
    ("gemini-3.1-pro", {"none": "low", "minimal": "low", "low": "low", "medium": "medium", "high": "high"}),
    ("gemini-3", {"none": "minimal", "minimal": "minimal", "low": "low", "medium": "medium", "high": "high"}),
)
#: Model-name prefixes of the models that think unless told not to (and take ``thinkingConfig``).
_THINKS_BY_DEFAULT = ("gemini-2.5", "gemini-3")
#: Model-name prefixes whose function calls must carry their thought signature back.
_SIGNED_CALLS = ("gemini-3",)
#: The docs' dummy for function calls Gemini did not make (no signature to send back).
SKIP_SIGNATURE = "skip_thought_signature_validator"
_SIG_MARK = SIGNED_ID_MARK  # call_<hex>[__id<hex>]__ts<b|u><payload>
_ID_MARK = GEMINI_ID_MARK
_STD_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_B64 = re.compile(r"[A-Za-z0-9_-]+")
_TO_URL = str.maketrans("+/", "-_")
_FROM_URL = str.maketrans("-_", "+/")
_TOOL_MODE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_MIME_BY_EXT = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "pdf": "application/pdf"} | {
    ext: f"image/{ext}" for ext in ("png", "webp", "gif", "heic", "heif")
}


def chat_payload(request: ChatRequest, provider: str, model: str = "") -> Json:
    """The ``generateContent`` body of ``request`` to ``model`` (``provider`` names the adapter in errors)."""
    system, contents = _contents(request.messages, provider)
    if signs_calls(model):
        _sign_unsigned_steps(contents)
    payload: Json = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    if request.tools:
        payload["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
    if request.tool_choice is not None or _strict(request):
        payload["toolConfig"] = {"functionCallingConfig": _calling_config(request)}
    config = _generation_config(request, _base_name(model))
    if config:
        payload["generationConfig"] = config
    return payload


def _contents(messages: list[Any], provider: str) -> tuple[list[Json], list[Json]]:
    """(systemInstruction parts, contents) with consecutive same-role turns merged."""
    system: list[Json] = []
    contents: list[Json] = []
    names: dict[str, str] = {}  # tool_call id -> function name, latest assistant turn wins
    for i, msg in call_ordered(messages):  # results pair with calls by position here
        if isinstance(msg, chat.SystemMessage | chat.DeveloperMessage):
            system.extend({"text": t} for t in _texts(msg.content) if t)
            continue
        if isinstance(msg, chat.UserMessage):
            role, parts = "user", _user_parts(msg.content, i, provider)
        elif isinstance(msg, chat.AssistantMessage):
            role, parts = "model", _model_parts(msg, i, provider)
            names.update({c.id: c.function.name for c in msg.tool_calls or ()})
        elif isinstance(msg, chat.ToolMessage):
            role, parts = "user", [_function_response(msg, i, names, provider)]
        else:  # pragma: no cover - the Message union is closed
            raise InvalidRequestError(f"{provider}: unsupported message", param=f"messages[{i}]")
        # Gemini refuses an empty text part ("empty text parameter"), which an answer cut by
        # MAX_TOKENS or SAFETY leaves in the history clients send back: left out, and a turn
        # left with nothing with it (its neighbours merge, as turns of one role do)
        parts = [p for p in parts if p.get("text", True) != ""]
        if not parts and role == "user" and not isinstance(msg, chat.ToolMessage):
            # left out, the model's turn before would be answered in its place
            raise InvalidRequestError(
                f"{provider}: messages[{i}].content: a user message must not be empty",
                param=f"messages[{i}].content",
            )
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise InvalidRequestError(
            f"{provider}: at least one user or assistant message is required", param="messages"
        )
    return system, contents


def _texts(content: Any) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [str(getattr(p, "text", None) or getattr(p, "refusal", "")) for p in content]


def _user_parts(content: Any, i: int, provider: str) -> list[Json]:
    if isinstance(content, str):
        return [{"text": content}]
    return [_user_part(p, f"messages[{i}].content[{j}]", provider) for j, p in enumerate(content)]


def _user_part(part: Any, where: str, provider: str) -> Json:
    if isinstance(part, chat.TextPart):
        return {"text": part.text}
    if isinstance(part, chat.ImagePart):
        return _media(part.image_url.url, where, provider)
    if isinstance(part, chat.AudioPart):
        return {"inlineData": {"mimeType": f"audio/{part.input_audio.format}", "data": part.input_audio.data}}
    data = part.file.get("file_data")
    if data:
        return _media(data, where, provider)
    raise InvalidRequestError(
        f"{provider}: {where}: only inline 'file_data' (a data: URL) is supported for files", param=where
    )


def _media(url: str, where: str, provider: str) -> Json:
    """data: URLs become inlineData; http(s) URLs fileData (mime type guessed from the path)."""
    if url[:5].lower() == "data:":
        parsed = data_url(url)
        if parsed is None:
            raise InvalidRequestError(
                f"{provider}: {where}: data URLs must look like 'data:<mime>;base64,<data>'", param=where
            )
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    if url.startswith(("https://", "http://")):
        ext = urlsplit(url).path.rsplit(".", 1)[-1].lower()
        return {"fileData": {"mimeType": _MIME_BY_EXT.get(ext, "image/jpeg"), "fileUri": url}}
    raise InvalidRequestError(f"{provider}: {where}: expected a data: or http(s) URL", param=where)


def _model_parts(msg: chat.AssistantMessage, i: int, provider: str) -> list[Json]:
    """The turn's text and ``functionCall`` parts: in its client's order when the Messages ingress
    kept that and it still holds (:func:`~uniinfer.providers.translation.turn_in_order`; adjacent
    texts one part, empty ones left out), else the text, then the calls."""
    refuse_legacy_function_call(msg, i)
    ordered = turn_in_order(msg)
    items: list[str | chat.ToolCall]
    if ordered is None:
        text = "".join(_texts(msg.content))
        items = [*([text] if text or not msg.tool_calls else []), *(msg.tool_calls or ())]
    else:  # signed thinking is Claude's: Gemini takes no reasoning back
        items = [
            b.text if isinstance(b, chat.TextPart) else b
            for b in ordered
            if not isinstance(b, chat.SignedThinking)
        ]
    parts: list[Json] = []
    k = 0
    for item in items:
        if not isinstance(item, str):
            parts.append(_function_call(item, i, k, provider))
            k += 1
        elif parts and "text" in parts[-1]:
            parts[-1]["text"] += item
        elif item or not msg.tool_calls:
            parts.append({"text": item})
    return parts


def _function_call(call: chat.ToolCall, i: int, k: int, provider: str) -> Json:
    """The ``functionCall`` part of ``messages[i].tool_calls[k]``, with its thought signature."""
    where = f"messages[{i}].tool_calls[{k}].function.arguments"
    args = json_object(call.function.arguments) if call.function.arguments.strip() else {}
    if args is None:
        raise InvalidRequestError(
            f"{provider}: {where} must be a JSON object, got {call.function.arguments[:80]!r}",
            param=where,
        )
    part: Json = {"functionCall": {"name": call.function.name, "args": args}}
    gemini_id = gemini_call_id(call.id)
    if gemini_id:
        part["functionCall"]["id"] = gemini_id
    signature = split_call_id(call.id)[1]
    if signature:
        part["thoughtSignature"] = signature
    return part


def _sign_unsigned_steps(contents: list[Json]) -> None:
    """Give each model step whose first function call has no signature the documented dummy.

    Only the first ``functionCall`` part of a step is checked by Gemini 3 (parallel
    calls carry one signature, on the first part), so only that part gets it.
    """
    for content in contents:
        if content["role"] != "model":
            continue
        first = next((p for p in content["parts"] if "functionCall" in p), None)
        if first is not None and "thoughtSignature" not in first:
            first["thoughtSignature"] = SKIP_SIGNATURE


def _function_response(msg: chat.ToolMessage, i: int, names: dict[str, str], provider: str) -> Json:
    name = names.get(msg.tool_call_id)
    if name is None:
        raise InvalidRequestError(
            f"{provider}: messages[{i}] answers unknown tool_call_id '{msg.tool_call_id}'",
            param=f"messages[{i}].tool_call_id",
        )
    text = "\n".join(_texts(msg.content))  # an MCP result's text items, one a line
    parsed = json_object(text)
    result: Any = parsed if parsed is not None else text
    response: Json = {"name": name, "response": {"result": result}}
    gemini_id = gemini_call_id(msg.tool_call_id)
    if gemini_id:
        response["id"] = gemini_id
    return {"functionResponse": response}


def _declaration(tool: chat.Tool) -> Json:
    fn = tool.function
    decl: Json = {"name": fn.name}
    if fn.description:
        decl["description"] = fn.description
    if fn.parameters is not None:
        # parametersJsonSchema takes JSON Schema as OpenAI callers write it; ``parameters``
        # takes Google's OpenAPI subset and rejects e.g. additionalProperties.
        decl["parametersJsonSchema"] = fn.parameters
    return decl


def _calling_config(request: ChatRequest) -> Json:
    """``functionCallingConfig`` for the request's ``tool_choice`` and tools.

    ``ANY`` (required or named) constrains calls to the declared schema; a
    ``strict`` tool left to the model's choice needs ``VALIDATED`` ("will
    validate function calls with constrained decoding"), AUTO's constrained
    twin: a strict tool is a promise of schema-valid arguments, not a hint.
    """
    choice = request.tool_choice or "auto"
    if not isinstance(choice, str):
        return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}
    if choice == "auto" and _strict(request):
        return {"mode": "VALIDATED"}
    return {"mode": _TOOL_MODE[choice]}


def _strict(request: ChatRequest) -> bool:
    return any(t.function.strict for t in request.tools or ())


def _generation_config(r: ChatRequest, name: str) -> Json:
    pairs = (
        ("temperature", r.temperature),
        ("topP", r.top_p),
        ("topK", r.top_k),
        ("candidateCount", r.n),
        ("seed", r.seed),
        ("presencePenalty", r.presence_penalty),
        ("frequencyPenalty", r.frequency_penalty),
        ("maxOutputTokens", r.max_completion_tokens or r.max_tokens),
    )
    config: Json = {key: value for key, value in pairs if value is not None}
    if r.stop is not None:
        config["stopSequences"] = [r.stop] if isinstance(r.stop, str) else list(r.stop)
    if r.logprobs:
        config["responseLogprobs"] = True
        if r.top_logprobs is not None:
            config["logprobs"] = r.top_logprobs
    fmt = r.response_format
    if isinstance(fmt, chat.JSONObjectFormat | chat.JSONSchemaFormat):
        config["responseMimeType"] = "application/json"
    if isinstance(fmt, chat.JSONSchemaFormat) and fmt.json_schema.schema_ is not None:
        # responseJsonSchema accepts standard JSON Schema (what OpenAI callers send);
        # responseSchema is Google's OpenAPI subset and would need lossy rewriting.
        config["responseJsonSchema"] = fmt.json_schema.schema_
    if r.reasoning_effort is not None:
        intent = r.messages_intent
        config["thinkingConfig"] = _thinking(r.reasoning_effort, name, intent.budget if intent else None)
    elif (
        (intent := r.messages_intent) is not None
        and intent.thinking_off
        and name.startswith(_THINKS_BY_DEFAULT)
    ):
        config["thinkingConfig"] = _thinking("none", name)  # they think by default: off, or their least
    return config


def _thinking(effort: str, name: str, exact: int | None = None) -> Json:
    """``thinkingConfig`` for an OpenAI effort: a level (Gemini 3) or a token budget; ``exact``,
    an Anthropic client's own ``budget_tokens``, is sent as it is, within the model's range (it
    was rounded to the effort's tier: 2048 went as 1024)."""
    levels = next((table for prefix, table in _THINKING_LEVELS if name.startswith(prefix)), None)
    if levels is not None:
        level = levels.get(effort, "high")  # xhigh and max: no level above high
        thinking: Json = {"thinkingLevel": level}
        on = level != "minimal"
    else:
        least = next((least for prefix, least in _MIN_BUDGET if name.startswith(prefix)), 0)
        most = _MAX_PRO_BUDGET if name.startswith("gemini-2.5-pro") else _THINKING_BUDGET["max"]
        budget = _THINKING_BUDGET[effort] if exact is None else max(least, min(exact, most))
        if budget == 0:
            budget = least
        thinking = {"thinkingBudget": budget}
        on = budget > 0
    if on and effort != "none":  # thoughts are worth asking for when thinking was asked for
        thinking["includeThoughts"] = True
    return thinking


# --- thought signatures in tool call ids ---------------------------------------------


def _base_name(model: str) -> str:
    """``gemini-3-pro-preview`` of ``models/gemini-3-pro-preview`` (or a Vertex resource name);
    for one of Google's moving aliases, a name of the family it stands for (:data:`_ALIASES`)."""
    name = model.rsplit("/", 1)[-1].lower()
    return _ALIASES.get(name, name)


#: Google's ``-latest`` aliases, by the family they name now: Gemini 3 (``gemini-pro-latest`` is
#: 3.1 Pro since March 6, 2026, as Google wrote to its users, google-gemini/gemini-cli#20588;
#: the Flash aliases moved to Gemini 3 Flash models). Read as 2.x names, they were sent
#: ``thinkingBudget: 0`` (3 Pro: "Budget 0 is invalid") and tool calls without signatures (a 400).
_ALIASES = {
    "gemini-pro-latest": "gemini-3.1-pro-latest",
    "gemini-flash-latest": "gemini-3-flash-latest",
    "gemini-flash-lite-latest": "gemini-3-flash-lite-latest",
}


def signs_calls(model: str) -> bool:
    """Whether ``model``'s function calls need their thought signature sent back (Gemini 3)."""
    return _base_name(model).startswith(_SIGNED_CALLS)


def call_id(signature: str | None = None, gemini_id: str | None = None) -> str:
    """A new tool call id, carrying ``signature`` and Gemini's own id for the call when given.

    Unique per call (not a per-response counter): OpenAI clients key tool results by
    id across a whole conversation, so "call_0" in every turn would collide. Gemini
    sends signatures as standard base64 (a ``bytes`` field); those are re-spelled in
    the URL-safe alphabet without padding (mode ``b``, no longer than the signature).
    Anything else is base64url-encoded as UTF-8 (mode ``u``), so every string survives.
    Gemini's id (``FunctionCall.id``, which "must be sent back in the associated
    FunctionResponse") rides as ``__id<hex of its UTF-8>`` after the base: hex, so that no
    ``__ts`` can appear in it; the base stays unique even if Gemini numbers calls per answer.
    """
    base = f"call_{uuid.uuid4().hex[:24]}"
    if gemini_id:
        base += _ID_MARK + gemini_id.encode().hex()
    if not signature:
        return base
    if len(signature) % 4 == 0 and _STD_B64.fullmatch(signature):
        return f"{base}{_SIG_MARK}b{signature.rstrip('=').translate(_TO_URL)}"
    encoded = base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")
    return f"{base}{_SIG_MARK}u{encoded}"


def split_call_id(tool_call_id: str) -> tuple[str, str | None]:
    """(the id without its signature, the signature) of an id made by :func:`call_id`.

    Ids made elsewhere (other providers, clients) come back unchanged with ``None``.
    """
    base, mark, rest = tool_call_id.partition(_SIG_MARK)
    mode, payload = rest[:1], rest[1:]
    if not mark or not base or not _URL_B64.fullmatch(payload) or len(payload) % 4 == 1:
        return tool_call_id, None
    padded = payload + "=" * (-len(payload) % 4)
    if mode == "b":
        return base, padded.translate(_FROM_URL)
    if mode == "u":
        try:
            return base, base64.urlsafe_b64decode(padded).decode()
        except (ValueError, UnicodeDecodeError):
            return tool_call_id, None
    return tool_call_id, None


def gemini_call_id(tool_call_id: str) -> str | None:
    """Gemini's own id of a call whose tool call id :func:`call_id` made, else None."""
    base = split_call_id(tool_call_id)[0]
    _, mark, encoded = base.partition(_ID_MARK)
    if not mark or not encoded:
        return None
    try:
        return bytes.fromhex(encoded).decode()
    except (ValueError, UnicodeDecodeError):
        return None


#: Gemini's embedding task types (``taskType``; Vertex AI's ``task_type``): what the vectors are
#: for, which changes them (a query and the documents it looks for are embedded apart).
EmbedTaskType = Literal[
    "RETRIEVAL_QUERY",
    "RETRIEVAL_DOCUMENT",
    "SEMANTIC_SIMILARITY",
    "CLASSIFICATION",
    "CLUSTERING",
    "QUESTION_ANSWERING",
    "FACT_VERIFICATION",
    "CODE_RETRIEVAL_QUERY",
]


def embed_item(text: str, dimensions: int | None, task_type: str | None = None) -> Json:
    """One ``embedContent`` request item."""
    item: Json = {"content": {"parts": [{"text": text}]}}
    if dimensions is not None:
        item["outputDimensionality"] = dimensions
    if task_type is not None:
        item["taskType"] = task_type
    return item


def model_path(model: str) -> str:
    """``models/<name>`` (tuned models as given), quoted for the URL path."""
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return quote(name, safe="/")
