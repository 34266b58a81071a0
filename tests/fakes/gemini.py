"""A fake Google Gemini API (``/v1beta/models/{model}:{action}``) that validates like the real one.

Routes (https://ai.google.dev/api/generate-content, https://ai.google.dev/api/embeddings):
``:generateContent``, ``:streamGenerateContent`` (SSE with ``?alt=sse``, events
separated by ``\\r\\n\\r\\n`` as Google sends them, no end marker),
``:embedContent`` and ``:batchEmbedContents``.

Like the real API it authenticates with ``x-goog-api-key`` (or ``?key=``): no key
is a 403 PERMISSION_DENIED, a wrong key a 400 INVALID_ARGUMENT with reason
API_KEY_INVALID. Unknown JSON fields are a 400 ``Invalid JSON payload received.
Unknown name "x"``; errors have the ``google.rpc.Status`` shape.

Behaviour by model name, on top of :func:`tests.fakes.common.mode_of`:

- ``think``  a thought part first, and ``thoughtsTokenCount`` in usage
- ``cache``  ``cachedContentTokenCount`` (half the prompt) in usage
- ``tiny``   a 16-token context: longer prompts get the real "input token count" 400
- ``tool``   a ``functionCall`` to the first declared function, args ``{"location": "Paris"}``
  (also ``-tool`` anywhere in the name, e.g. ``gemini-3-flash-tool``), unless
  ``functionCallingConfig.mode`` is ``NONE``; any model calls with mode ``ANY``, and only
  the ``allowedFunctionNames`` when given; with ``parallel`` in
  the name, one ``functionCall`` part per declared function, with ``preamble`` a text part
  ``"Let me check."`` before them, with ``interleave`` that text first and a text part
  ``"And also:"`` between two calls
- ``malformed`` (anywhere in the name) a candidate with no content and
  ``finishReason: MALFORMED_FUNCTION_CALL``, as Gemini answers a call it failed to form
- ``gemini-3*`` a Gemini 3 model (https://ai.google.dev/gemini-api/docs/thought-signatures):
  its first ``functionCall`` part (else its last part) carries a ``thoughtSignature``
  (base64, derived from the call); a request whose current turn (the model steps after
  the last user message with text) has a step whose first ``functionCall`` part lacks
  its signature is the real 400 "Function call is missing a thought_signature", one
  with a signature it did not issue "Corrupted thought signature." (the documented
  dummies ``skip_thought_signature_validator`` / ``context_engineering_is_the_way_to_go``
  pass). Thinking takes ``thinkingLevel`` there (3 Pro: low/high; 3.1 Pro: low,
  medium, high; others all four), and ``thinkingLevel`` elsewhere is a 400, as is
  ``thinkingBudget: 0`` on models that cannot turn thinking off (2.5 Pro, 3 Pro).

Every ``thoughtSignature`` sent must be base64 (the field is ``bytes``), else the
real TYPE_BYTES 400.

Token counts are words (whitespace-split), so tests can predict them exactly.
``generationConfig.stopSequences`` cut the answer text before the first match
(``finishReason: STOP``, as the API reports it) and ``maxOutputTokens`` after that
many words (``MAX_TOKENS``).
Every request is recorded in ``app["requests"]`` as ``{path, query, headers, body}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import itertools
import uuid
import warnings
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.common import FakeProvider, abort, mode_of, stream_response
from tests.fakes.structured import instance

__all__ = ["API_KEY", "DUMMY_SIGNATURES", "INTERLUDE", "PREAMBLE", "gemini_app", "signature_of"]

API_KEY = "gm-test"
#: The text a ``preamble`` model says before its function calls.
PREAMBLE = "Let me check."
#: The text an ``interleave`` model says between two function calls.
INTERLUDE = "And also:"
Json = dict[str, Any]

_RPC = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_REQUEST_FIELDS = {
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
}
_CONFIG_FIELDS = {
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "mediaResolution",
}
_PART_FIELDS = {
    "text",
    "thought",
    "thoughtSignature",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
}
_EMBED_FIELDS = {"model", "content", "taskType", "title", "outputDimensionality"}
_CONTEXT_LIMIT = 16
#: Signatures Gemini 3 accepts for function calls it did not make (the thought-signatures FAQ).
DUMMY_SIGNATURES = ("skip_thought_signature_validator", "context_engineering_is_the_way_to_go")
_LEVELS = (
    ("gemini-3-pro", {"low", "high"}),
    ("gemini-3.1-pro", {"low", "medium", "high"}),
    ("gemini-3", {"minimal", "low", "medium", "high"}),
)
_ALWAYS_THINKS = ("gemini-2.5-pro", "gemini-3-pro", "gemini-3.1-pro")


class RpcError(Exception):
    """An error answered as ``google.rpc.Status`` JSON."""

    def __init__(self, status: int, message: str, details: list[Json] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details or []

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        error: Json = {
            "code": self.status,
            "message": self.message,
            "status": _RPC.get(self.status, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return web.json_response({"error": error}, status=self.status, headers=headers, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _unknown(name: str, where: str | None = None) -> RpcError:
    at = f" at '{where}'" if where else ""
    return RpcError(400, f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def _check_fields(obj: Any, allowed: set[str], where: str | None) -> None:
    if not isinstance(obj, dict):
        raise RpcError(400, f"Invalid value at '{where or 'request'}', expected an object.")
    for key in obj:
        if key not in allowed:
            raise _unknown(key, where)


# --- validation -------------------------------------------------------------------


def _validate_generate(body: Json) -> None:
    _check_fields(body, _REQUEST_FIELDS, None)
    contents = body.get("contents")
    if not contents:
        raise RpcError(400, "* GenerateContentRequest.contents: contents is not specified\n")
    for i, content in enumerate(contents):
        _validate_content(content, i)
        if _has(content, "functionResponse"):
            _validate_responses(contents[i - 1] if i else {}, content, i)
    if "systemInstruction" in body:
        _check_fields(body["systemInstruction"], {"parts", "role"}, "system_instruction")
        _validate_parts(body["systemInstruction"].get("parts"), "system_instruction")
    _validate_config(body.get("generationConfig", {}))
    _validate_tools(body.get("tools", []), body.get("toolConfig"))


def _validate_content(content: Any, i: int) -> None:
    _check_fields(content, {"role", "parts"}, f"contents[{i}]")
    if content.get("role", "user") not in ("user", "model"):
        raise RpcError(400, "Please use a valid role: user, model.")
    _validate_parts(content.get("parts"), f"contents[{i}]")


#: Inline media the fake takes: images as Gemini lists them (https://ai.google.dev/gemini-api/docs/image-understanding:
#: PNG, JPEG, WEBP, HEIC, HEIF), audio, video and PDF by their registered types.
_MEDIA_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif", "application/pdf", "text/plain"}
    | {f"audio/{a}" for a in ("wav", "mp3", "aiff", "aac", "ogg", "flac", "mpeg")}
    | {f"video/{v}" for v in ("mp4", "mpeg", "mov", "avi", "webm", "wmv", "3gpp")}
)


def _validate_parts(parts: Any, where: str) -> None:
    if not parts:
        raise RpcError(400, f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n")
    for j, part in enumerate(parts):
        _check_fields(part, _PART_FIELDS, f"{where}.parts[{j}]")
        if "inlineData" in part:
            data = part["inlineData"]
            _check_fields(data, {"mimeType", "data"}, f"{where}.parts[{j}].inline_data")
            try:
                base64.b64decode(data.get("data", ""), validate=True)
            except binascii.Error as exc:
                raise RpcError(
                    400, f"Invalid value at '{where}.parts[{j}].inline_data.data' (TYPE_BYTES)"
                ) from exc
        if part.get("text") == "" and "thoughtSignature" not in part:
            # as reported against generativelanguage v1beta (an empty text part, e.g. a cut answer sent back)
            raise RpcError(
                400,
                "Unable to submit request because it has an empty text parameter. "
                "Add a value to the parameter and try again.",
            )
        if "inlineData" in part and part["inlineData"].get("mimeType") not in _MEDIA_TYPES:
            raise RpcError(400, f"Unsupported MIME type: {part['inlineData'].get('mimeType')}")
        if "functionCall" in part and not isinstance(part["functionCall"].get("args", {}), dict):
            raise RpcError(400, f"Invalid value at '{where}.parts[{j}].function_call.args' (Struct)")
        if "thoughtSignature" in part and not _is_base64(part["thoughtSignature"]):
            raise RpcError(
                400,
                f"Invalid value at '{where}.parts[{j}].thought_signature' (TYPE_BYTES), "
                f'Base64 decoding failed for "{part["thoughtSignature"]}"',
            )


def _is_base64(value: Any) -> bool:
    """Google's JSON ``bytes`` parsing: standard or URL-safe alphabet, padding optional."""
    if not isinstance(value, str):
        return False
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        return False
    return True


