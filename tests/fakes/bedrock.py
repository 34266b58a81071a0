"""A faithful fake of Bedrock Runtime: ``POST /model/{modelId}/converse``,
``/converse-stream`` and ``/invoke`` (Titan and Cohere embeddings).

Authentication is checked for real. A ``Bearer`` token must be
:data:`API_KEY`; otherwise the SigV4 ``Authorization`` header is parsed and the
signature recomputed with botocore from the known test keys
(:data:`ACCESS_KEY` / :data:`SECRET_KEY`) over the request *as received*: the
raw path on the wire, the signed headers' values, the body. As AWS does, a
mismatch is a 403 ``InvalidSignatureException`` whose message echoes the
canonical request and string to sign; an unknown key id is
``UnrecognizedClientException``, a wrong scope or a stale ``X-Amz-Date``
``InvalidSignatureException``, no header ``MissingAuthenticationTokenException``
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html).

Errors have Bedrock's shape: ``{"message": ...}`` and ``x-amzn-ErrorType:
<Type>:http://internal.amazon.com/coral/com.amazon.bedrock/``. Bodies are
validated like the real API, with its messages where they are known (a
conversation starting with a user turn, alternating roles, blank text,
``toolResult`` ids answering the previous ``toolUse`` ids, ``toolConfig``
required with tool blocks, constraint errors such as ``Value '1.5' at
'inferenceConfig.temperature' failed to satisfy constraint``, ``Input is too
long for requested model.``, Anthropic's thinking rules). Deliberately
stricter than Bedrock: unknown fields anywhere are a 400 in the style of its
model-body validation (``Malformed input request: #: extraneous key [x] is not
permitted``), so a misspelt field fails a test instead of being ignored.

Answers: ``"echo: <last user text>"``; a ``toolUse`` of the first tool with
input ``{"location": "Paris"}`` when the model id contains ``tool`` (and the
last turn is not answering tool results) or ``toolChoice`` forces one (with ``parallel`` in
the model id: one for every declared tool; with ``interleave``: a text block
:data:`PREAMBLE` before the first and :data:`INTERLUDE` before each other, as Claude
interleaves text and tool calls, JSON and streamed);
``reasoningContent`` first when thinking is enabled or the model id contains
``think``, its ``signature`` the Anthropic fake's :func:`~tests.fakes.anthropic.sign` of its text
(Claude's signatures are the same on every platform), and with ``redact`` in the model id a
``redactedContent`` block after it (:data:`~tests.fakes.anthropic.REDACTED_DATA`). Reasoning sent
back in an assistant turn must be the fake's own, unmodified: a
``reasoningText``'s signature must sign its text, a ``redactedContent`` be what the fake sent
(Anthropic's "Invalid `signature` in `thinking` block"). ``stopSequences`` and ``maxTokens`` (a
token is a word) cut the answer with the real stop reasons.

Structured outputs (https://docs.aws.amazon.com/bedrock/latest/userguide/structured-output.html;
shapes from botocore's ``bedrock-runtime`` service model): ``outputConfig`` takes ``textFormat``
(and ``effort``); ``textFormat`` needs ``type`` ``json_schema`` and a ``structure`` union holding
exactly ``jsonSchema``, whose ``schema`` (required) is a *string* of JSON, with optional ``name``
and ``description``; a ``toolSpec`` may carry ``strict`` (a boolean). With either (a tool:
``strict: true``) a model outside :data:`STRUCTURED_MODELS` is refused, and so is a schema using
what the guide lists as not supported (numeric and string-length constraints, ``minItems`` other
than 0 or 1, ``additionalProperties`` other than ``false``, recursive or external ``$ref``). AWS
does not quote these messages; they follow its ``ValidationException`` style. The answer is then
a ``text`` block holding a JSON instance of the schema (every string the last user text), and a
strict tool's ``toolUse`` input an instance of its ``inputSchema`` (strings ``"Paris"``). A model id containing ``cached`` reports
``cacheReadInputTokens: 100`` and ``cacheWriteInputTokens: 20``.

Prompt caching (https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_CachePointBlock.html): a
``{"cachePoint": {"type": "default"}}`` block (optional ``ttl`` ``5m`` or ``1h``) is taken in
``system``, a message's ``content`` and ``toolConfig.tools`` (never inside a ``toolResult``), for
the models of :data:`CACHING_MODELS` (Nova: not in tools) and one-hour ones for
:data:`HOUR_CACHE_MODELS`; anywhere else Bedrock's "You invoked an unsupported model, or your
request did not allow prompt caching" 400. Also refused as Bedrock refuses them: a checkpoint right
after a reasoning block, a one-hour one after a five-minute one (in the order tools, system,
messages) and more than four (both Claude's own messages, which Bedrock passes on). The
fake keeps a cache per app: each checkpoint's prefix (tools, system, messages, in that order, for
that model) is written the first time and read after, at any length (Bedrock caches only from a
model's minimum, 1,024 tokens for most Claude models): the usage reports
``cacheWriteInputTokens`` (the words up to the last checkpoint not read), ``cacheReadInputTokens``
(the longest cached prefix) and ``inputTokens`` the rest of the prompt, tool definitions included.

Documents (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_DocumentBlock.html,
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Message.html): a ``document``
block has a ``name`` (1 to 200 characters: letters, digits, single whitespace, hyphens,
parentheses, square brackets), a ``format`` of the enum (stricter than Bedrock: required with a
``bytes`` source) and a ``source`` of exactly one kind, ``bytes`` valid base64 of at most 4.5 MB;
only a user message may hold one, and then a text block too; a request holds at most five, no
two of one name ("Messages can't contain duplicate document names...").

Streams are real ``application/vnd.amazon.eventstream`` frames with correct
CRCs, written in awkward splits; event payloads carry Bedrock's ``p`` padding
field. Failure modes come from :func:`tests.fakes.common.mode_of` (no
``Retry-After`` on a 429: Bedrock sends none); a model id starting with
``midstream-`` sends some text, then a ``throttlingException`` frame. Every
request is appended to ``app["requests"]`` as ``{model, action, auth, path,
headers, body}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import hashlib
import hmac
import math
import re
import struct
import uuid
import warnings
import zlib
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials

from tests.fakes.anthropic import ADAPTIVE_TOO, BEFORE_OPUS_4_7, REDACTED_DATA, sign
from tests.fakes.common import FakeProvider, Mode, abort, mode_of, stream_response
from tests.fakes.structured import instance, schema_problem

__all__ = [
    "INTERLUDE",
    "PREAMBLE",
    "bedrock_app",
    "event_frame",
    "exception_frame",
    "fake_provider",
    "frame",
]

Json = dict[str, Any]

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
API_KEY = "bedrock-api-key-test"
REGION = "us-east-1"
CHAT_MODEL = "anthropic.claude-3-7-sonnet-20250219-v1:0"
#: The contract suite embeds two inputs per request, which Titan cannot (one ``inputText`` per call).
EMBED_MODEL = "cohere.embed-english-v3"
TITAN_MODEL = "amazon.titan-embed-text-v2:0"
EVENT_STREAM = "application/vnd.amazon.eventstream"
#: The text an ``interleave`` model says before its first tool call.
PREAMBLE = "Let me check."
#: The text an ``interleave`` model says before each further tool call.
INTERLUDE = "And also:"

_CORAL = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_FAILURES = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    424: ("ModelErrorException", "The model returned the following errors: upstream failure"),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The system encountered an unexpected error during processing."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}
_TOP_LEVEL = {"messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"} | {
    "additionalModelResponseFieldPaths",
    "guardrailConfig",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
    "outputConfig",
}
#: Model-id prefixes (after a cross-Region profile prefix) with structured outputs, first match wins.
STRUCTURED_MODELS: tuple[tuple[str, bool], ...] = (
    ("anthropic.claude-instant", False),
    ("anthropic.claude-v2", False),
    ("anthropic.claude-3", False),
    ("anthropic.claude-sonnet-4-2025", False),
    ("anthropic.claude-opus-4-2025", False),
    ("anthropic.claude-opus-4-1", False),
    ("anthropic.claude", True),
    ("openai.gpt-oss-", True),
)
#: JSON-schema keywords structured outputs cannot compile ("not supported" in the guide).
_SCHEMA_REFUSED = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}) | {
    "minLength",
    "maxLength",
}
_BLOCKS = ("text", "image", "document", "video", "toolUse", "toolResult", "guardContent", "cachePoint")
_BLOCK_KINDS = {*_BLOCKS, "reasoningContent"}
#: block kinds that only one role may send
_ROLE_OF = {
    "toolUse": "assistant",
    "reasoningContent": "assistant",
    "toolResult": "user",
    "image": "user",
    "document": "user",
}
#: Model-id prefixes (after a profile prefix) taking cache checkpoints, and where; first match wins.
_ALL_PLACES = frozenset({"system", "messages", "tools"})
_NO_TOOLS = frozenset({"system", "messages"})
CACHING_MODELS: tuple[tuple[str, frozenset[str]], ...] = (
    ("anthropic.claude-3-5-haiku", _ALL_PLACES),
    ("anthropic.claude-3-7-sonnet", _ALL_PLACES),
    ("anthropic.claude-3", frozenset()),
    ("anthropic.claude-instant", frozenset()),
    ("anthropic.claude-v2", frozenset()),
    ("anthropic.claude", _ALL_PLACES),
    ("amazon.nova-micro", _NO_TOOLS),
    ("amazon.nova-lite", _NO_TOOLS),
    ("amazon.nova-pro", _NO_TOOLS),
    ("amazon.nova-premier", _NO_TOOLS),
)
#: Model-id prefixes taking one-hour checkpoints (``ttl: "1h"``); first match wins.
HOUR_CACHE_MODELS: tuple[tuple[str, bool], ...] = (
    ("anthropic.claude-3", False),
    ("anthropic.claude-sonnet-4-2025", False),
    ("anthropic.claude-opus-4-2025", False),
    ("anthropic.claude-opus-4-1", False),
    ("anthropic.claude", True),
)
_NO_CACHING = (
    "You invoked an unsupported model, or your request did not allow prompt caching. "
    "See the documentation for more information."
)
_MAX_CACHE_POINTS = 4
#: DocumentBlock: formats, the name's characters (single whitespace between them), its length.
_DOCUMENT_FORMATS = ("pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md")
_DOCUMENT_NAME = re.compile(r"^(?:[A-Za-z0-9()\[\]-]|\s(?!\s))+$")
_DOCUMENT_NAME_MAX = 200
_MAX_DOCUMENTS = 5
_DOCUMENT_SOURCES = ("bytes", "s3Location", "text", "content")
_MAX_DOCUMENT_BYTES = 4_718_592  # 4.5 MB
#: ToolUseBlock / ToolResultBlock ``toolUseId`` in the API reference: 1 to 64 of these.
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?Signature=(?P<signature>[0-9a-f]{64})"
)
_MAX_INPUT_CHARS = 200_000
#: Bodies carry documents (five of 4.5 MB, in base64): aiohttp's 1 MB default would refuse them.
_MAX_BODY = 40 * 1024 * 1024
_THINKING_DOCS = (
    "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


class AwsError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def invalid(message: str) -> AwsError:
    return AwsError(400, "ValidationException", message)


def constraint(value: Any, path: str, rule: str) -> AwsError:
    return invalid(
        f"1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: {rule}"
    )


def extraneous(key: str) -> AwsError:
    return invalid(
        f"Malformed input request: #: extraneous key [{key}] is not permitted, please reformat your input and try again."
    )


def error(status: int, kind: str, message: str) -> web.Response:
    headers = {"x-amzn-ErrorType": kind + _CORAL, "x-amzn-RequestId": str(uuid.uuid4())}
    return web.json_response({"message": message}, status=status, headers=headers)


def bedrock_app(*, region: str = REGION) -> web.Application:
    """The fake, accepting SigV4 requests scoped to ``region`` (and the test API key)."""
    app = web.Application(client_max_size=_MAX_BODY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []
        app["prompt_cache"] = set()

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await _handle(request, app, region)
        except AwsError as exc:
            return error(exc.status, exc.kind, exc.message)

    app.router.add_post("/{tail:.*}", handle)
    return app


def fake_provider() -> FakeProvider:
    return FakeProvider(
        type="bedrock",
        app=bedrock_app,
        api_key=None,
        options=lambda url: {"region": REGION, "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
        chat_model=CHAT_MODEL,
        embed_model=EMBED_MODEL,
    )


async def _handle(request: web.Request, app: web.Application, region: str) -> web.StreamResponse:
    raw = await request.read()
    model, action = _route(request.raw_path)
    auth = authenticate(request, raw, region)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AwsError(400, "SerializationException", "Unable to parse request body as JSON") from exc
    record = {"model": model, "action": action, "auth": auth, "path": request.raw_path, "body": body}
    app["requests"].append({**record, "headers": dict(request.headers)})
    mode = mode_of(model)
    failure = await _failure(request, mode)
    if failure is not None:
        return failure
    if action == "invoke":
        return web.json_response(embed(model, body))
    if "embed" in model:
        raise invalid(
            "This action doesn't support the model that you provided. Try again with a supported text or chat model."
        )
    validate(body, model)
    message = answer(body, model, mode, app["prompt_cache"])
    if action == "converse":
        return web.json_response(message, headers={"x-amzn-RequestId": str(uuid.uuid4())})
    events = stream_events(message)
    if model.startswith("midstream-"):
        events = [
            *events[:2],
            exception_frame("throttlingException", "Too many tokens, please wait before trying again."),
        ]
    return await stream_response(request, events, content_type=EVENT_STREAM, cut=mode.cut)


def _route(raw_path: str) -> tuple[str, str]:
    parts = raw_path.split("/")
    if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "converse-stream", "invoke"):
        raise AwsError(404, "UnknownOperationException", "")
    return unquote(parts[2]), parts[3]


async def _failure(request: web.Request, mode: Mode) -> web.StreamResponse | None:
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        return abort(request)
    if mode.status is not None:
        kind, message = _FAILURES.get(mode.status, ("InternalServerException", f"error {mode.status}"))
        return error(mode.status, kind, message)
    return None


# --- authentication ----------------------------------------------------------------------


def authenticate(request: web.Request, body: bytes, region: str) -> str:
    """``"bearer"`` or ``"sigv4"`` when the request is authentic; AwsError (403) otherwise."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        if not hmac.compare_digest(header[7:], API_KEY):
            raise AwsError(
                403, "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        return "bearer"
    if not header:
        raise AwsError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH.fullmatch(header)
    if match is None:
        raise AwsError(
            403,
            "IncompleteSignatureException",
            f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization={header}",
        )
    if match["key"] != ACCESS_KEY:
        raise AwsError(
            403, "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if match["service"] != "bedrock":
        raise AwsError(
            403, "InvalidSignatureException", "Credential should be scoped to correct service: 'bedrock'."
        )
    if match["region"] != region:
        raise AwsError(
            403,
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{match['region']}'.",
        )
    amz_date = _check_date(request.headers.get("X-Amz-Date", ""), match["date"])
    signed = match["signed"].split(";")
    if "host" not in signed:
        raise AwsError(
            403, "InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization."
        )
    headers = {name: ",".join(request.headers.getall(name, [])) for name in signed}
    url = f"http://{request.headers.get('Host', '')}{request.raw_path}"
    canonical, to_sign, expected = signature(url, body, headers, amz_date, region)
    if not hmac.compare_digest(expected, match["signature"]):
        raise AwsError(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your "
            "AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"
            f"The Canonical String for this request should have been\n'{canonical}'\n\n"
            f"The String-to-Sign should have been\n'{to_sign}'\n",
        )
    return "sigv4"


def _check_date(amz_date: str, scope_date: str) -> str:
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError as exc:
        raise AwsError(
            403,
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ) from exc
    if not amz_date.startswith(scope_date):
        raise AwsError(
            403,
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{scope_date}' != '{amz_date[:8]}'",
        )
    if abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) > 300:
        raise AwsError(
            403,
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than the allowed window.",
        )
    return amz_date


def signature(
    url: str, body: bytes, headers: dict[str, str], amz_date: str, region: str
) -> tuple[str, str, str]:
    """(canonical request, string to sign, signature) for the test keys, as AWS computes them."""
    aws = AWSRequest(method="POST", url=url, data=body, headers=headers)
    aws.context["timestamp"] = amz_date
    signer = SigV4Auth(ReadOnlyCredentials(ACCESS_KEY, SECRET_KEY, None), "bedrock", region)
    canonical = signer.canonical_request(aws)
    to_sign = signer.string_to_sign(aws, canonical)
    return canonical, to_sign, signer.signature(to_sign, aws)


# --- validation ---------------------------------------------------------------------------


def validate(body: Any, model: str) -> None:
    """Check a Converse body like the real API (AwsError 400 on the first problem)."""
    if not isinstance(body, dict):
        raise invalid("Malformed input request, please reformat your input and try again.")
    for name in body:
        if name not in _TOP_LEVEL:
            raise extraneous(name)
    if "messages" not in body:
        raise constraint("null", "messages", "Member must not be null")
    _check_system(body.get("system"))
    _check_inference(body.get("inferenceConfig") or {})
    names = _check_tools(body.get("toolConfig"), model)
    _check_output_config(body.get("outputConfig"), model)
    _check_messages(body["messages"], names is not None)
    _check_documents(body["messages"])
    _check_cache_points(body, model)
    _check_additional(body, model)
    text = orjson.dumps(_without_bytes([body.get("system"), body["messages"]]))
    if len(text) > _MAX_INPUT_CHARS:
        raise invalid("Input is too long for requested model.")


def _without_bytes(value: Any) -> Any:
    """``value`` without image and document bytes (not what makes an input too long)."""
    if isinstance(value, dict):
        return {k: "" if k == "bytes" else _without_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_bytes(v) for v in value]
    return value


def _check_system(system: Any) -> None:
    for i, block in enumerate(system or []):
        if not isinstance(block, dict) or not block.keys() <= {"text", "guardContent", "cachePoint"}:
            raise invalid(
                f"The system field at system.{i} must contain exactly one of: text, guardContent, cachePoint"
            )
        if "text" in block and not str(block["text"]).strip():
            raise constraint(
                "", f"system.{i}.member.text", "Member must have length greater than or equal to 1"
            )


def _check_inference(config: Any) -> None:
    for name in config:
        if name not in ("maxTokens", "temperature", "topP", "stopSequences"):
            raise extraneous(f"inferenceConfig.{name}")
    max_tokens = config.get("maxTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise constraint(
            max_tokens, "inferenceConfig.maxTokens", "Member must have value greater than or equal to 1"
        )
    for name in ("temperature", "topP"):
        value = config.get(name)
        if value is not None and not 0 <= value <= 1:
            rule = "less than or equal to 1" if value > 1 else "greater than or equal to 0"
            raise constraint(value, f"inferenceConfig.{name}", f"Member must have value {rule}")
    stops = config.get("stopSequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) and s for s in stops)):
        raise constraint(
            stops,
            "inferenceConfig.stopSequences",
            "Member must satisfy constraint: [Member must have length greater than or equal to 1]",
        )


def _model_name(model: str) -> str:
    """The model id of a model id, cross-Region profile id or ARN."""
    name = unquote(model).lower().rpartition("/")[2]
    profile, dot, rest = name.partition(".")
    return rest if dot and profile in ("us", "us-gov", "eu", "apac", "jp", "au", "ca", "global") else name


def _structured(model: str) -> bool:
    name = _model_name(model)
    return next((has for prefix, has in STRUCTURED_MODELS if name.startswith(prefix)), False)


def _cache_places(model: str) -> frozenset[str]:
    name = _model_name(model)
    return next((places for prefix, places in CACHING_MODELS if name.startswith(prefix)), frozenset())


def _hour_cache(model: str) -> bool:
    name = _model_name(model)
    return next((has for prefix, has in HOUR_CACHE_MODELS if name.startswith(prefix)), False)


def _unsupported_model(model: str, field: str) -> AwsError:
    return invalid(
        f"The model {model} does not support structured outputs ({field}). Remove it and try again."
    )


def _check_output_config(config: Any, model: str) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise invalid("The outputConfig field must be an object")
    for name in config:
        if name not in ("textFormat", "effort"):
            raise extraneous(f"outputConfig.{name}")
    fmt = config.get("textFormat")
    if fmt is None:
        return
    if not isinstance(fmt, dict):
        raise invalid("The outputConfig.textFormat field must be an object")
    for name in fmt:
        if name not in ("type", "structure"):
            raise extraneous(f"outputConfig.textFormat.{name}")
    for name in ("type", "structure"):
        if name not in fmt:
            raise constraint("null", f"outputConfig.textFormat.{name}", "Member must not be null")
    if fmt["type"] != "json_schema":
        raise constraint(
            fmt["type"], "outputConfig.textFormat.type", "Member must satisfy enum value set: [json_schema]"
        )
    structure = fmt["structure"]
    if not isinstance(structure, dict) or structure.keys() != {"jsonSchema"}:
        raise invalid(
            "The structure field at outputConfig.textFormat.structure must contain exactly one of: jsonSchema"
        )
    definition = structure["jsonSchema"]
    if not isinstance(definition, dict):
        raise invalid("The jsonSchema field at outputConfig.textFormat.structure must be an object")
    for name in definition:
        if name not in ("schema", "name", "description"):
            raise extraneous(f"outputConfig.textFormat.structure.jsonSchema.{name}")
    where = "outputConfig.textFormat.structure.jsonSchema.schema"
    if "schema" not in definition:
        raise constraint("null", where, "Member must not be null")
    for name in ("schema", "name", "description"):
        if name in definition and not isinstance(definition[name], str):
            raise AwsError(
                400, "SerializationException", f"Expected a string at '{where.rpartition('.')[0]}.{name}'"
            )
    if not _structured(model):
        raise _unsupported_model(model, "outputConfig.textFormat")
    try:
        schema = orjson.loads(definition["schema"])
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The JSON schema at {where} is not valid JSON") from exc
    _check_schema(schema, where)


def _check_schema(schema: Any, where: str) -> None:
    """Refuse what structured outputs cannot compile (the guide's "not supported" list)."""
    if not isinstance(schema, dict):
        raise invalid(f"The JSON schema at {where} must be an object")
    found = schema_problem(schema, where, _SCHEMA_REFUSED)
    if found is not None:
        raise invalid(f"The JSON schema at {found.where} {_SCHEMA_WORDS[found.kind].format(found.detail)}")


#: How this fake words each schema problem (AWS publishes no exact wording).
_SCHEMA_WORDS = {
    "keyword": "uses '{}', which structured outputs do not support",
    "minItems": "uses 'minItems' other than 0 or 1, which is not supported",
    "additionalProperties": "sets 'additionalProperties' to a value other than false",
    "enum": "has an 'enum' of objects or arrays, which is not supported",
    "ref": "has an external or unknown $ref {!r}",
    "recursive": "is recursive, which structured outputs do not support",
    "shape": "has an invalid '{}': not a valid JSON Schema",
}


def _check_tools(config: Any, model: str) -> list[str] | None:
    if config is None:
        return None
    for name in config:
        if name not in ("tools", "toolChoice"):
            raise extraneous(f"toolConfig.{name}")
    tools = config.get("tools")
    if not isinstance(tools, list) or not tools:
        raise constraint("[]", "toolConfig.tools", "Member must have length greater than or equal to 1")
    names = [_check_tool(tool, i, model) for i, tool in enumerate(tools) if not _cache_point(tool)]
    choice = config.get("toolChoice")
    if choice is not None:
        if (
            not isinstance(choice, dict)
            or len(choice) != 1
            or next(iter(choice)) not in ("auto", "any", "tool")
        ):
            raise invalid("The toolChoice field must contain exactly one of: auto, any, tool")
        if "tool" in choice and choice["tool"].get("name") not in names:
            raise invalid(
                f"The tool name {choice['tool'].get('name')} in toolChoice is not defined in toolConfig.tools"
            )
    return names


def _check_tool(tool: Any, i: int, model: str) -> str:
    spec = tool.get("toolSpec") if isinstance(tool, dict) and tool.keys() == {"toolSpec"} else None
    if not isinstance(spec, dict):
        raise invalid(
            f"The tool at toolConfig.tools.{i} must contain exactly one of: toolSpec, systemTool, cachePoint"
        )
    for name in spec:
        if name not in ("name", "description", "inputSchema", "strict"):
            raise extraneous(f"toolConfig.tools.{i}.toolSpec.{name}")
    if not _TOOL_NAME.match(str(spec.get("name", ""))):
        raise constraint(
            spec.get("name"),
            f"toolConfig.tools.{i}.member.toolSpec.name",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
        )
    if "description" in spec and not str(spec["description"]).strip():
        raise constraint(
            "",
            f"toolConfig.tools.{i}.member.toolSpec.description",
            "Member must have length greater than or equal to 1",
        )
    schema = spec.get("inputSchema")
    if not isinstance(schema, dict) or not isinstance(schema.get("json"), dict):
        raise invalid(f"The inputSchema at toolConfig.tools.{i}.toolSpec must contain a json schema object")
    strict = spec.get("strict", False)
    if not isinstance(strict, bool):
        raise AwsError(
            400, "SerializationException", f"Expected a boolean at 'toolConfig.tools.{i}.toolSpec.strict'"
        )
    if strict:
        if not _structured(model):
            raise _unsupported_model(model, f"toolConfig.tools.{i}.toolSpec.strict")
        _check_schema(schema["json"], f"toolConfig.tools.{i}.toolSpec.inputSchema.json")
    return str(spec["name"])


def _cache_point(block: Any) -> bool:
    return isinstance(block, dict) and block.keys() == {"cachePoint"}


def _check_cache_points(body: Json, model: str) -> None:
    """The request's ``cachePoint`` blocks: their shape, the model and place that take them
    (:data:`CACHING_MODELS`; one-hour ones :data:`HOUR_CACHE_MODELS`), none after a reasoning
    block, at most four."""
    lists: list[tuple[str, str, Any]] = [
        ("toolConfig.tools", "tools", (body.get("toolConfig") or {}).get("tools")),
        ("system", "system", body.get("system")),
    ]
    lists += [(f"messages.{i}.content", "messages", m["content"]) for i, m in enumerate(body["messages"])]
    places = _cache_places(model)
    count = 0
    five_minutes = False  # a shorter TTL seen: a longer one may not follow
    for path, place, blocks in lists:
        for j, block in enumerate(blocks or ()):
            if not isinstance(block, dict) or "cachePoint" not in block:
                continue
            point = block["cachePoint"]
            _check_cache_point(point, f"{path}.{j}.cachePoint")
            if place not in places or (point.get("ttl") == "1h" and not _hour_cache(model)):
                raise invalid(_NO_CACHING)
            if j and "reasoningContent" in blocks[j - 1]:
                raise invalid(
                    "Cache point cannot be inserted after reasoning block. Please remove the invalid cache point and try again."
                )
            if point.get("ttl") == "1h" and five_minutes:
                raise invalid(
                    f"The model returned the following errors: {path}.{j}.cache_control.ttl: a ttl='1h' "
                    "cache_control block must not come after a ttl='5m' cache_control block. Note that "
                    "blocks are processed in the following order: `tools`, `system`, `messages`."
                )
            five_minutes = five_minutes or point.get("ttl") != "1h"
            count += 1
    if count > _MAX_CACHE_POINTS:
        raise invalid(
            "The model returned the following errors: A maximum of 4 blocks with cache_control may be "
            f"provided. Found {count}."
        )


def _check_cache_point(point: Any, where: str) -> None:
    if not isinstance(point, dict):
        raise invalid(f"The cachePoint at {where} must be an object")
    for name in point:
        if name not in ("type", "ttl"):
            raise extraneous(f"{where}.{name}")
    if "type" not in point:
        raise constraint("null", f"{where}.type", "Member must not be null")
    if point["type"] != "default":
        raise constraint(point["type"], f"{where}.type", "Member must satisfy enum value set: [default]")
    if point.get("ttl", "5m") not in ("5m", "1h"):
        raise constraint(point["ttl"], f"{where}.ttl", "Member must satisfy enum value set: [5m, 1h]")


def _check_document(document: Any, where: str) -> None:
    """A ``document`` block (DocumentBlock): format, name and a ``bytes`` source of base64."""
    where = f"{where}.document"
    if not isinstance(document, dict):
        raise invalid(f"The document at {where} must be an object")
    for name in document:
        if name not in ("format", "name", "source", "context", "citations"):
            raise extraneous(f"{where}.{name}")
    for name in ("name", "source"):
        if name not in document:
            raise constraint("null", f"{where}.{name}", "Member must not be null")
    fmt = document.get("format")
    if fmt is not None and fmt not in _DOCUMENT_FORMATS:
        raise constraint(
            fmt, f"{where}.format", f"Member must satisfy enum value set: [{', '.join(_DOCUMENT_FORMATS)}]"
        )
    name = document["name"]
    if not isinstance(name, str) or not 1 <= len(name) <= _DOCUMENT_NAME_MAX:
        raise constraint(name, f"{where}.name", f"Member must have length between 1 and {_DOCUMENT_NAME_MAX}")
    if not _DOCUMENT_NAME.match(name):
        raise invalid(
            f"The document name at {where}.name can only contain alphanumeric characters, whitespace "
            "characters (no more than one in a row), hyphens, parentheses and square brackets."
        )
    source = document["source"]
    if not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in _DOCUMENT_SOURCES:
        raise invalid(
            f"The source at {where}.source must contain exactly one of: {', '.join(_DOCUMENT_SOURCES)}"
        )
    if "bytes" in source:
        if fmt is None:  # deliberately stricter: a byte source names its format
            raise constraint("null", f"{where}.format", "Member must not be null")
        try:
            raw = base64.b64decode(source["bytes"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise invalid(f"Unable to decode the document bytes at {where}.source: invalid base64") from exc
        if not raw:
            raise constraint(
                "", f"{where}.source.bytes", "Member must have length greater than or equal to 1"
            )
        if len(raw) > _MAX_DOCUMENT_BYTES:
            raise invalid(f"The document at {where} is larger than 4.5 MB. Reduce its size and try again.")
    citations = document.get("citations")
    if citations is not None and (
        not isinstance(citations, dict)
        or citations.keys() != {"enabled"}
        or not isinstance(citations["enabled"], bool)
    ):
        raise invalid(f"The citations field at {where}.citations needs exactly a boolean 'enabled'")


def _check_documents(messages: list[Json]) -> None:
    """Request-wide document rules: a text block beside a message's documents, at most five, no
    two of one name."""
    names: list[str] = []
    for i, msg in enumerate(messages):
        documents = [b["document"] for b in msg["content"] if "document" in b]
        if documents and not any("text" in b for b in msg["content"]):
            raise invalid(
                f"The message at messages.{i} contains a document but no text block. Add a text block to the message and try again."
            )
        names += [d["name"] for d in documents]
    if len(names) > _MAX_DOCUMENTS:
        raise invalid(f"You can't include more than {_MAX_DOCUMENTS} documents in a request.")
    if len(set(names)) != len(names):
        raise invalid(
            "Messages can't contain duplicate document names. Rename the document and retry your request."
        )


def _check_messages(messages: Any, has_tools: bool) -> None:
    if (
        not isinstance(messages, list)
        or not messages
        or not isinstance(messages[0], dict)
        or messages[0].get("role") != "user"
    ):
        raise invalid(
            "A conversation must start with a user message. Try again with a conversation that starts with a user message."
        )
    previous: tuple[str, list[str]] = ("", [])
    for i, msg in enumerate(messages):
        role, content = msg.get("role"), msg.get("content")
        if msg.keys() != {"role", "content"}:
            raise extraneous(f"messages.{i}." + ",".join(sorted(msg.keys() - {"role", "content"})))
        if role not in ("user", "assistant"):
            raise constraint(
                role, f"messages.{i}.member.role", "Member must satisfy enum value set: [user, assistant]"
            )
        if role == previous[0]:
            raise invalid(
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
            )
        if not isinstance(content, list) or not content:
            raise constraint(
                "[]", f"messages.{i}.member.content", "Member must have length greater than or equal to 1"
            )
        uses, results = [], []
        for j, block in enumerate(content):
            _check_block(block, role, f"messages.{i}.content.{j}", uses, results)
        if (uses or results) and not has_tools:
            raise invalid(
                "The toolConfig field must be defined when using toolUse and toolResult content blocks."
            )
        if len(results) > len(previous[1]):
            raise invalid(
                f"The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks of previous turn."
            )
        missing = [u for u in previous[1] if u not in results]
        if missing or set(results) - set(previous[1]):
            raise invalid(
                f"Expected toolResult blocks at messages.{i}.content for the following Ids: {', '.join(missing or results)}"
            )
        previous = (role, uses)


def _check_block(block: Any, role: str, where: str, uses: list[str], results: list[str]) -> None:
    if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCK_KINDS:
        raise invalid(
            f"The content block at {where} must contain exactly one of: {', '.join(_BLOCKS)}, reasoningContent"
        )
    kind, value = next(iter(block.items()))
    if kind == "text" and not (isinstance(value, str) and value.strip()):
        raise invalid(
            f"The text field in the ContentBlock object at {where} is blank. Add text to the text field, and try again."
        )
    if kind == "image":
        _check_image(value, where)
    if kind == "document":
        _check_document(value, where)
    if _ROLE_OF.get(kind, role) != role:
        raise invalid(f"The {kind} block at {where} is not allowed in a {role} message.")
    if kind == "toolUse":
        if (
            not isinstance(value, dict)
            or value.keys() - {"type"} != {"toolUseId", "name", "input"}
            or not _TOOL_ID.match(str(value["toolUseId"]))
        ):
            raise invalid(
                f"The toolUse block at {where} needs a toolUseId matching [a-zA-Z0-9_-]+ (1 to 64), a name and an input"
            )
        uses.append(value["toolUseId"])
    if kind == "toolResult":
        _check_tool_result(value, where)
        results.append(value["toolUseId"])
    if kind == "reasoningContent":
        _check_reasoning(value, where)


def _check_reasoning(value: Any, where: str) -> None:
    """A reasoning block sent back: a ``reasoningText`` (text, signature) or ``redactedContent``,
    unmodified (what Claude checks; the fake signs like the Anthropic fake)."""
    kinds = {"reasoningText", "redactedContent"}
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in kinds:
        raise invalid(
            f"The reasoningContent block at {where} must contain exactly one of: reasoningText, redactedContent"
        )
    reasoning = value.get("reasoningText")
    errors = "The model returned the following errors: "
    if reasoning is not None:
        if not isinstance(reasoning, dict) or not {"text"} <= reasoning.keys() <= {"text", "signature"}:
            raise invalid(f"The reasoningText at {where} needs a text (and a signature)")
        if reasoning.get("signature") != sign(str(reasoning["text"])):
            raise invalid(errors + f"{where}: Invalid `signature` in `thinking` block")
    elif value["redactedContent"] != REDACTED_DATA:
        raise invalid(errors + f"{where}: Invalid `data` in `redacted_thinking` block")


def _check_image(image: Any, where: str) -> None:
    if not isinstance(image, dict) or image.keys() != {"format", "source"}:
        raise invalid(f"The image block at {where} needs exactly a format and a source")
    if image["format"] not in ("png", "jpeg", "gif", "webp"):
        raise constraint(
            image["format"],
            f"{where}.image.format",
            "Member must satisfy enum value set: [png, jpeg, gif, webp]",
        )
    try:
        base64.b64decode(image["source"]["bytes"], validate=True)
    except (binascii.Error, KeyError, TypeError, ValueError) as exc:
        raise invalid(f"Unable to decode the image bytes at {where}.image.source: invalid base64") from exc


def _check_tool_result(result: Any, where: str) -> None:
    if not isinstance(result, dict) or not {"toolUseId", "content"} <= result.keys() <= {
        "toolUseId",
        "content",
        "status",
        "type",
    }:
        raise invalid(f"The toolResult block at {where} needs toolUseId and content")
    if not _TOOL_ID.match(str(result["toolUseId"])):
        raise invalid(f"The toolResult block at {where} needs a toolUseId matching [a-zA-Z0-9_-]+ (1 to 64)")
    if result.get("status") not in (None, "success", "error"):
        raise constraint(
            result["status"],
            f"{where}.toolResult.status",
            "Member must satisfy enum value set: [success, error]",
        )
    for k, part in enumerate(result["content"]):
        if (
            not isinstance(part, dict)
            or len(part) != 1
            or next(iter(part)) not in ("json", "text", "image", "document")
        ):
            raise invalid(
                f"The content at {where}.toolResult.content.{k} must contain exactly one of: json, text, image, document"
            )
        if "text" in part and not (isinstance(part["text"], str) and part["text"].strip()):
            raise invalid(
                f"The text field in the ContentBlock object at {where}.toolResult.content.{k} is blank. "
                "Add text to the text field, and try again."
            )


def _claude_name(model: str) -> str:
    return model.lower().rpartition("/")[2].partition("anthropic.")[2]


def _check_additional(body: Json, model: str) -> None:
    fields = body.get("additionalModelRequestFields") or {}
    if "anthropic." not in model:
        return
    for name in fields:
        if name not in ("top_k", "thinking", "anthropic_beta"):
            raise extraneous(name)
    thinking = fields.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return
    name = _claude_name(model)
    budgets = not name.startswith("claude") or name.startswith(BEFORE_OPUS_4_7)
    errors = "The model returned the following errors: "
    if thinking["type"] == "adaptive":
        if budgets and not name.startswith(ADAPTIVE_TOO):
            raise invalid(errors + "thinking.type.adaptive is not supported for this model.")
    elif not budgets:
        raise invalid(
            errors + '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive".'
        )
    else:
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise invalid(
                errors + "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            )
        if budget >= (body.get("inferenceConfig") or {}).get("maxTokens", 0):
            raise invalid(
                errors + f"`max_tokens` must be greater than `thinking.budget_tokens`. {_THINKING_DOCS}"
            )
    if (body.get("inferenceConfig") or {}).get("temperature") not in (None, 1) or "top_k" in fields:
        raise invalid(
            errors
            + f"`temperature` may only be set to 1 and `top_k` must be unset when thinking is enabled. {_THINKING_DOCS}"
        )
    last = next((m for m in reversed(body["messages"]) if m["role"] == "assistant"), None)
    if (
        last is not None
        and any("toolUse" in b for b in last["content"])
        and "reasoningContent" not in last["content"][0]
    ):
        raise invalid(
            errors
            + "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block."
        )


# --- answers ------------------------------------------------------------------------------


def _omitted(body: Json, model: str) -> bool:
    """Whether thinking text is left out (``display: omitted``; from Opus 4.7 on, the default)."""
    thinking = (body.get("additionalModelRequestFields") or {}).get("thinking")
    if not isinstance(thinking, dict):
        return False
    name = _claude_name(model)
    newer = name.startswith("claude") and not name.startswith(BEFORE_OPUS_4_7)
    return thinking.get("display", "omitted" if newer else None) == "omitted"


def answer(body: Json, model: str, mode: Mode, cache: set[bytes] | None = None) -> Json:
    """The Converse response the real API would give (``cache``: the prompt prefixes cached so
    far, which the request's checkpoints read and add to)."""
    blocks: list[Json] = []
    thinking = ((body.get("additionalModelRequestFields") or {}).get("thinking") or {}).get("type") in (
        "enabled",
        "adaptive",
    )
    if thinking or "think" in model:
        text = "" if _omitted(body, model) else "The user wants an echo."
        blocks.append({"reasoningContent": {"reasoningText": {"text": text, "signature": sign(text)}}})
        if "redact" in model:
            blocks.append({"reasoningContent": {"redactedContent": REDACTED_DATA}})
    tool = _tool_to_call(body, model, mode)
    text_format = (body.get("outputConfig") or {}).get("textFormat")
    if tool is not None:
        interleave = "interleave" in model
        for k, name in enumerate(_all_tools(body) if "parallel" in model else [tool]):
            if interleave:  # as Claude interleaves text and tool calls
                blocks.append({"text": INTERLUDE if k else PREAMBLE})
            specs = [t["toolSpec"] for t in body["toolConfig"]["tools"] if "toolSpec" in t]
            spec = next(spec for spec in specs if spec["name"] == name)
            strict = spec.get("strict")
            given = instance(spec["inputSchema"]["json"], "Paris") if strict else {"location": "Paris"}
            use = {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": name, "input": given}
            blocks.append({"toolUse": use})
        stop = "tool_use"
    else:
        reply = f"echo: {_last_text(body['messages'])}"
        if text_format is not None:
            schema = orjson.loads(text_format["structure"]["jsonSchema"]["schema"])
            reply = orjson.dumps(instance(schema, _last_text(body["messages"]))).decode()
        text, stop = _cut(reply, body.get("inferenceConfig") or {})
        if text:
            blocks.append({"text": text})
    answer: Json = {
        "output": {"message": {"role": "assistant", "content": blocks}},
        "stopReason": stop,
        "usage": _usage(body, blocks, model, set() if cache is None else cache),
        "metrics": {"latencyMs": 42},
    }
    if "/stop_sequence" in (body.get("additionalModelResponseFieldPaths") or ()) and "anthropic." in model:
        # what Claude's own response says, asked for by its JSON pointer
        matched = _matched_stop(reply if tool is None else "", body.get("inferenceConfig") or {})
        answer["additionalModelResponseFields"] = {"stop_sequence": matched}
    return answer


def _matched_stop(text: str, config: Json) -> str | None:
    return next((s for s in config.get("stopSequences") or () if s in text), None)


def _tool_to_call(body: Json, model: str, mode: Mode) -> str | None:
    config = body.get("toolConfig")
    if not config:
        return None
    choice = config.get("toolChoice") or {"auto": {}}
    if "tool" in choice:
        return str(choice["tool"]["name"])
    last = body["messages"][-1]
    answering = any("toolResult" in b for b in last["content"])
    if "any" in choice or ((mode.tool or "tool" in model) and not answering):
        return str(config["tools"][0]["toolSpec"]["name"])
    return None


def _all_tools(body: Json) -> list[str]:
    """The declared tools' names (a forced one alone), for a ``parallel`` model."""
    choice = body["toolConfig"].get("toolChoice") or {}
    if "tool" in choice:
        return [str(choice["tool"]["name"])]
    return [str(t["toolSpec"]["name"]) for t in body["toolConfig"]["tools"] if "toolSpec" in t]


def _last_text(messages: list[Json]) -> str:
    for msg in reversed(messages):
        if msg["role"] != "user":
            continue
        texts = [b["text"] for b in msg["content"] if "text" in b]
        if texts:
            return " ".join(texts)
        for block in msg["content"]:
            for part in block.get("toolResult", {}).get("content", []):
                return str(part.get("text") or orjson.dumps(part.get("json")).decode())
    return ""


def _cut(text: str, config: Json) -> tuple[str, str]:
    for stop in config.get("stopSequences") or ():
        if stop in text:
            return text[: text.index(stop)], "stop_sequence"
    words = text.split(" ")
    limit = config.get("maxTokens")
    if limit is not None and len(words) > limit:
        return " ".join(words[:limit]), "max_tokens"
    return text, "end_turn"


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(_words(v) for k, v in value.items() if k != "role")
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    return 0


def _usage(body: Json, blocks: list[Json], model: str, cache: set[bytes]) -> Json:
    inputs = max(1, _words([body.get("system"), body["messages"]]))
    outputs = max(
        1,
        _words([b.get("text") or b.get("reasoningContent") for b in blocks])
        + 5 * sum("toolUse" in b for b in blocks),
    )
    usage: Json = {"inputTokens": inputs, "outputTokens": outputs, "totalTokens": inputs + outputs}
    if "cached" in model:
        usage.update(cacheReadInputTokens=100, cacheWriteInputTokens=20, totalTokens=inputs + outputs + 120)
        return usage
    checkpoints = _checkpoints(body, model)
    if checkpoints:
        # the prompt (tools too) in three parts; inputTokens is what was neither read nor written
        prompt = _words(_prompt(body, lambda _: None))
        read = max((words for key, words in checkpoints if key in cache), default=0)
        last_key, last_words = checkpoints[-1]
        write = 0 if last_key in cache else last_words - read
        cache.update(key for key, _ in checkpoints)
        usage.update(
            inputTokens=prompt - read - write,
            cacheReadInputTokens=read,
            cacheWriteInputTokens=write,
            totalTokens=prompt + outputs,
        )
    return usage


def _prompt(body: Json, at_checkpoint: Any) -> list[Any]:
    """The prompt's blocks in Bedrock's order (tools, system, messages), without checkpoints;
    ``at_checkpoint(prefix)`` is called with the blocks before each one."""
    prefix: list[Any] = []
    lists = [(None, (body.get("toolConfig") or {}).get("tools")), (None, body.get("system"))]
    lists += [(m["role"], m["content"]) for m in body["messages"]]
    for role, blocks in lists:
        for block in blocks or ():
            if _cache_point(block):
                at_checkpoint(list(prefix))
            else:
                prefix.append(block if role is None else {role: block})
    return prefix


def _checkpoints(body: Json, model: str) -> list[tuple[bytes, int]]:
    """(the cache key of the prefix, its words) at each checkpoint: the model's cache is its own."""
    found: list[tuple[bytes, int]] = []

    def checkpoint(prefix: list[Any]) -> None:
        key = hashlib.sha256(orjson.dumps([_model_name(model), prefix])).digest()
        found.append((key, _words(prefix)))

    _prompt(body, checkpoint)
    return found


# --- event stream -------------------------------------------------------------------------


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers and correct prelude and message CRCs."""
    raw = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for k, v in headers.items()
    )
    prelude = struct.pack(">II", 16 + len(raw) + len(payload), len(raw))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event_frame(kind: str, payload: Json) -> bytes:
    padded = {**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 5 + len(kind)]}  # Bedrock's padding
    return frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(padded),
    )


def exception_frame(kind: str, message: str) -> bytes:
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, orjson.dumps({"message": message}))


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_events(message: Json) -> list[bytes]:
    """The frames that stream a Converse ``message`` (text blocks get no contentBlockStart)."""
    out = [event_frame("messageStart", {"role": "assistant"})]
    for i, block in enumerate(message["output"]["message"]["content"]):
        deltas: list[Json] = []
        if "text" in block:
            deltas = [{"text": p} for p in _pieces(block["text"], 5)]
        elif "redactedContent" in block.get("reasoningContent", {}):
            deltas = [block]  # whole, in one delta
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]["reasoningText"]
            deltas = [{"reasoningContent": {"text": p}} for p in _pieces(reasoning["text"], 6)]
            deltas.append({"reasoningContent": {"signature": reasoning["signature"]}})
        elif "toolUse" in block:
            use = block["toolUse"]
            start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
            out.append(event_frame("contentBlockStart", {"contentBlockIndex": i, "start": start}))
            # a call without arguments streams no input at all (its start and stop only)
            arguments = orjson.dumps(use["input"]).decode() if use["input"] else ""
            deltas = [{"toolUse": {"input": p}} for p in _pieces(arguments, 4) if p]
        out += [event_frame("contentBlockDelta", {"contentBlockIndex": i, "delta": d}) for d in deltas]
        out.append(event_frame("contentBlockStop", {"contentBlockIndex": i}))
    stop: Json = {"stopReason": message["stopReason"]}
    if "additionalModelResponseFields" in message:
        stop["additionalModelResponseFields"] = message["additionalModelResponseFields"]
    out.append(event_frame("messageStop", stop))
    out.append(event_frame("metadata", {"usage": message["usage"], "metrics": message["metrics"]}))
    return out


# --- embeddings ---------------------------------------------------------------------------


def _vector(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    values = [((seed[i % 32] + 7 * i) % 251) / 250 - 0.5 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _model_body(body: Any, allowed: set[str], required: tuple[str, ...]) -> Json:
    if not isinstance(body, dict):
        raise invalid(
            "Malformed input request: #: expected type: JSONObject, please reformat your input and try again."
        )
    for name in body:
        if name not in allowed:
            raise extraneous(name)
    for name in required:
        if name not in body:
            raise invalid(
                f"Malformed input request: #: required key [{name}] not found, please reformat your input and try again."
            )
    return body


def embed(model: str, body: Any) -> Json:
    """InvokeModel answers of Titan Text Embeddings and Cohere Embed."""
    if "titan-embed" in model:
        allowed = (
            {"inputText", "dimensions", "normalize", "embeddingTypes"} if "v2" in model else {"inputText"}
        )
        body = _model_body(body, allowed, ("inputText",))
        if not isinstance(body["inputText"], str) or not body["inputText"]:
            raise invalid(
                "Malformed input request: #/inputText: expected minLength: 1, actual: 0, please reformat your input and try again."
            )
        dims = body.get("dimensions", 1024)
        if dims not in (256, 512, 1024):
            raise invalid(
                f"Malformed input request: #/dimensions: {dims} is not a valid enum value, please reformat your input and try again."
            )
        vector = _vector(body["inputText"], dims)
        return {
            "embedding": vector,
            "inputTextTokenCount": _words(body["inputText"]),
            "embeddingsByType": {"float": vector},
        }
    if "cohere.embed" in model:
        body = _model_body(
            body, {"texts", "input_type", "truncate", "embedding_types", "images"}, ("texts", "input_type")
        )
        texts = body["texts"]
        if (
            not isinstance(texts, list)
            or not 1 <= len(texts) <= 96
            or not all(isinstance(t, str) for t in texts)
        ):
            raise invalid(
                "Malformed input request: #/texts: expected between 1 and 96 strings, please reformat your input and try again."
            )
        if body["input_type"] not in ("search_document", "search_query", "classification", "clustering"):
            raise invalid(
                f"Malformed input request: #/input_type: {body['input_type']} is not a valid enum value, please reformat your input and try again."
            )
        return {
            "embeddings": [_vector(t, 1024) for t in texts],
            "id": str(uuid.uuid4()),
            "response_type": "embeddings_floats",
            "texts": texts,
        }
    raise invalid("The provided model identifier is invalid.")
