"""A fake Vertex AI: Gemini and Claude models behind ``/v1/projects/{p}/locations/{l}/publishers/{pub}/models/{model}:{method}``.

The same server also runs the service-account token endpoint at ``/token``
(:mod:`tests.fakes.google_token`); model routes accept only ``Authorization:
Bearer`` tokens it issued and that have not expired. Like Vertex AI:

- no or an unknown token is a 401 ``UNAUTHENTICATED`` (an ``x-goog-api-key`` is
  no substitute); another project is a 403 ``PERMISSION_DENIED``;
- ``publishers/google``: ``:generateContent`` / ``:streamGenerateContent`` are
  validated and answered by the Gemini fake (:mod:`tests.fakes.gemini`), in JSON
  (``{"echo": ...}``) when ``responseMimeType`` is ``application/json``, and
  ``:predict`` embeds ``instances[].content`` (``parameters.outputDimensionality``,
  at most 250 instances, one for ``gemini-embedding-*``) answering
  ``predictions[].embeddings.{values, statistics.token_count}`` (words);
- ``publishers/anthropic``: ``:rawPredict`` / ``:streamRawPredict`` require
  ``anthropic_version: vertex-2023-10-16`` and no ``model`` in the body, a
  ``stream`` flag matching the method, and then validate and answer with the
  Anthropic fake (:mod:`tests.fakes.anthropic`);
- failure modes by model name (:func:`tests.fakes.common.mode_of`; for Claude
  after the ``claude-`` prefix, e.g. ``claude-error-429``, ``claude-tool-x``)
  answer in the ``google.rpc.Status`` shape for both publishers, as Vertex's
  quota and server errors do.

Every request is recorded in ``app["requests"]`` as ``{path, query, headers, body}``.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import anthropic as anthropic_fake
from tests.fakes import gemini as gemini_fake
from tests.fakes.common import FakeProvider, Mode, abort, mode_of, stream_response
from tests.fakes.gemini import RpcError
from tests.fakes.google_token import TEST_PROJECT, ServiceAccountKey, add_token_routes, service_account_key

__all__ = ["ANTHROPIC_VERSION", "fake_provider", "vertex_app"]

ANTHROPIC_VERSION = "vertex-2023-10-16"
Json = dict[str, Any]
_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def vertex_app(
    keys: list[ServiceAccountKey] | None = None, *, project: str = TEST_PROJECT, expires_in: int = 3599
) -> web.Application:
    """The fake; adapters use base URL ``<server>/v1`` and token URI ``<server>/token``."""
    app = web.Application()
    state = add_token_routes(app, keys or [service_account_key()], expires_in=expires_in)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        info = request.match_info
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
        model, _, method = info["tail"].partition(":")
        try:
            _check_token(request, state.valid)
            if info["project"] != project:
                raise RpcError(
                    403,
                    f"Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/"
                    f"{request.path.removeprefix('/v1/')}' (or it may not exist).",
                )
            if body is None:
                raise RpcError(400, "Invalid JSON payload received. Unexpected token.")
            mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode")
            if mode == "VALIDATED" and request.path.startswith("/v1/"):
                # v1's FunctionCallingConfig.Mode: UNSPECIFIED, AUTO, ANY, NONE (VALIDATED is v1beta1's)
                raise RpcError(
                    400, "Invalid value at 'tool_config.function_calling_config.mode' (Mode), \"VALIDATED\""
                )
            if info["publisher"] == "google":
                return await _google(request, model, method, body)
            if info["publisher"] == "anthropic":
                return await _anthropic(request, model, method, body)
            raise _not_found(request, model)
        except RpcError as err:
            return err.response()

    for version in ("v1", "v1beta1"):
        app.router.add_post(
            f"/{version}/projects/{{project}}/locations/{{location}}/publishers/{{publisher}}/models/{{tail}}",
            handle,
        )
    return app


def _check_token(request: web.Request, valid: Any) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not valid(token.strip()):
        raise RpcError(401, _UNAUTHENTICATED)


def _not_found(request: web.Request, model: str) -> RpcError:
    name = request.path.removeprefix("/v1/").partition(":")[0]
    return RpcError(
        404, f"Publisher Model `{name}` was not found or your project does not have access to it ({model})."
    )


def _mode(model: str) -> Mode:
    return mode_of(model.removeprefix("claude-"))


async def _failure(request: web.Request, model: str) -> web.StreamResponse | None:
    mode = _mode(model)
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        return abort(request)
    if mode.status is not None:
        return gemini_fake._mode_error(mode.status)
    return None


# --- google publisher -----------------------------------------------------------------


async def _google(request: web.Request, model: str, method: str, body: Json) -> web.StreamResponse:
    if method in ("generateContent", "streamGenerateContent"):
        if body.get("generationConfig", {}).get("responseMimeType") == "application/json":
            return await _json_answer(request, model, method, body)
        return await gemini_fake._dispatch(request, model, method, body)
    if method != "predict":
        raise _not_found(request, model)
    failure = await _failure(request, model)
    return failure if failure is not None else web.json_response(_predict(model, body))


async def _json_answer(request: web.Request, model: str, method: str, body: Json) -> web.StreamResponse:
    """The Gemini fake's answer with its text as JSON (``{"echo": ...}``), as JSON mode answers."""
    failure = await _failure(request, model)
    if failure is not None:
        return failure
    gemini_fake._validate_generate(body)
    full = gemini_fake._generate(model, body)
    text = orjson.dumps({"echo": gemini_fake._last_user_text(body["contents"])}).decode()
    for cand in full["candidates"]:
        parts = cand["content"]["parts"]
        cand["content"]["parts"] = [
            p if "text" not in p or p.get("thought") else {"text": text} for p in parts
        ]
    if method == "generateContent":
        return web.json_response(full)
    return await stream_response(request, gemini_fake._stream_events(full), cut=_mode(model).cut)