def _has(content: Json, kind: str) -> bool:
    return any(kind in p for p in content.get("parts", []))


def _validate_responses(previous: Json, content: Json, i: int) -> None:
    calls = [p["functionCall"]["name"] for p in previous.get("parts", []) if "functionCall" in p]
    responses = [p["functionResponse"] for p in content["parts"] if "functionResponse" in p]
    if previous.get("role") != "model" or len(calls) != len(responses):
        raise RpcError(
            400,
            "Please ensure that the number of function response parts is equal to the number of "
            "function call parts of the function call turn.",
        )
    ids = {p["functionCall"]["id"] for p in previous.get("parts", []) if "id" in p.get("functionCall", {})}
    if ids and {r.get("id") for r in responses} != ids:
        # FunctionCall.id: "This must be sent back in the associated FunctionResponse"
        raise RpcError(400, f"* contents[{i}]: function responses must name the ids of the calls they answer")
    for r in responses:
        _check_fields(r, {"id", "name", "response"}, f"contents[{i}].function_response")
        if r.get("name") not in calls or not isinstance(r.get("response"), dict):
            raise RpcError(
                400, f"* contents[{i}]: function response '{r.get('name')}' answers no function call"
            )


def _validate_config(config: Any) -> None:
    _check_fields(config, _CONFIG_FIELDS, "generation_config")
    temperature = config.get("temperature", 1.0)
    if not 0 <= temperature <= 2:
        raise RpcError(400, "* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]\n")
    if not 1 <= config.get("candidateCount", 1) <= 8:
        raise RpcError(400, "* GenerateContentRequest.generation_config.candidate_count: must be in [1, 8]\n")
    if "responseJsonSchema" in config:
        if "responseSchema" in config:
            raise RpcError(400, "responseSchema and responseJsonSchema are mutually exclusive.")
        if config.get("responseMimeType") != "application/json":
            raise RpcError(400, "responseJsonSchema requires responseMimeType 'application/json'.")
    if "thinkingConfig" in config:
        allowed = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
        _check_fields(config["thinkingConfig"], allowed, "generation_config.thinking_config")


