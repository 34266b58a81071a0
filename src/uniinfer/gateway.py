"""The request pipeline that the SDK and the server share.

``Gateway`` turns a validated request into a response: stages before
(identity, policy, limits, cache), the router (group, strategy, retries,
breakers, fallbacks: :mod:`uniinfer.routing.router`), the provider adapter's
pure translation, one pooled HTTP client, and stages after (usage and the
rest). See :mod:`uniinfer.stages` for the plug-in places.

Nothing here depends on how the request arrived: the server and the SDK
build a :class:`~uniinfer.stages.RequestContext` and call the same methods.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from uniinfer.config import Config
from uniinfer.discovery import ModelDiscovery
from uniinfer.errors import (
    ConfigError,
    ProviderError,
    ProviderResponseError,
    RequestCancelledError,
    UniInferError,
    UnsupportedParamError,
)
from uniinfer.fitting import RequestFitter
from uniinfer.http import HttpClient, Timeouts
from uniinfer.providers.base import Endpoint, ProviderAdapter
from uniinfer.providers.registry import Registry, default_registry
from uniinfer.routing.breaker import BreakerState
from uniinfer.routing.group import Member, Target
from uniinfer.routing.router import Router
from uniinfer.routing.state import DeploymentState
from uniinfer.stages import SLOTS, AfterStage, BeforeStage, RequestContext, Route, UsageMeter
from uniinfer.streaming import ChatStream, open_chat_stream
from uniinfer.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
    Usage,
)

__all__ = ["Gateway", "ProviderStatus", "Target"]

T = TypeVar("T")

log = logging.getLogger("uniinfer.gateway")


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    name: str
    type: str
    available: bool
    reason: str = ""


class Gateway:
    """One configured gateway: providers, model groups, stages and the HTTP pool."""

    def __init__(
        self,
        config: Config,
        *,
        registry: Registry | None = None,
        stages: Mapping[str, object] | None = None,
        http: HttpClient | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """``clock`` and ``sleep`` replace the router's monotonic clock and asyncio.sleep (tests)."""
        self.config = config
        self.registry = registry or default_registry()
        self.http = http or HttpClient(dns_timeout=_longest_connect(config))
        self.usage = UsageMeter()
        self._adapters = self._build_adapters()
        #: What local servers list, for ``GET /v1/models``.
        self.discovery = ModelDiscovery(self.http)
        #: What each deployment can take of a request (:mod:`uniinfer.fitting`).
        self.fit = RequestFitter(drop=config.settings.drop_unsupported_params)
        self.router = Router(
            config,
            self._adapters,
            self.registry,
            clock=clock or time.monotonic,
            sleep=sleep or asyncio.sleep,
            on_breaker_change=_log_breaker_change,
        )
        chosen = {"usage": self.usage, **(stages or {})}
        unknown = set(chosen) - set(SLOTS)
        if unknown:
            raise ConfigError(f"unknown pipeline stage(s) {sorted(unknown)}; known: {list(SLOTS)}")
        ordered = [chosen[slot] for slot in SLOTS if slot in chosen]
        self._before: list[BeforeStage] = [s for s in ordered if hasattr(s, "before")]
        self._after: list[AfterStage] = [s for s in reversed(ordered) if hasattr(s, "after")]

    # --- set-up ---------------------------------------------------------------------

    def _build_adapters(self) -> dict[str, ProviderAdapter]:
        """Every configured provider's adapter; the problems of all of them in one error."""
        adapters: dict[str, ProviderAdapter] = {}
        problems: list[str] = []
        for name in self.config.providers:
            try:
                adapters[name] = self._build_adapter(name)
            except ConfigError as exc:
                problems.append(exc.message)
        if len(problems) == 1:
            raise ConfigError(problems[0])
        if problems:
            raise ConfigError(f"{len(problems)} providers cannot be built:\n  " + "\n  ".join(problems))
        return adapters

    def _build_adapter(self, name: str) -> ProviderAdapter:
        try:
            return self._new_adapter(name)
        except ConfigError as exc:
            # the adapter names the key; the config knows its line (or environment variable)
            raise ConfigError(self.config.explain(exc.message, ("providers", name))) from None

    def _new_adapter(self, name: str) -> ProviderAdapter:
        entry = self.config.providers[name]
        spec = self.registry.get(self.config.provider_type(name))
        overrides = entry.capabilities.model_dump(exclude_none=True)
        if overrides:  # this endpoint's, where they differ from its row's
            spec = replace(spec, capabilities=replace(spec.capabilities, **overrides))
        api_key = entry.api_key.get_secret_value() if entry.api_key else None
        if spec.key_required and not api_key:
            var = f"set {spec.api_key_env} or " if spec.api_key_env else ""
            raise ConfigError(f"provider '{name}' needs an API key: {var}set providers.{name}.api_key")
        t = entry.timeout
        endpoint = Endpoint(
            base_url=entry.base_url or spec.base_url,
            api_key=api_key,
            headers={name: value.get_secret_value() for name, value in entry.headers.items()},
            timeouts=Timeouts(connect=t.connect, read=t.read, total=t.total),
            options=entry.plain_options(),
        )
        return self.registry.create(spec, endpoint, name)

    def provider_status(self) -> list[ProviderStatus]:
        """Every known provider: configured ones available, the rest with the reason why not."""
        out = [ProviderStatus(name, self.config.provider_type(name), True) for name in self._adapters]
        types = {s.type for s in out}
        # only the embedded default enables providers by their keys; a file names its own
        from_keys = self.config.source == "embedded default"
        for spec in self.registry.specs.values():
            if spec.name in types or spec.name in self._adapters:
                continue
            if not spec.auto_enable or not from_keys:  # a key alone does not enable it
                reason = f"configure providers.{spec.name}"
            elif spec.api_key_env:
                reason = f"set {spec.api_key_env}"
            else:
                reason = "not configured"
            out.append(ProviderStatus(spec.name, spec.name, False, reason))
        return out

    # --- chat ---------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, ctx: RequestContext | None = None) -> ChatResponse:
        """Answer a chat request (non-streaming) through the router."""
        return await self._complete(request, ctx or RequestContext("chat"), _MODELLED)

    async def chat_json(self, request: ChatRequest, ctx: RequestContext | None = None) -> bytes:
        """:meth:`chat`, answered as OpenAI ``chat.completion`` JSON (what the server sends).

        An OpenAI-format provider's answer is forwarded as the provider wrote
        it once it checks out (:meth:`ProviderAdapter.chat_json`); other answers
        are modelled and serialised.
        """
        return await self._complete(request, ctx or RequestContext("chat"), _JSON)

    async def _complete(self, request: ChatRequest, ctx: RequestContext, answer: _Answer[T]) -> T:
        served = await self._run_before(ctx) if self._before else None
        if served is not None:
            return answer.of_response(served)
        route = ctx.route = Route(request.model)
        usage: Usage | None = None
        served_by: DeploymentState | None = None

        async def attempt(member: Member, timeouts: Timeouts) -> T:
            nonlocal usage, served_by
            target = member.target
            served_by = member.state
            prepared, route.dropped_params = self.fit.chat(request, target)
            adapter = target.adapter
            await adapter.prepare_credentials(self.http)
            upstream = adapter.chat_request(prepared, target.model, stream=False)
            resp = await self.http.send(upstream, timeouts, target.provider)
            if resp.status >= 400:
                raise adapter.parse_error(resp.status, resp.headers, resp.body)
            try:
                result, usage = answer.parse(adapter, resp.body, target.model)
            except ProviderError as exc:
                _spent(route, member, exc)
                raise
            return result

        try:
            decision = self.router.decide(request.model, request, ctx)
            result = await self.router.run(decision, route, attempt)
        except UniInferError as exc:
            ctx.error = exc
            await self._finish(ctx)
            raise
        except asyncio.CancelledError:
            # the caller left: the after-stages still see the request (its upstream call is gone)
            ctx.error = _cancelled()
            await self._finish(ctx)
            raise
        ctx.usage = usage
        if usage is not None and served_by is not None:  # counted against the deployment's tpm
            served_by.count_tokens(usage.total_tokens)
        await self._finish(ctx)
        return result

    async def stream(self, request: ChatRequest, ctx: RequestContext | None = None) -> ChatStream:
        """Open a chat stream; the router fails over until the first chunk arrives.

        The after-stages run when the returned stream ends or is closed.
        """
        ctx = ctx or RequestContext("chat")
        served = await self._run_before(ctx) if self._before else None
        if served is not None:
            return ChatStream.of_response(served, ctx, self._finish, request.include_usage)
        route = ctx.route = Route(request.model)

        async def attempt(member: Member, timeouts: Timeouts) -> ChatStream:
            target = member.target
            prepared, route.dropped_params = self.fit.chat(request, target)
            await target.adapter.prepare_credentials(self.http)
            try:
                stream = await open_chat_stream(
                    self.http, target.adapter, prepared, target.model, ctx, self._finish, timeouts
                )
            except ProviderError as exc:
                _spent(route, member, exc)
                raise
            stream.on_finish(self._stream_ended(member.state))
            return stream

        try:
            decision = self.router.decide(request.model, request, ctx)
            stream = await self.router.run(decision, route, attempt, stream=True)
        except UniInferError as exc:
            ctx.error = exc
            await self._finish(ctx)
            raise
        except asyncio.CancelledError:  # the caller left before the first chunk
            ctx.error = _cancelled()
            await self._finish(ctx)
            raise
        ctx.ttft = time.perf_counter() - ctx.started
        return stream

    def _stream_ended(self, state: DeploymentState) -> Callable[[ChatStream], None]:
        # the state object itself, not its label: a direct route's state evicted and made
        # again while this stream was open must not have its in-flight count taken down
        def ended(stream: ChatStream) -> None:
            usage = stream.ctx.usage
            cancelled = isinstance(stream.ctx.error, RequestCancelledError)
            state.stream_ended(
                tokens=usage.total_tokens if usage else 0, failed=stream.failed, cancelled=cancelled
            )

        return ended

    # --- embeddings ---------------------------------------------------------------------

    async def embed(self, request: EmbeddingRequest, ctx: RequestContext | None = None) -> EmbeddingResponse:
        """Embeddings through the router, like chat."""
        ctx = ctx or RequestContext("embeddings")
        await self._run_before(ctx)
        route = ctx.route = Route(request.model)

        served_by: DeploymentState | None = None

        async def attempt(member: Member, timeouts: Timeouts) -> EmbeddingResponse:
            nonlocal served_by
            served_by = member.state
            adapter = member.target.adapter
            prepared, route.dropped_params = self.fit.embeddings(request, adapter)
            await adapter.prepare_credentials(self.http)
            upstream = adapter.embed_request(prepared, member.target.model)
            resp = await self.http.send(upstream, timeouts, member.target.provider)
            if resp.status >= 400:
                raise adapter.parse_error(resp.status, resp.headers, resp.body)
            response = adapter.parse_embed(resp.body, member.target.model)
            _check_vectors(response, request, member.target.provider)
            return response

        try:
            decision = self.router.decide(request.model, request, ctx)
            response = await self.router.run(decision, route, attempt, one_model=True)
        except UniInferError as exc:
            ctx.error = exc
            await self._finish(ctx)
            raise
        except asyncio.CancelledError:
            ctx.error = _cancelled()
            await self._finish(ctx)
            raise
        used = response.usage
        if used is not None:  # metered, and counted against the deployment's tpm, like chat
            ctx.usage = Usage(prompt_tokens=used.prompt_tokens, total_tokens=used.total_tokens)
            if served_by is not None:
                served_by.count_tokens(used.total_tokens)
        await self._finish(ctx)
        return response.as_base64() if request.encoding_format == "base64" else response

    # --- models ---------------------------------------------------------------------------

    def list_models(self) -> ModelList:
        """Configured model names (groups, then experiments' names), then ``provider/*`` for
        every known provider, unless ``settings.allow_direct_routing`` is off (callers cannot
        route ``provider/model`` then)."""
        cards = [
            ModelCard(id=name, owned_by=group.members[0].target.provider)
            for name, group in self.router.groups.items()
        ]
        cards += [
            ModelCard(id=exp.model, owned_by="uniinfer")
            for exp in self.config.routing.experiments
            if exp.model not in self.router.groups
        ]
        if self.config.settings.allow_direct_routing:
            cards += [
                ModelCard(id=f"{s.name}/*", owned_by=s.type, available=s.available)
                for s in self.provider_status()
            ]
        return ModelList(data=cards)

    async def retrieve_model(self, model: str) -> ModelCard:
        """One model's card (``GET /v1/models/{model}``): a listed name, or any model that routes.

        ``provider/model`` of a configured provider routes even if no list names
        it; anything else raises :class:`ModelNotFoundError` saying why. For a local
        server's model, its server is asked, as :meth:`discover_models` does: the card
        says unavailable when nothing answers there or the server has no such model.
        """
        card = next((c for c in self.list_models().data if c.id == model), None)
        if card is None:
            card = ModelCard(id=model, owned_by=self.router.group(model).members[0].target.provider)
        provider, _, name = model.partition("/")
        adapter = self._adapters.get(provider)
        if adapter is None or not card.available or adapter.models_request() is None:
            return card
        served = await self.discovery.models(provider, adapter)
        # Ollama serves only the models it has (others are a 404); other servers may load a model
        # on demand or answer any name (llama.cpp), so their list is not the last word
        missing = self.config.provider_type(provider) == "ollama" and name != "*" and bool(served)
        if served is None or (missing and not {name, f"{name}:latest"} & set(served or ())):
            return card.model_copy(update={"available": False})
        return card

    async def discover_models(self) -> ModelList:
        """:meth:`list_models` plus the models local servers report (Ollama's ``/api/tags``,
        an OpenAI-compatible server's ``/models``).

        Discovery is never an error: a server that does not answer within a few seconds, or
        answers something else, is skipped; a local server nothing listens for (or that does
        not answer) has its ``provider/*`` entry listed unavailable (a request to it would fail).
        Servers' lists are remembered briefly (:mod:`uniinfer.discovery`). Without direct
        routing, nothing is asked: callers could not route the models found.
        """
        listed = self.list_models()
        if not self.config.settings.allow_direct_routing:
            return listed
        names = list(self._adapters)
        found = await asyncio.gather(*(self.discovery.models(n, self._adapters[n]) for n in names))
        down = {f"{name}/*" for name, models in zip(names, found, strict=True) if models is None}
        cards = [
            card.model_copy(update={"available": False}) if card.id in down else card for card in listed.data
        ]
        extra = [
            ModelCard(id=f"{name}/{model}", owned_by=name)
            for name, models in zip(names, found, strict=True)
            for model in models or ()
        ]
        named = len(listed.data) - len(self.provider_status())
        return ModelList(data=[*cards[:named], *extra, *cards[named:]])

    # --- stages & lifecycle -------------------------------------------------------------

    async def _run_before(self, ctx: RequestContext) -> ChatResponse | None:
        for stage in self._before:
            served = await stage.before(ctx)
            if served is not None:
                return served
        return None

    async def _finish(self, ctx: RequestContext) -> None:
        """After a request: experiment outcomes, then the after-stages."""
        route = ctx.route
        # a request its caller cut says nothing of its variant: neither success nor error
        cut = isinstance(ctx.error, RequestCancelledError)
        if route is not None and route.experiment is not None and route.variant is not None and not cut:
            # answered by a fallback group, the variant's own group failed: an error of the
            # variant's, whose latency and cost are another group's (not the variant's to report)
            fell_back = bool(route.fallback_groups)
            usage = None if fell_back else ctx.usage
            self.router.experiments.record(
                route.experiment,
                route.variant,
                ctx.request_id,
                latency_s=time.perf_counter() - ctx.started,
                ttft_s=ctx.ttft,
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.output_tokens if usage else 0,
                cost_usd=None if fell_back else route.cost(usage),
                error=ctx.error is not None or fell_back,
            )
        for stage in self._after:
            await stage.after(ctx)

    async def aclose(self) -> None:
        await self.discovery.aclose()
        await self.http.aclose()


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    """What a non-streaming answer becomes: from the provider's body, or from a stage's response."""

    parse: Callable[[ProviderAdapter, bytes, str], tuple[T, Usage | None]]
    of_response: Callable[[ChatResponse], T]


