"""A fake Azure OpenAI resource: the OpenAI fake's validation and answers behind Azure's URLs and auth.

Routes (https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference):
``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` and
``.../embeddings``, plus the v1 API ``/openai/v1/chat/completions`` and
``/openai/v1/embeddings`` (deployment in the body's ``model``, no ``api-version``
needed). Like the real service:

- deployment URLs without ``api-version``, or with one it does not know, are a
  404 ``{"error": {"code": "404", "message": "Resource not found"}}``; versions
  before 2024-09-01 reject ``stream_options`` and ``max_completion_tokens`` as
  unrecognized arguments;
- auth is the ``api-key`` header or ``Authorization: Bearer <Entra ID token>``;
  anything else is a 401 in Azure's shape;
- a deployment whose name starts with ``missing`` is a 404 ``DeploymentNotFound``;
- a deployment whose name contains ``filtered`` refuses the prompt: 400
  ``content_filter`` with ``innererror.content_filter_result``; ``filtered-output``
  instead answers 200 with ``finish_reason: "content_filter"`` (no message);
- answers carry ``prompt_filter_results`` and per-choice ``content_filter_results``;
  streams start with the annotation chunk (empty ``choices``, ``"object": ""``),
  and deployments containing ``async`` add an annotation-only choice chunk
  (``content_filter_offsets``, no ``delta``) as asynchronous filtering does;
- a deployment whose name contains ``blocked`` streams as asynchronous filtering
  does when it blocks the output (protected material): part of the answer, an
  annotation-only choice, then one whose ``finish_reason`` is ``content_filter``,
  in events with empty ``id``, ``object`` and ``model``, and no finish chunk of
  the model's own (the docs' "Sample response stream (blocked by filters)",
  https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-streaming).

Everything else (validation, failure modes, usage, tool calls) is the OpenAI
fake's (:mod:`tests.fakes.openai`, through its ``_chat`` / ``_embeddings``
handlers and its app settings); streams are that fake's complete answer framed
the Azure way (role chunk, 3-character pieces, finish chunk, usage chunk when asked). Requests are recorded in ``app["requests"]``
as ``{method, path, query, headers, body}``.
"""

from __future__ import annotations

import warnings
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes import openai as openai_fake
from tests.fakes.common import FakeProvider, mode_of, stream_response

__all__ = [
    "API_KEY",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "ENTRA_TOKEN",
    "SAFE",
    "TENANT_ID",
    "azure_app",
    "fake_provider",
]

API_KEY = "azure-test-key-0123456789abcdef"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-entra-token"
#: The app registration the fake's Entra token endpoint knows (``/{tenant}/oauth2/v2.0/token``).
TENANT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
CLIENT_SECRET = "fake~client~secret~0123456789"
API_VERSIONS = frozenset(
    {
        "2024-02-01",
        "2024-06-01",
        "2024-10-21",
        "2024-12-01-preview",
        "2025-01-01-preview",
        "2025-04-01-preview",
    }
)
_STREAM_OPTIONS_SINCE = "2024-09-01"
SAFE: dict[str, Any] = {
    name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")
}
_PROMPT_FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
    "Please modify your prompt and retry. To learn more about our content filtering policies please read "
    "our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
Json = dict[str, Any]