def _validate_tools(tools: Any, tool_config: Any) -> None:
    names: set[str] = set()
    for t, tool in enumerate(tools):
        _check_fields(tool, {"functionDeclarations", "googleSearch", "codeExecution"}, f"tools[{t}]")
        for d, decl in enumerate(tool.get("functionDeclarations", [])):
            where = f"tools[{t}].function_declarations[{d}]"
            _check_fields(
                decl, {"name", "description", "parameters", "parametersJsonSchema", "response"}, where
            )
            if "parameters" in decl and "parametersJsonSchema" in decl:
                raise RpcError(
                    400, f"* {where}: parameters and parameters_json_schema are mutually exclusive"
                )
            names.add(decl["name"])
    if tool_config is None:
        return
    _check_fields(tool_config, {"functionCallingConfig"}, "tool_config")
    fcc = tool_config["functionCallingConfig"]
    _check_fields(fcc, {"mode", "allowedFunctionNames"}, "tool_config.function_calling_config")
    if fcc.get("mode") not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        raise RpcError(400, "Invalid value at 'tool_config.function_calling_config.mode'")
    allowed = fcc.get("allowedFunctionNames")
    if allowed and (fcc.get("mode") not in ("ANY", "VALIDATED") or not set(allowed) <= names):
        raise RpcError(
            400, "allowed_function_names must name declared functions and needs mode ANY or VALIDATED."
        )