def _parse_modelled(adapter: ProviderAdapter, body: bytes, model: str) -> tuple[ChatResponse, Usage | None]:
    response = adapter.parse_chat(body, model)
    return response, response.usage


def _parse_json(adapter: ProviderAdapter, body: bytes, model: str) -> tuple[bytes, Usage | None]:
    forwarded = adapter.chat_json(body, model)
    if forwarded is not None:
        return forwarded
    response = adapter.parse_chat(body, model)
    return _response_json(response), response.usage


def _response_json(response: ChatResponse) -> bytes:
    return response.__pydantic_serializer__.to_json(response, exclude_none=True)


_MODELLED: _Answer[ChatResponse] = _Answer(_parse_modelled, lambda response: response)
_JSON: _Answer[bytes] = _Answer(_parse_json, _response_json)


def _longest_connect(config: Config) -> float:
    """How long a host name's lookup may take: the longest ``timeout.connect`` configured (one
    resolver serves every provider; the default when none is configured)."""
    return max((entry.timeout.connect for entry in config.providers.values()), default=Timeouts().connect)


def _log_breaker_change(deployment: str, old: BreakerState, new: BreakerState) -> None:
    level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
    log.log(level, "circuit of %s: %s -> %s", deployment, old.value, new.value)


def _spent(route: Route, member: Member, error: ProviderError) -> None:
    """An attempt's answer refused after the provider produced (and billed) it: its tokens on
    the route for the usage stage, and against the deployment's tokens-per-minute."""
    if error.usage is not None:
        route.spent += ((member.target.label, error.usage),)
        member.state.count_tokens(error.usage.total_tokens)