class AzureError(Exception):
    def __init__(self, status: int, error: Json) -> None:
        super().__init__(error.get("message"))
        self.status, self.error = status, error

    def response(self) -> web.Response:
        return _json({"error": self.error}, self.status)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def azure_app(*, api_key: str = API_KEY, entra_token: str = ENTRA_TOKEN) -> web.Application:
    """The fake; its base URL for adapters is the server root (the resource endpoint)."""
    app = web.Application()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []
        # The OpenAI fake's handlers read their settings from the app: take its defaults.
        reference = openai_fake.openai_app()
        for key in reference:
            if key != "requests":
                app[key] = reference[key]

    def route(operation: str, *, v1: bool) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
            app["requests"].append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": dict(request.query),
                    "headers": CIMultiDict(request.headers),
                    "body": body,
                }
            )
            try:
                version = _check_version(request, v1=v1)
                _check_auth(request, api_key, entra_token)
                return await _serve(request, operation, body, version, v1=v1)
            except AzureError as err:
                return err.response()
            except openai_fake.APIError as err:
                return err.response()

        return handle

    for operation in ("chat/completions", "embeddings"):
        app.router.add_post(f"/openai/deployments/{{deployment}}/{operation}", route(operation, v1=False))
        app.router.add_post(f"/openai/v1/{operation}", route(operation, v1=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        # the tokens the endpoint below handed out (a test may revoke them), and its exchanges
        app["entra"] = {"issued": set(), "exchanges": 0}
    app.router.add_post("/{tenant}/oauth2/v2.0/token", _entra_token)
    return app


async def _entra_token(request: web.Request) -> web.Response:
    """Entra ID's client-credentials grant (v2-oauth2-client-creds-grant-flow): a form with
    ``grant_type=client_credentials``, ``client_id``, ``client_secret`` and ``scope``; errors
    as ``{"error", "error_description"}`` (AADSTS codes)."""
    form = await request.post()
    entra = request.app["entra"]
    entra["exchanges"] += 1

    def refuse(status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    if request.content_type != "application/x-www-form-urlencoded":
        return refuse(400, "invalid_request", "AADSTS900144: The request body must contain grant_type.")
    if form.get("grant_type") != "client_credentials":
        return refuse(
            400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type."
        )
    if request.match_info["tenant"] != TENANT_ID:
        return refuse(400, "invalid_request", "AADSTS90002: Tenant not found.")
    if form.get("client_id") != CLIENT_ID:
        return refuse(400, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
    if form.get("client_secret") != CLIENT_SECRET:
        return refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
    if form.get("scope") != "https://cognitiveservices.azure.com/.default":
        return refuse(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid.")
    token = f"eyJ0eXAiOiJKV1QifQ.entra-{entra['exchanges']}"
    entra["issued"].add(token)
    return web.json_response(
        {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
    )


def _check_version(request: web.Request, *, v1: bool) -> str | None:
    version = request.query.get("api-version")
    if v1:
        if version not in (None, "preview", "latest"):
            raise AzureError(400, {"code": "BadRequest", "message": "API version not supported"})
        return version
    if version not in API_VERSIONS:
        raise AzureError(404, {"code": "404", "message": "Resource not found"})
    return version


def _check_auth(request: web.Request, api_key: str, entra_token: str) -> None:
    key = request.headers.get("api-key")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if key is not None:
        if key == api_key:
            return
        raise AzureError(
            401,
            {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                "provide a valid key for an active subscription and use a correct regional API endpoint "
                "for your resource.",
            },
        )
    if scheme.lower() == "bearer":
        if token.strip() == entra_token or token.strip() in request.app["entra"]["issued"]:
            return
        raise AzureError(
            401,
            {
                "code": "401",
                "message": "Unauthorized. Access token is missing, invalid, audience is incorrect "
                "(https://cognitiveservices.azure.com), or have expired.",
            },
        )
    raise AzureError(
        401,
        {
            "code": "401",
            "message": "Access denied due to missing subscription key. Make sure to include subscription key "
            "when making requests to an API.",
        },
    )


async def _serve(
    request: web.Request, operation: str, body: Any, version: str | None, *, v1: bool
) -> web.StreamResponse:
    if not isinstance(body, dict):
        raise openai_fake.APIError(400, "We could not parse the JSON body of your request.")
    deployment = body.get("model") if v1 else request.match_info["deployment"]
    if isinstance(deployment, str) and deployment:
        body["model"] = deployment  # deployment URLs ignore the body's model; the URL decides
    name = str(body.get("model") or "")
    if name.startswith("missing"):
        raise AzureError(
            404,
            {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist. If you created the deployment "
                "within the last 5 minutes, please wait a moment and try again.",
            },
        )
    if operation == "embeddings":
        return await openai_fake._embeddings(request, body)
    for newer in ("stream_options", "max_completion_tokens"):  # both arrived with 2024-09-01
        if newer in body and version and version[:10] < _STREAM_OPTIONS_SINCE:
            raise openai_fake.APIError(400, f"Unrecognized request argument supplied: {newer}")
    if "filtered" in name and "filtered-output" not in name:
        raise _prompt_filtered()
    if body.get("stream"):
        return await _stream(request, body)
    return _annotated(await openai_fake._chat(request, body), filtered="filtered-output" in name)


def _prompt_filtered() -> AzureError:
    result = {
        **SAFE,
        "violence": {"filtered": True, "severity": "medium"},
        "jailbreak": {"filtered": False, "detected": False},
    }
    return AzureError(
        400,
        {
            "message": _PROMPT_FILTERED,
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result},
        },
    )


def _prompt_annotation() -> list[Json]:
    return [{"prompt_index": 0, "content_filter_results": SAFE}]


def _annotated(resp: web.StreamResponse, *, filtered: bool) -> web.StreamResponse:
    """Add Azure's filter results to a JSON chat answer (and filter its output when asked)."""
    if not isinstance(resp, web.Response) or resp.status != 200 or not isinstance(resp.body, bytes):
        return resp
    data = orjson.loads(resp.body)
    data["prompt_filter_results"] = _prompt_annotation()
    data.pop("service_tier", None)
    for choice in data["choices"]:
        choice["content_filter_results"] = SAFE
        if filtered:
            choice.pop("message")  # like the docs' filtered choice: no content at all
            choice["finish_reason"] = "content_filter"
            choice["content_filter_results"] = {**SAFE, "violence": {"filtered": True, "severity": "high"}}
    return _json(data)


async def _stream(request: web.Request, body: Json) -> web.StreamResponse:
    """Stream the OpenAI fake's complete answer the way Azure frames it."""
    unary = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    resp = await openai_fake._chat(request, unary)
    if not isinstance(resp, web.Response) or resp.status != 200 or not isinstance(resp.body, bytes):
        return resp
    full = orjson.loads(resp.body)
    model = str(body["model"])
    events = [_sse(_prompt_chunk())]
    for choice in full["choices"]:
        chunks = _choice_chunks(choice, filtered="filtered-output" in model)
        if "blocked" in model:
            chunks = _blocked(chunks, choice)
        events += [_sse(_chunk(full, c)) for c in chunks if "delta" in c]
        events += [_sse(_annotation(c)) for c in chunks if "delta" not in c]
    if "async" in model:
        events.append(_sse(_async_annotation()))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse({**_chunk(full, None), "choices": [], "usage": full["usage"]}))
    events.append(b"data: [DONE]\n\n")
    mode = mode_of(model)
    return await stream_response(request, events, cut=mode.cut, whole=mode.whole)


def _prompt_chunk() -> Json:
    """Azure's first stream chunk: prompt annotations only."""
    return {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": _prompt_annotation(),
    }


def _chunk(full: Json, choice: Json | None) -> Json:
    base = {k: full[k] for k in ("id", "created", "model", "system_fingerprint") if k in full}
    return {**base, "object": "chat.completion.chunk", "choices": [choice] if choice else []}


def _pieces(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _choice_chunks(choice: Json, *, filtered: bool) -> list[Json]:
    """Role, content (or tool call) pieces, then the finish: each with its filter results."""
    index, message = choice["index"], choice.get("message") or {}

    def delta(d: Json, finish: str | None = None) -> Json:
        results = SAFE if d else {}
        return {"index": index, "delta": d, "finish_reason": finish, "content_filter_results": results}

    calls = message.get("tool_calls") or []
    if calls:
        call = calls[0]
        head = {"index": 0, "id": call["id"], "type": "function"}
        first = {
            "role": "assistant",
            "tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}],
        }
        rest = [
            {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
            for p in _pieces(call["function"]["arguments"])
        ]
    else:
        first = {"role": "assistant", "content": ""}
        rest = [] if filtered else [{"content": p} for p in _pieces(message.get("content") or "")]
    finish = "content_filter" if filtered else choice["finish_reason"]
    return [delta(first), *(delta(d) for d in rest), delta({}, finish)]


def _blocked(chunks: list[Json], choice: Json) -> list[Json]:
    """The role chunk and half the content, then the asynchronous filter's verdicts on it: safe so
    far, then blocked (the model's own finish never comes). Verdicts are choices without a delta."""
    text = (choice.get("message") or {}).get("content") or ""
    sent = chunks[: 1 + (len(chunks) - 2) // 2]
    shown = sum(len(c["delta"].get("content") or "") for c in sent)
    offsets = {"check_offset": shown, "start_offset": shown, "end_offset": len(text)}
    index = choice["index"]
    safe = {"index": index, "finish_reason": None, "content_filter_results": SAFE}
    block = {
        "index": index,
        "finish_reason": "content_filter",
        "content_filter_results": {"protected_material_text": {"detected": True, "filtered": True}},
    }
    return [*sent, {**safe, "content_filter_offsets": offsets}, {**block, "content_filter_offsets": offsets}]


def _annotation(choice: Json) -> Json:
    """An asynchronous filter's event: one annotation-only choice, empty id, object and model."""
    return {"id": "", "object": "", "created": 0, "model": "", "choices": [choice], "usage": None}


def _async_annotation() -> Json:
    offsets = {"check_offset": 0, "start_offset": 0, "end_offset": 42}
    choice = {
        "index": 0,
        "finish_reason": None,
        "content_filter_results": SAFE,
        "content_filter_offsets": offsets,
    }
    return {"choices": [choice], "created": 0, "id": "", "model": "", "object": ""}


def _sse(payload: Json) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def fake_provider() -> FakeProvider:
    """The contract-suite descriptor: the resource endpoint is the server root, key in ``api-key``."""
    return FakeProvider(
        type="azure",
        app=azure_app,
        api_key=API_KEY,
        options=lambda url: {"api_version": "2024-10-21"},
        chat_model="gpt-4o-mini",
        embed_model="text-embedding-3-small",
    )