def _base_name(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _is_gemini_3(model: str) -> bool:
    return _base_name(model).startswith("gemini-3")


def _validate_for_model(model: str, body: Json) -> None:
    """What depends on the model: thinking settings, and Gemini 3's thought signatures."""
    thinking = body.get("generationConfig", {}).get("thinkingConfig", {})
    name = _base_name(model)
    level, budget = thinking.get("thinkingLevel"), thinking.get("thinkingBudget")
    if level is not None and budget is not None:
        raise RpcError(400, "You can only set one of thinking budget and thinking level.")
    if level is not None:
        levels = next((s for prefix, s in _LEVELS if name.startswith(prefix)), None)
        if levels is None:
            raise RpcError(400, "Thinking level is not supported for this model.")
        if level not in levels:
            raise RpcError(400, f"Thinking level {level.upper()} is not supported for this model.")
    if budget == 0 and name.startswith(_ALWAYS_THINKS):
        raise RpcError(400, "Budget 0 is invalid. This model only works in thinking mode.")
    if _is_gemini_3(model):
        _validate_signatures(body["contents"])


def _turn_start(contents: list[Json]) -> int:
    """Index of the current turn's user message: the last one with more than function responses."""
    for i in range(len(contents) - 1, -1, -1):
        content = contents[i]
        if content.get("role", "user") == "user" and any(
            "functionResponse" not in p for p in content["parts"]
        ):
            return i
    return 0


def _validate_signatures(contents: list[Json]) -> None:
    """Gemini 3: each model step of the current turn sends its first call's signature back."""
    for i in range(_turn_start(contents), len(contents)):
        content = contents[i]
        calls = [p for p in content["parts"] if "functionCall" in p]
        if content.get("role") != "model" or not calls:
            continue
        first = calls[0]
        signature = first.get("thoughtSignature")
        if signature is None:
            raise RpcError(
                400,
                "Function call is missing a thought_signature in functionCall parts. This is required "
                "for tools to work correctly, and missing thought_signature may lead to degraded model "
                f"performance. Additional data, function call `default_api:{first['functionCall'].get('name')}` "
                f", position {i + 1}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures "
                "for more details.",
            )
        if signature not in DUMMY_SIGNATURES and signature != signature_of(first["functionCall"]):
            raise RpcError(400, "Corrupted thought signature.")


def signature_of(call: Json) -> str:
    """The signature this fake gives a function call (base64 bytes, as the real one is)."""
    digest = hashlib.sha256(orjson.dumps(call, option=orjson.OPT_SORT_KEYS)).digest()
    return base64.b64encode(b"fake-thought/" + digest[:20]).decode()


def _text_signature(text: str) -> str:
    return base64.b64encode(b"fake-text/" + hashlib.sha256(text.encode()).digest()[:9]).decode()


# --- answers ----------------------------------------------------------------------


def _words(body: Json) -> list[str]:
    texts = [p.get("text", "") for c in body["contents"] for p in c["parts"]]
    texts += [p.get("text", "") for p in body.get("systemInstruction", {}).get("parts", [])]
    return " ".join(texts).split()


def _last_user_text(contents: list[Json]) -> str:
    for content in reversed(contents):
        texts = [p["text"] for p in content["parts"] if "text" in p]
        if content.get("role", "user") == "user" and texts:
            return " ".join(texts)
    return ""


def _usage(model: str, prompt: int, answer: int) -> Json:
    meta: Json = {"promptTokenCount": prompt, "candidatesTokenCount": answer}
    thoughts = 5 if "think" in model else 0
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    if "cache" in model:
        meta["cachedContentTokenCount"] = prompt // 2
    meta["totalTokenCount"] = prompt + answer + thoughts
    return meta


def _answer_parts(model: str, body: Json) -> list[Json]:
    """The parts of one candidate (thought first for ``think`` models; signed for Gemini 3)."""
    parts: list[Json] = [{"text": "Let me think.", "thought": True}] if "think" in model else []
    declared = [d for t in body.get("tools", []) for d in t.get("functionDeclarations", [])]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    allowed = calling.get("allowedFunctionNames")
    if allowed:
        declared = [d for d in declared if d["name"] in allowed]
    # toolConfig as the API reads it: NONE never calls, ANY always does, AUTO (and VALIDATED)
    # leaves it to the model (here: its name)
    calls_tools = calling.get("mode") == "ANY" or (mode_of(model).tool or "-tool" in model)
    if calling.get("mode") != "NONE" and calls_tools and declared:
        interleave = "interleave" in model
        if "preamble" in model or interleave:
            parts.append({"text": PREAMBLE})
        calls: list[Json] = []
        for declaration in declared if "parallel" in model else declared[:1]:
            call = {"name": declaration["name"], "args": {"location": "Paris"}}
            if _is_gemini_3(model):  # Gemini 3 numbers its calls; the response must name its call
                call["id"] = f"fc_{uuid.uuid4().hex[:12]}"
            calls.append({"functionCall": call})
        if _is_gemini_3(model):  # on the first call only
            calls[0]["thoughtSignature"] = signature_of(calls[0]["functionCall"])
        for k, call_part in enumerate(calls):
            parts += [{"text": INTERLUDE}, call_part] if interleave and k else [call_part]
        return parts
    text = _last_user_text(body["contents"])
    config = body.get("generationConfig", {})
    if config.get("responseMimeType") == "application/json":
        # JSON mode / structured output: the real API answers with a JSON document, of the schema
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        answer: Json = {"text": orjson.dumps(instance(schema, text) if schema else {"echo": text}).decode()}
    else:
        answer = {"text": f"echo: {text}"}
    if _is_gemini_3(model):  # without calls, the signature is on the last part
        answer["thoughtSignature"] = _text_signature(answer["text"])
    return [*parts, answer]


def _limit(parts: list[Json], config: Json) -> str:
    """Cut the answer text at a stop sequence (``STOP``, the sequence left out) or after
    ``maxOutputTokens`` words (``MAX_TOKENS``); the candidate's finishReason."""
    answer = next((p for p in reversed(parts) if "text" in p and not p.get("thought")), None)
    if answer is None:
        return "STOP"
    for stop in config.get("stopSequences") or ():
        if stop and stop in answer["text"]:
            answer["text"] = answer["text"][: answer["text"].index(stop)]
            return "STOP"
    limit = config.get("maxOutputTokens")
    words = answer["text"].split(" ")
    if limit is not None and len(words) > limit:
        answer["text"] = " ".join(words[:limit])
        return "MAX_TOKENS"
    return "STOP"


def _answer_words(parts: list[Json]) -> int:
    """Output tokens: the words of the answer text, and for each function call its name and
    one per argument (the real API counts calls in ``candidatesTokenCount`` too)."""
    words = sum(len(p.get("text", "").split()) for p in parts if not p.get("thought"))
    return words + sum(1 + len(p["functionCall"]["args"]) for p in parts if "functionCall" in p)


def _generate(model: str, body: Json) -> Json:
    _validate_for_model(model, body)
    prompt = len(_words(body))
    if "tiny" in model and prompt > _CONTEXT_LIMIT:
        raise RpcError(
            400,
            f"The input token count ({prompt}) exceeds the maximum number of tokens allowed ({_CONTEXT_LIMIT}).",
        )
    n = body.get("generationConfig", {}).get("candidateCount", 1)
    if "malformed" in model:  # the real API sends the candidate without content
        return {
            "candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", **_index(i)} for i in range(n)],
            "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt},
            "modelVersion": model,
            "responseId": "malformed",
        }
    parts = _answer_parts(model, body)
    config = body.get("generationConfig", {})
    finish = _limit(parts, config)
    candidates = [
        {"content": {"parts": parts, "role": "model"}, "finishReason": finish, **_index(i)} for i in range(n)
    ]
    if config.get("responseLogprobs"):
        for candidate in candidates:
            tokens = [t for p in parts if "text" in p and not p.get("thought") for t in _tokens(p["text"])]
            result = logprobs_result(tokens, config.get("logprobs", 0))
            candidate["logprobsResult"] = result
            if tokens:
                candidate["avgLogprobs"] = result["logProbabilitySum"] / len(tokens)
    return {
        "candidates": candidates,
        "usageMetadata": _usage(model, prompt, _answer_words(parts) * n),
        "modelVersion": model,
        "responseId": hashlib.sha1(_dumps(body).encode()).hexdigest()[:16],
    }