def _cancelled() -> RequestCancelledError:
    return RequestCancelledError("the caller went away before the answer")


def _check_vectors(response: EmbeddingResponse, request: EmbeddingRequest, provider: str) -> None:
    """An answer of one vector per input, all of one size, of the size asked for: else a 502
    (vectors would pair with the wrong inputs, or not fit the caller's index: servers that
    ignore ``dimensions``, such as llama.cpp's, answer their model's full size)."""
    vectors = response.data
    if len(vectors) != request.count:
        raise ProviderResponseError(
            f"{provider}: {len(vectors)} embeddings for {request.count} inputs", provider=provider
        )
    sizes = {len(v.embedding) for v in vectors if isinstance(v.embedding, list)}
    if len(sizes) > 1:
        found = ", ".join(str(size) for size in sorted(sizes))
        raise ProviderResponseError(
            f"{provider}: embeddings of {found} dimensions in one answer", provider=provider
        )
    wanted = request.dimensions
    if wanted is not None and sizes and sizes != {wanted}:
        # a healthy server that does not take dimensions: a target mismatch, not its failure
        raise UnsupportedParamError(
            f"provider '{provider}' answered embeddings of {sizes.pop()} dimensions where {wanted} were "
            "asked for: it does not take 'dimensions' for this model",
            param="dimensions",
            provider=provider,
        )