#: The fake embedding models' input limit, in words (tokens here): text-embedding-005's 2048
EMBED_TOKEN_LIMIT = 2048


def _predict(model: str, body: Json) -> Json:
    gemini_fake._check_fields(body, {"instances", "parameters"}, None)
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RpcError(400, "Invalid request: instances must be a non-empty list.")
    limit = 1 if model.startswith("gemini-embedding") else 250
    if len(instances) > limit:
        raise RpcError(
            400,
            f"Unable to submit request because the model supports at most {limit} instance(s) per request.",
        )
    parameters = body.get("parameters", {})
    gemini_fake._check_fields(parameters, {"outputDimensionality", "autoTruncate"}, "parameters")
    dims = int(parameters.get("outputDimensionality", 8))
    predictions = []
    for i, instance in enumerate(instances):
        gemini_fake._check_fields(instance, {"content", "task_type", "title"}, f"instances[{i}]")
        content = instance.get("content")
        if not isinstance(content, str) or not content:
            raise RpcError(400, f"Invalid request: instances[{i}].content must be a non-empty string.")
        words = content.split()
        # beyond the model's length: cut silently by default, an error with autoTruncate false
        truncated = len(words) > EMBED_TOKEN_LIMIT
        if truncated and parameters.get("autoTruncate") is False:
            raise RpcError(
                400,
                f"Unable to submit request because the input token count is {len(words)} but the model "
                f"supports up to {EMBED_TOKEN_LIMIT}. Reduce the input token count and try again.",
            )
        content = " ".join(words[:EMBED_TOKEN_LIMIT])
        stats = {"truncated": truncated, "token_count": len(content.split())}
        predictions.append(
            {"embeddings": {"statistics": stats, "values": gemini_fake._vector(content, dims)}}
        )
    chars = sum(len(str(i["content"]).replace(" ", "")) for i in instances)
    return {"predictions": predictions, "metadata": {"billableCharacterCount": chars}}


# --- anthropic publisher --------------------------------------------------------------


async def _anthropic(request: web.Request, model: str, method: str, body: Json) -> web.StreamResponse:
    if method not in ("rawPredict", "streamRawPredict"):
        raise _not_found(request, model)
    problem = _vertex_body_problem(body, method)
    if problem:
        return anthropic_fake.error(400, problem)
    inner = {k: v for k, v in body.items() if k != "anthropic_version"} | {"model": model}
    try:
        turns = anthropic_fake.validate(inner)
    except anthropic_fake.InvalidError as exc:
        return anthropic_fake.error(400, str(exc))
    failure = await _failure(request, model)
    if failure is not None:
        return failure
    mode = _mode(model)
    message = anthropic_fake.answer(inner, turns, mode)
    if method == "streamRawPredict":
        return await stream_response(request, anthropic_fake.events(message), cut=mode.cut)
    return web.json_response(message)


def _vertex_body_problem(body: Json, method: str) -> str | None:
    if "model" in body:
        return "model: Extra inputs are not permitted"
    version = body.get("anthropic_version")
    if version is None:
        return "anthropic_version: Field required"
    if version != ANTHROPIC_VERSION:
        return f"anthropic_version: Input should be '{ANTHROPIC_VERSION}'"
    if (method == "streamRawPredict") != bool(body.get("stream")):
        return f"stream: must be {str(method == 'streamRawPredict').lower()} for {method}"
    return None


def fake_provider() -> FakeProvider:
    """The contract-suite descriptor: a service-account key whose token URI is this fake's."""
    key = service_account_key()
    return FakeProvider(
        type="vertex",
        app=vertex_app,
        base_path="/v1",
        api_key=None,
        options=lambda url: {
            "project": TEST_PROJECT,
            "location": "us-central1",
            "credentials_json": key.key_json(url + "/token"),
        },
        chat_model="gemini-2.5-flash",
        embed_model="text-embedding-005",
    )