def _tokens(text: str) -> list[str]:
    """The answer's tokens as the fake generates them: its words, each with the space after it
    (also how a stream splits it)."""
    words = text.split(" ")
    return [w + (" " if k < len(words) - 1 else "") for k, w in enumerate(words)]


def logprobs_result(tokens: list[str], top: int) -> Json:
    """Gemini's ``logprobsResult`` for ``tokens``: made-up, stable values; the chosen token first
    among ``top`` candidates at each step."""

    def candidate(token: str, logprob: float) -> Json:
        return {"token": token, "tokenId": sum(token.encode()), "logProbability": logprob}

    chosen = [candidate(token, -0.05 * (k % 7 + 1)) for k, token in enumerate(tokens)]
    tops = [
        {"candidates": [c] + [candidate(f" alt{j}", c["logProbability"] - j) for j in range(1, top)]}
        for c in chosen
    ]
    return {
        "topCandidates": tops if top else [],
        "chosenCandidates": chosen,
        "logProbabilitySum": sum(c["logProbability"] for c in chosen),
    }


def _index(i: int) -> Json:
    """A candidate's ``index`` as proto3 JSON writes it: left out when 0."""
    return {"index": i} if i else {}


def _sse(payload: Json) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


def _stream_events(full: Json) -> list[bytes]:
    """Split a complete answer into Gemini-style stream events: a piece of every candidate in each
    (``index`` on each, as the API streams ``candidateCount`` > 1), the usage complete on the last."""
    if any("content" not in cand for cand in full["candidates"]):  # nothing to split: one event
        return [_sse(full)]
    base = {"modelVersion": full["modelVersion"], "responseId": full["responseId"]}
    partial = {"promptTokenCount": full["usageMetadata"]["promptTokenCount"]}
    steps = itertools.zip_longest(*(_candidate_steps(cand) for cand in full["candidates"]))
    events = [
        {**base, "candidates": [c for c in step if c is not None], "usageMetadata": partial} for step in steps
    ]
    events[-1]["usageMetadata"] = full["usageMetadata"]
    return [_sse(e) for e in events]


