"""The in-process SDK: ``AsyncClient`` and ``Client`` over the same gateway as the server.

``AsyncClient`` is the implementation. ``Client`` is its synchronous face: it
runs the async client on a private event loop in a background thread and
waits for each call, so there is one copy of the logic and the same pooled
HTTP client serves every call. Both close their resources when used as
context managers (or by ``close()`` / ``aclose()``).

    async with AsyncClient(config) as client:
        reply = await client.acomplete(model="openai/gpt-4o-mini", messages=[...])

    with Client(config) as client:
        for chunk in client.stream(model="anthropic/claude-sonnet-4-5", messages=[...]):
            print(chunk.choices[0].delta.content or "", end="")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from uniinfer.config import Config, load_config
from uniinfer.gateway import Gateway
from uniinfer.streaming import ChatStream
from uniinfer.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelList,
)
from uniinfer.validation import parse_request

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")


class AsyncClient:
    """Chat, streams and embeddings in-process, with the gateway's routing and fallback."""

    def __init__(self, config: Config | None = None, *, gateway: Gateway | None = None) -> None:
        self.gateway = gateway or Gateway(config if config is not None else load_config())

    async def acomplete(self, request: ChatRequest | None = None, /, **params: Any) -> ChatResponse:
        """A chat completion; pass a :class:`ChatRequest`, its fields as keywords, or both (keywords win)."""
        chat = _chat_request(request, params, stream=False)
        return await self.gateway.chat(chat)

    async def astream(self, request: ChatRequest | None = None, /, **params: Any) -> ChatStream:
        """A chat stream: iterate it with ``async for``; close it (or ``async with``) to stop early."""
        chat = _chat_request(request, params, stream=True)
        return await self.gateway.stream(chat)

    async def aembed(self, request: EmbeddingRequest | None = None, /, **params: Any) -> EmbeddingResponse:
        """Embeddings for ``input`` (a string or a list of strings)."""
        embed = _embed_request(request, params)
        return await self.gateway.embed(embed)

    def models(self) -> ModelList:
        return self.gateway.list_models()

    async def aclose(self) -> None:
        await self.gateway.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Client:
    """The synchronous face of :class:`AsyncClient` (same gateway, same logic)."""

    def __init__(self, config: Config | None = None, *, gateway: Gateway | None = None) -> None:
        self._async = AsyncClient(config, gateway=gateway)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="uniinfer-client", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def gateway(self) -> Gateway:
        return self._async.gateway

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this Client is closed")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def complete(self, request: ChatRequest | None = None, /, **params: Any) -> ChatResponse:
        return self._call(self._async.acomplete(request, **params))

    def stream(self, request: ChatRequest | None = None, /, **params: Any) -> Iterator[ChatChunk]:
        """Chunks as they arrive; leaving the loop early closes the upstream stream."""
        stream = self._call(self._async.astream(request, **params))
        try:
            while True:
                try:
                    yield self._call(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._call(stream.aclose())

    def embed(self, request: EmbeddingRequest | None = None, /, **params: Any) -> EmbeddingResponse:
        return self._call(self._async.aembed(request, **params))

    def models(self) -> ModelList:
        return self._async.models()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._call(self._async.aclose())
        finally:  # also when closing the pool failed (or Ctrl-C interrupted it): the thread ends
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _chat_request(request: ChatRequest | None, params: dict[str, Any], *, stream: bool) -> ChatRequest:
    """The request to send: ``request``, its fields overridden by the keywords (checked like a new one)."""
    if request is None:
        params = _as_json(params)
        if stream:
            params["stream"] = True
        return parse_request(ChatRequest, params)
    if params:
        fields = {**request.model_dump(exclude_unset=True, by_alias=True), **params}
        fields.pop("stream", None)
        return _chat_request(None, fields, stream=stream)
    if bool(request.stream) != stream:
        return request.model_copy(update={"stream": stream or None})
    return request


def _embed_request(request: EmbeddingRequest | None, params: dict[str, Any]) -> EmbeddingRequest:
    """As :func:`_chat_request`, for embeddings."""
    if request is not None:
        if not params:
            return request
        params = {**request.model_dump(exclude_unset=True, by_alias=True), **params}
    return parse_request(EmbeddingRequest, _as_json(params))


def _as_json(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword params with tuples as lists, as JSON would carry them.

    The request models are strict, as OpenAI's API is about JSON types; a Python caller's
    ``stop=("a", "b")`` or tuple of messages is still the list it means.
    """
    return {key: _list_tuples(value) for key, value in params.items()}


def _list_tuples(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_list_tuples(item) for item in value]
    if isinstance(value, dict):
        return {key: _list_tuples(item) for key, item in value.items()}
    return value
