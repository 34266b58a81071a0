"""Google Gemini ``generateContent`` wire format: request translation.

Pure functions used by :class:`uniinfer.providers.gemini.GeminiAdapter` (and
so by Vertex AI's Gemini models); see that module for the documentation links.

Messages: system/developer messages become ``systemInstruction`` (Gemini has
one, wherever they stood); assistant turns are role ``model`` with ``text`` and
``functionCall`` parts; tool results are ``functionResponse`` parts in a role
``user`` turn (the current function-calling docs use ``user``; ``function`` is
legacy), named after the call they answer and shaped ``{"result": ...}``.
Consecutive turns of one role are merged, as Gemini expects parallel
function responses in one turn. Previous reasoning (``reasoning_content``) is
not sent back: Gemini has no input form for it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from uniinfer.errors import InvalidRequestError
from uniinfer.providers.base import json_object
from uniinfer.types import ChatRequest, chat

__all__ = ["chat_payload", "embed_item", "model_path"]

Json = dict[str, Any]

# https://ai.google.dev/gemini-api/docs/thinking#set-budget (0 turns thinking off where allowed)
_THINKING_BUDGET = {"minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
_TOOL_MODE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_MIME_BY_EXT = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "pdf": "application/pdf"} | {
    ext: f"image/{ext}" for ext in ("png", "webp", "gif", "heic", "heif")
}


def chat_payload(request: ChatRequest, provider: str) -> Json:
    """The ``generateContent`` body for ``request`` (``provider`` names the adapter in errors)."""
    system, contents = _contents(request.messages, provider)
    payload: Json = {"contents": contents}
    if system:
        payload["systemInstruction"] = {"parts": system}
    if request.tools:
        payload["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
    if request.tool_choice is not None:
        payload["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
    config = _generation_config(request)
    if config:
        payload["generationConfig"] = config
    return payload


def _contents(messages: list[Any], provider: str) -> tuple[list[Json], list[Json]]:
    """(systemInstruction parts, contents) with consecutive same-role turns merged."""
    system: list[Json] = []
    contents: list[Json] = []
    names: dict[str, str] = {}  # tool_call id -> function name, latest assistant turn wins
    for i, msg in enumerate(messages):
        if isinstance(msg, chat.SystemMessage | chat.DeveloperMessage):
            system.extend({"text": t} for t in _texts(msg.content))
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
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, *params = header.split(";")
        if not sep or not mime or "base64" not in params:
            raise InvalidRequestError(
                f"{provider}: {where}: data URLs must look like 'data:<mime>;base64,<data>'", param=where
            )
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("https://", "http://")):
        ext = urlsplit(url).path.rsplit(".", 1)[-1].lower()
        return {"fileData": {"mimeType": _MIME_BY_EXT.get(ext, "image/jpeg"), "fileUri": url}}
    raise InvalidRequestError(f"{provider}: {where}: expected a data: or http(s) URL", param=where)


def _model_parts(msg: chat.AssistantMessage, i: int, provider: str) -> list[Json]:
    text = "".join(_texts(msg.content))
    parts: list[Json] = [{"text": text}] if text or not msg.tool_calls else []
    for k, call in enumerate(msg.tool_calls or ()):
        where = f"messages[{i}].tool_calls[{k}].function.arguments"
        args = json_object(call.function.arguments) if call.function.arguments.strip() else {}
        if args is None:
            raise InvalidRequestError(
                f"{provider}: {where} must be a JSON object, got {call.function.arguments[:80]!r}",
                param=where,
            )
        parts.append({"functionCall": {"name": call.function.name, "args": args}})
    return parts


def _function_response(msg: chat.ToolMessage, i: int, names: dict[str, str], provider: str) -> Json:
    name = names.get(msg.tool_call_id)
    if name is None:
        raise InvalidRequestError(
            f"{provider}: messages[{i}] answers unknown tool_call_id '{msg.tool_call_id}'",
            param=f"messages[{i}].tool_call_id",
        )
    text = "".join(_texts(msg.content))
    parsed = json_object(text)
    result: Any = parsed if parsed is not None else text
    return {"functionResponse": {"name": name, "response": {"result": result}}}


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


def _calling_config(choice: chat.ToolChoice) -> Json:
    if isinstance(choice, str):
        return {"mode": _TOOL_MODE[choice]}
    return {"mode": "ANY", "allowedFunctionNames": [choice.function.name]}


def _generation_config(r: ChatRequest) -> Json:
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
        budget = _THINKING_BUDGET[r.reasoning_effort]
        thinking: Json = {"thinkingBudget": budget}
        if budget > 0:  # thoughts are only worth asking for when thinking is on
            thinking["includeThoughts"] = True
        config["thinkingConfig"] = thinking
    return config


def embed_item(text: str, dimensions: int | None) -> Json:
    """One ``embedContent`` request item."""
    item: Json = {"content": {"parts": [{"text": text}]}}
    if dimensions is not None:
        item["outputDimensionality"] = dimensions
    return item


def model_path(model: str) -> str:
    """``models/<name>`` (tuned models as given), quoted for the URL path."""
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return quote(name, safe="/")