def _candidate_steps(cand: Json) -> list[Json]:
    """One candidate's stream: a part a step, its finishReason on the last."""
    pieces: list[Json] = []
    tokens: list[int] = []  # how many answer tokens each piece holds
    for part in cand["content"]["parts"]:
        if "text" in part and not part.get("thought"):
            words = _tokens(part["text"])
            pieces += [{"text": token} for token in words]
            tokens += [1] * len(words)
            if "thoughtSignature" in part:  # streamed, it comes last, on an empty text part
                pieces.append({"text": "", "thoughtSignature": part["thoughtSignature"]})
                tokens.append(0)
        else:
            pieces.append(part)
            tokens.append(0)
    steps = [{"content": {"parts": [p], "role": "model"}, **_index(cand.get("index", 0))} for p in pieces]
    steps[-1]["finishReason"] = cand["finishReason"]
    result = cand.get("logprobsResult")
    if result is not None:  # each step carries the logprobs of its own text
        tops, at = result["topCandidates"], 0
        for step, taken in zip(steps, tokens, strict=True):
            chosen = result["chosenCandidates"][at : at + taken]
            step["logprobsResult"] = {
                "topCandidates": tops[at : at + taken],
                "chosenCandidates": chosen,
                "logProbabilitySum": sum(c["logProbability"] for c in chosen),
            }
            at += taken
    return steps


