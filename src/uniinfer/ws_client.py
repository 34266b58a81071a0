"""A client for the gateway's WebSocket streaming endpoint (``/v1/ws``).

Many concurrent streams share one connection; leaving a stream early sends
``cancel`` so the gateway stops the upstream call::

    async with WebSocketClient("ws://127.0.0.1:4000/v1/ws", api_key="sk-...") as ws:
        async for chunk in ws.astream(model="openai/gpt-4o-mini", messages=[...]):
            print(chunk.choices[0].delta.content or "", end="")

Errors arrive as the same typed exceptions the in-process SDK raises: a frame this client
cannot read ends its stream with a ``ProviderResponseError`` (the others go on), a connection
that cannot be made or has closed is a ``ProviderConnectionError``. Chunks wait in memory until
the caller takes them (a slow reader does not slow the server's streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from uniinfer.errors import ProviderConnectionError, ProviderResponseError, UniInferError, error_from_code
from uniinfer.types import ChatChunk

if TYPE_CHECKING:
    import aiohttp

__all__ = ["WebSocketClient"]

_END = object()


class WebSocketClient:
    def __init__(self, url: str, *, api_key: str | None = None) -> None:
        self.url = url
        self._api_key = api_key
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queues: dict[str, asyncio.Queue[Any]] = {}
        self._ids = itertools.count(1)
        #: Why no stream can start any more (the connection closed), once it is so.
        self._gone: ProviderConnectionError | None = None

    async def connect(self) -> None:
        import aiohttp

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(self.url, headers=headers, heartbeat=30)
        except aiohttp.WSServerHandshakeError as exc:
            await self._session.close()
            raise error_from_code(
                "authentication_failed" if exc.status in (401, 403) else "provider_connection_error",
                f"WebSocket handshake failed with HTTP {exc.status}",
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            await self._session.close()
            raise ProviderConnectionError(f"cannot connect to {self.url}: {exc}") from exc
        self._reader = asyncio.create_task(self._read())

    async def astream(self, **params: Any) -> AsyncIterator[ChatChunk]:
        """Stream a chat completion (same parameters as ``AsyncClient.astream``)."""
        if self._ws is None:
            raise RuntimeError("not connected: use 'async with WebSocketClient(...)' or connect()")
        if self._gone is not None or self._ws.closed:
            raise self._gone or ProviderConnectionError("the WebSocket connection closed")
        stream_id = f"s{next(self._ids)}"
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queues[stream_id] = queue
        finished = False
        try:
            frame = {"type": "chat.completions.create", "id": stream_id, "request": params}
            await self._ws.send_str(orjson.dumps(frame).decode())
            while True:
                item = await queue.get()
                if item is _END:
                    finished = True
                    return
                if isinstance(item, UniInferError):
                    finished = True
                    raise item
                yield item
        finally:
            self._queues.pop(stream_id, None)
            if not finished and not self._ws.closed:
                with contextlib.suppress(Exception):
                    await self._ws.send_str(orjson.dumps({"type": "cancel", "id": stream_id}).decode())

    async def _read(self) -> None:
        import aiohttp

        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    frame = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    continue  # no stream to tell: not the server's protocol
                stream_id = frame.get("id") if isinstance(frame, dict) else None
                queue = self._queues.get(stream_id) if isinstance(stream_id, str) else None
                if queue is None:
                    continue
                try:
                    item = _item(frame)
                    if item is not None:
                        queue.put_nowait(item)
                except Exception as exc:  # a frame of this stream's it cannot read: this stream's end
                    queue.put_nowait(ProviderResponseError(f"an unreadable frame from the gateway: {exc}"))
        finally:
            self._gone = ProviderConnectionError("the WebSocket connection closed")
            for queue in self._queues.values():
                queue.put_nowait(self._gone)

    async def aclose(self) -> None:
        try:
            if self._ws is not None:
                await self._ws.close()
            if self._reader is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._reader
        finally:
            if self._session is not None:
                await self._session.close()

    async def __aenter__(self) -> WebSocketClient:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _item(frame: dict[str, Any]) -> Any:
    """What a stream's queue gets for one of its frames: a chunk, the end, or its error."""
    kind = frame.get("type")
    if kind == "chunk":
        return ChatChunk.model_validate(frame["chunk"])
    if kind == "done":
        return _END
    if kind == "error":
        err = frame.get("error", {})
        return error_from_code(
            str(err.get("code")),
            str(err.get("message")),
            param=err.get("param"),
            status=err.get("status"),
            retry_after=err.get("retry_after"),
        )
    return None  # a frame type this client does not know: not for it