def _vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 127.5 - 1.0, 6) for i in range(dims)]


def _embedding(body: Any, where: str | None) -> Json:
    _check_fields(body, _EMBED_FIELDS, where)
    content = body.get("content")
    _check_fields(content, {"parts", "role"}, f"{where}.content" if where else "content")
    text = " ".join(p.get("text", "") for p in content.get("parts", []))
    if not text:
        raise RpcError(400, "* EmbedContentRequest.content: contents must not be empty\n")
    return {"values": _vector(text, body.get("outputDimensionality", 8))}


def _batch(model: str, body: Json) -> Json:
    _check_fields(body, {"requests"}, None)
    if len(body["requests"]) > 100:
        raise RpcError(
            400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch\n"
        )
    out = []
    for i, item in enumerate(body["requests"]):
        if item.get("model") != f"models/{model}":
            raise RpcError(400, f"Model names in requests[{i}] must match the model in the URL.")
        out.append(_embedding(item, f"requests[{i}]"))
    return {"embeddings": out}


# --- app --------------------------------------------------------------------------


def _check_key(request: web.Request, api_key: str) -> None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        raise RpcError(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    if key != api_key:
        raise RpcError(
            400,
            "API key not valid. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            ],
        )


def _mode_error(status: int) -> web.Response:
    if status != 429:
        return RpcError(status, f"Fake upstream failure ({status}).").response()
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "requests"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    ]
    err = RpcError(
        429, "You exceeded your current quota, please check your plan and billing details.", details
    )
    return err.response(headers={"Retry-After": "7"})


def gemini_app(api_key: str = API_KEY) -> web.Application:
    """The fake Gemini API; its base URL for adapters is ``<server>/v1beta``."""
    app = web.Application()
    with warnings.catch_warnings():
        # Tests address the log by a plain string key, as with the other fakes.
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["tail"].partition(":")
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = None
        app["requests"].append(
            {
                "path": request.path,
                "query": dict(request.query),
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
            }
        )
        try:
            _check_key(request, api_key)
            if body is None:
                raise RpcError(400, "Invalid JSON payload received. Unexpected token.")
            return await _dispatch(request, model, action, body)
        except RpcError as err:
            return err.response()

    app.router.add_post("/v1beta/models/{tail}", handle)
    return app


async def _dispatch(request: web.Request, model: str, action: str, body: Json) -> web.StreamResponse:
    mode = mode_of(model)
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        return abort(request)
    if mode.status is not None:
        return _mode_error(mode.status)
    if action == "embedContent":
        return web.json_response({"embedding": _embedding(body, None)}, dumps=_dumps)
    if action == "batchEmbedContents":
        return web.json_response(_batch(model, body), dumps=_dumps)
    if action not in ("generateContent", "streamGenerateContent"):
        raise RpcError(
            404, f"models/{model} is not found for API version v1beta, or {action} is not supported."
        )
    _validate_generate(body)
    full = _generate(model, body)
    if action == "generateContent":
        return web.json_response(full, dumps=_dumps)
    if request.query.get("alt") != "sse":  # without alt=sse Google streams a JSON array
        return web.json_response(list(_stream_events_json(full)), dumps=_dumps)
    return await stream_response(
        request, _stream_events(full), cut=mode.cut, stall=mode.stall, whole=mode.whole
    )


def _stream_events_json(full: Json) -> list[Json]:
    return [orjson.loads(e[len(b"data: ") :]) for e in _stream_events(full)]


def fake_provider() -> FakeProvider:
    """How the contract suite (tests/contract/) runs the ``gemini`` type against this fake."""
    return FakeProvider(
        "gemini",
        gemini_app,
        base_path="/v1beta",
        api_key=API_KEY,
        chat_model="gemini-fake",
        embed_model="gemini-embedding-fake",
    )
