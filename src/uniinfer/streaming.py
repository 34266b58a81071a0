"""A chat stream from one upstream response, as OpenAI ``chat.completion.chunk`` objects.

:func:`open_chat_stream` sends the request and reads until the first chunk
has been decoded, so that every failure before the caller sees a byte (an
error status, a refused or dropped connection, an early cut) is raised while
the gateway can still fall back to the next deployment.

:class:`ChatStream` then hands out chunks as they arrive. It always learns
the usage (adapters ask the provider for it) and records it in the request
context; the final usage chunk, with empty ``choices``, reaches the caller
only when ``stream_options.include_usage`` asked for it.

A provider already speaking OpenAI's format may hand events on as
:class:`~uniinfer.types.RawEvents` (its SSE, checked but not re-modelled):
:meth:`ChatStream.sse_batches` forwards them as they came,
:meth:`ChatStream.json_batches` as each event's JSON, iterating the stream
models them on demand, so each caller pays only for what it uses.

Closing is explicit and idempotent (``aclose``, also via ``async with``): a
stream read to its end returns its connection to the pool, one abandoned
half-way (the caller went away, or an error) closes it, so nothing keeps
reading for a caller who left. One closed right after its answer finished (a
``finish_reason``: clients stop there) is read on for a moment, for the usage
chunk that follows the finish, so that what the provider billed is metered.
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import NoReturn

from uniinfer.errors import (
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RequestCancelledError,
    UniInferError,
    forget_traceback,
)
from uniinfer.http import HttpClient, StreamingResponse, Timeouts
from uniinfer.providers.base import PartialStreamError, ProviderAdapter, StreamDecoder
from uniinfer.providers.openai_stream import OpenAIStreamDecoder
from uniinfer.stages import RequestContext
from uniinfer.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    ChunkDelta,
    RawEvents,
    StreamItem,
    ToolCallDelta,
    Usage,
)
from uniinfer.types.chat import FunctionCallDelta

__all__ = ["ChatStream", "open_chat_stream"]

log = logging.getLogger("uniinfer.gateway")

OnDone = Callable[[RequestContext], Awaitable[None]]

#: How long, and for how many reads, a stream closed at its answer's finish is read on for
#: its usage (:meth:`ChatStream.aclose`).
DRAIN_SECONDS = 0.5
_DRAIN_READS = 8
#: A non-null ``finish_reason`` in a run of relayed events.
_FINISHED = re.compile(rb'"finish_reason":\s*"')


class ChatStream:
    """Async iterator of chunks; ``aclose()`` (or ``async with``) releases the upstream."""

    def __init__(
        self,
        ctx: RequestContext,
        on_done: OnDone | None,
        include_usage: bool,
        *,
        http: HttpClient | None = None,
        upstream: StreamingResponse | None = None,
        decoder: StreamDecoder | None = None,
        scrub: Callable[[UniInferError], None] | None = None,
    ) -> None:
        self.ctx = ctx
        #: The after-stages, run once when the stream ends; None while it is being primed.
        self._on_done = on_done
        self._include_usage = include_usage
        self._http = http
        self._upstream = upstream
        self._decoder = decoder
        #: Redacts the provider's credentials from a failure (ProviderAdapter.scrub).
        self._scrub = scrub
        self._pending: deque[StreamItem] = deque()
        self._eof = upstream is None
        #: An error that ended the upstream after events not yet handed out: raised after them.
        self._failure: UniInferError | None = None
        self._done = False
        self._on_finish: list[Callable[[ChatStream], None]] = []
        #: The latest usage the provider reported before its totals (``ChatChunk.early_usage``):
        #: what a stream cut or failed before its end is metered at (the provider billed it).
        self._so_far: Usage | None = None
        #: The latest chunk or run of events taken from the upstream: whether the answer had
        #: finished when the caller closed the stream (see :meth:`aclose`).
        self._last: StreamItem | None = None
        #: A read of the upstream is under way (a task iterating the stream waits in it).
        self._reading = False

    def on_finish(self, callback: Callable[[ChatStream], None]) -> None:
        """Call ``callback(stream)`` once when the stream ends, fails or is closed."""
        self._on_finish.append(callback)

    @classmethod
    def of_response(
        cls, response: ChatResponse, ctx: RequestContext, on_done: OnDone, include_usage: bool
    ) -> ChatStream:
        """A stream replaying a complete response (a stage answered, e.g. from a cache)."""
        stream = cls(ctx, on_done, include_usage)
        for chunk in response_to_chunks(response):
            stream._accept(chunk)
        return stream

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        item = await self._next()
        if isinstance(item, ChatChunk):
            return item
        try:
            first, *rest = self._model(item)
        except ProviderResponseError as error:  # nothing after it comes out: the stream ends here
            self._pending.clear()
            self._keep_failure(error)
            await self._raise_failure()
        except _BadChunkError as bad:  # the chunks before the bad one, then the failure
            self._pending.clear()
            self._keep_failure(bad.error)
            first, *rest = bad.before
        self._pending.extendleft(reversed(rest))
        return first

    async def sse_batches(self) -> AsyncIterator[bytes]:
        """The chunks as OpenAI's SSE (``data: {json}`` and a blank line each), in batches (see
        :meth:`batches`).

        Modelled chunks leave ``None`` fields out; passed-through events are as
        the provider sent them. While the decoder can pass reads on as they
        came (``pass_on``: an OpenAI-format provider), a read of one plain
        event, the usual read of a token stream, is relayed for the cost of
        its check: no chunk object, no queue.
        """
        usage = self._include_usage
        upstream = self._upstream
        pass_on: Callable[[bytes], bytes | None] | None = getattr(self._decoder, "pass_on", None)
        while True:
            if pass_on is not None and not self._pending and not self._eof and self._failure is None:
                assert upstream is not None
                data = await self._read()
                if data is None or self._failure is not None:  # failed, or cancelled while it read
                    continue
                if data and not upstream.at_eof():
                    sse = pass_on(data)
                    if sse is not None:
                        yield sse
                        continue
                self._take(data)
                continue
            try:
                item = await self._next()
            except StopAsyncIteration:
                return
            if self._pending:
                body = b"".join([_sse(i, usage) for i in self._with_pending(item) if not _silent(i)])
            else:
                body = b"" if _silent(item) else _sse(item, usage)
            if body:
                yield body

    async def json_batches(self) -> AsyncIterator[list[bytes]]:
        """The chunks as OpenAI JSON, one item per chunk, in batches (see :meth:`batches`).

        Modelled chunks leave ``None`` fields out; passed-through ones are as
        the provider sent them.
        """
        usage = self._include_usage
        while True:
            try:
                item = await self._next()
            except StopAsyncIteration:
                return
            batch: list[bytes] = []
            for i in self._with_pending(item):
                if isinstance(i, RawEvents):
                    batch += i.payloads()
                elif not _silent(i):
                    batch.append(_json(i, usage))
            if batch:
                yield batch

    async def batches(self) -> AsyncIterator[list[ChatChunk]]:
        """The chunks in batches: each the next chunk and every chunk already decoded behind it.

        A provider often sends several events at once: a caller can write what
        they render to together, without waiting for more; once
        :attr:`drained` is true, the batch is the last one.
        """
        while True:
            try:
                item = await self._next()
            except StopAsyncIteration:
                return
            batch: list[ChatChunk] = []
            for i in self._with_pending(item):
                try:
                    if isinstance(i, ChatChunk):
                        batch.append(i)
                    else:
                        batch += self._model(i)
                except _BadChunkError as bad:
                    batch += bad.before
                    self._keep_failure(bad.error)
                    break
                except ProviderResponseError as error:
                    # the chunks before it still go out; then the next step raises it
                    self._keep_failure(error)
                    break
            if batch:
                yield batch

    def _with_pending(self, item: StreamItem) -> list[StreamItem]:
        batch = [item]
        pending = self._pending
        while pending:
            batch.append(pending.popleft())
        return batch

    @property
    def drained(self) -> bool:
        """Everything the upstream sent has been handed out: the caller can end its response.

        The after-stages still run when iteration reaches the end (or on ``aclose``).
        """
        return self._eof and not self._pending and self._failure is None

    async def _next(self) -> StreamItem:
        while not self._pending:
            if self._failure is not None:
                await self._raise_failure()
            if self._done:  # closed (by another task, say): the end, as for a closed generator
                raise StopAsyncIteration
            if self._eof:
                await self._finish(None)
                raise StopAsyncIteration
            await self._pull()
        return self._pending.popleft()

    def _model(self, raw: RawEvents) -> list[ChatChunk]:
        """The events as chunks; one of the wrong shape raises ProviderResponseError, or
        :class:`_BadChunkError` when chunks came before it."""
        chunks: list[ChatChunk] = []
        for json in raw.payloads():
            try:
                chunks.append(ChatChunk.model_validate_json(json))
            except ValueError as exc:
                if chunks:
                    raise _BadChunkError(chunks, self._shape_error(json, exc)) from exc
                raise self._shape_error(json, exc) from exc
        return chunks

    def _shape_error(self, json: bytes, cause: ValueError) -> ProviderResponseError:
        name = self._upstream_name()
        error = ProviderResponseError(
            f"{name}: unexpected stream chunk shape",
            provider=name,
            upstream_body=json[:512].decode("utf-8", "replace"),
        )
        error.__cause__ = cause
        return error

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop early: close the upstream connection and run the after-stages once.

        Closed before its end, the stream is recorded as ``request_cancelled`` (the
        caller left; the provider has billed the prompt), which is no failure of
        the deployment's (:attr:`failed` stays false).
        """
        error = self._failure
        if error is None and not self._eof and not self._done:
            # the usage chunk is on its way: wait a moment for it (not when another task is
            # reading the stream: its read is the one under way; it is closed under it)
            if self._answered() and not self._reading:
                try:
                    await self._drain()
                except asyncio.CancelledError:  # cut while draining: closed all the same
                    await self._finish(RequestCancelledError("the stream was cancelled as it closed"))
                    raise
            if not self._eof or self._failure is not None:
                error = RequestCancelledError("the caller closed the stream before its end")
        await self._finish(error)

    def _answered(self) -> bool:
        """Whether the last thing the upstream sent finished an answer (a ``finish_reason``).

        A decoder that relays reads as they came (``pass_on``) says so itself: what it relayed
        never reaches this stream's ``_last``.
        """
        answered: Callable[[], bool] | None = getattr(self._decoder, "answered", None)
        if answered is not None:
            return answered()
        last = self._last
        if isinstance(last, RawEvents):
            return _FINISHED.search(last.sse) is not None
        return last is not None and any(c.finish_reason is not None for c in last.choices)

    async def _drain(self) -> None:
        """Read what is left of a finished answer, for its usage (the caller stopped at the
        finish, as clients do: the usage chunk comes after it). Bounded: a few reads within
        :data:`DRAIN_SECONDS`; what is read is not handed out. At its end the connection goes
        back to the pool and the stream counts as whole; otherwise it is closed as before."""
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                for _ in range(_DRAIN_READS):
                    if self._eof or self._failure is not None:
                        break
                    await self._pull()
        except TimeoutError:
            pass
        self._pending.clear()

    async def cancel(self, error: RequestCancelledError) -> None:
        """End the stream from outside (its client closed): iterating it from now on raises ``error``.

        As :meth:`aclose`, with ``error`` as the record, and chunks already decoded
        but not handed out dropped: nothing comes out of a stream after its close.
        A stream that has ended already is left as it is.
        """
        if self._done:
            return
        self._pending.clear()
        forget_traceback(error)  # kept and raised again on each later step: no frames held
        self._failure = error
        await self._finish(error)

    def __del__(self) -> None:
        # The safety net for a stream dropped without aclose(): its connection goes, and
        # its deployment's in-flight count with it, so routing does not skew. The
        # after-stages (usage) cannot run here: nothing can be awaited in a finaliser.
        if self._done or self._on_done is None:
            return
        self._done = True
        if self.ctx.error is None:  # its caller left it: no verdict on the deployment's health
            self.ctx.error = RequestCancelledError("the caller dropped the stream before its end")
        try:
            if self._upstream is not None and self._http is not None:
                self._http.close_stream(self._upstream, complete=False)
            for callback in self._on_finish:
                callback(self)
            warnings.warn(
                f"request {self.ctx.request_id}: a stream was dropped without being closed; close it "
                "(aclose() or `async with`) so that its usage is recorded",
                ResourceWarning,
                stacklevel=1,
            )
        except Exception:  # a finaliser must not raise (interpreter shutdown, a closed loop...)
            log.debug("closing a dropped stream failed", exc_info=True)

    async def _prime(self) -> None:
        """Read until the first chunk is decoded (or the stream ended)."""
        while not self._pending and not self._eof and self._failure is None:
            await self._pull()
        if self._failure is not None:  # nothing handed out yet: the gateway can still fall back
            await self._raise_failure()

    async def _pull(self) -> None:
        """Read and decode the upstream's next bytes; a failure is kept for :meth:`_next` to raise.

        Events decoded before a failure (a body that ends without its end
        marker, say) are handed out first, then the failure is raised.
        """
        data = await self._read()
        if data is not None:
            self._take(data)

    async def _read(self) -> bytes | None:
        """The upstream's next bytes (``b""``: its end); None when the read failed (the failure kept)."""
        assert self._upstream is not None
        self._reading = True
        try:
            return await self._upstream.read_chunk()
        except UniInferError as exc:
            if not self._done:  # else the stream was closed under this read: no fault of the provider's
                self._keep_failure(exc)
            return None
        finally:
            self._reading = False

    def _take(self, data: bytes) -> None:
        """Decode a read (``b""``: the end) into the pending chunks, or keep the failure it meant."""
        assert self._upstream is not None
        assert self._decoder is not None
        upstream = self._upstream
        try:
            chunks = self._decoder.feed(data) if data else []
            # the end often comes with the last bytes: no read just to learn it
            if not data or upstream.at_eof():
                self._eof = True
                for chunk in chunks:
                    self._accept(chunk)
                chunks = self._decoder.close()
        except UniInferError as exc:
            self._keep_failure(exc)
            return
        except PartialStreamError as exc:  # events, then the failure, in one read
            for chunk in exc.items:
                self._accept(chunk)
            self._keep_failure(exc.error)
            return
        except Exception as exc:  # a decoder must never turn garbage into a crash
            name = self._upstream_name()
            error = ProviderResponseError(f"{name}: undecodable stream data ({exc})", provider=name)
            error.__cause__ = exc
            self._keep_failure(error)
            return
        for chunk in chunks:
            self._accept(chunk)

    def _keep_failure(self, error: UniInferError) -> None:
        # Its traceback runs through this stream's frames: kept on the stream, it would
        # make a reference cycle (raising it again gives it a fresh one).
        forget_traceback(error)
        if self._scrub is not None:
            self._scrub(error)
        self._failure = error

    async def _raise_failure(self) -> NoReturn:
        error = self._failure
        assert error is not None
        await self._finish(error)
        raise error

    def _accept(self, chunk: StreamItem) -> None:
        self._last = chunk
        if not isinstance(chunk, RawEvents) and chunk.early_usage is not None:
            self._so_far = chunk.early_usage
        # a passed-on event carries usage only as a usage chunk (empty choices)
        if chunk.usage is not None and (isinstance(chunk, RawEvents) or not chunk.choices):
            self.ctx.usage = chunk.usage
            if not self._include_usage:
                return
        self._pending.append(chunk)

    def _upstream_name(self) -> str:
        route = self.ctx.route
        return route.provider if route and route.provider else "provider"

    async def _finish(self, error: UniInferError | None) -> None:
        if self._done:
            return
        self._done = True
        if self._upstream is not None and self._http is not None:
            self._http.close_stream(self._upstream, complete=self._eof and error is None)
        on_done = self._on_done
        if on_done is None:
            # Failed while priming: the error is the fallback loop's, not the request's (the
            # request may yet be served by another target, and its context is shared).
            return
        if error is not None:
            self.ctx.error = error
        if self.ctx.usage is None:  # cut or failed before its totals: the counts so far
            billed = error.usage if isinstance(error, ProviderError) else None  # a failed generation's
            self.ctx.usage = billed or self._so_far
        for callback in self._on_finish:
            callback(self)
        if error is not None:
            await on_done(self.ctx)
            return
        try:
            await on_done(self.ctx)
        except UniInferError as exc:
            # The answer is whole (or the caller left): an after-stage failing now, metering
            # say, is the operator's to hear about, not a reason to fail the caller's stream.
            log.error("request %s: an after-stage failed once the stream ended: %s", self.ctx.request_id, exc)

    @property
    def failed(self) -> bool:
        """Ended by an upstream error (not by the caller closing it early)."""
        error = self.ctx.error
        return error is not None and not isinstance(error, RequestCancelledError)


async def open_chat_stream(
    http: HttpClient,
    adapter: ProviderAdapter,
    request: ChatRequest,
    model: str,
    ctx: RequestContext,
    on_done: OnDone,
    timeouts: Timeouts | None = None,
) -> ChatStream:
    """Send a streaming request; return once the first chunk is in hand (or raise).

    A ``timeouts.head`` (what the request had left of its deadline) bounds the wait for the
    first chunk, the response head included: a server that answers its head at once, then
    nothing for a long while (a long prompt's prefill; keep-alive comments), is given up when
    the deadline runs out, not ``timeout.total`` later. One timer for both.
    """
    timeouts = timeouts or adapter.endpoint.timeouts
    if timeouts.head is None:
        return await _open_chat_stream(http, adapter, request, model, ctx, on_done, timeouts)
    limit = asyncio.timeout(timeouts.head)
    try:
        async with limit:
            return await _open_chat_stream(http, adapter, request, model, ctx, on_done, timeouts)
    except TimeoutError:
        if not limit.expired():  # aiohttp's own timeouts are ProviderTimeoutErrors: not this
            raise
        raise ProviderTimeoutError(
            f"{adapter.name}: timed out: the stream's first event did not come within what was left of "
            "the request's deadline",
            provider=adapter.name,
        ) from None


async def _open_chat_stream(
    http: HttpClient,
    adapter: ProviderAdapter,
    request: ChatRequest,
    model: str,
    ctx: RequestContext,
    on_done: OnDone,
    timeouts: Timeouts,
) -> ChatStream:
    upstream_request = adapter.chat_request(request, model, stream=True)
    upstream = await http.open_stream(upstream_request, timeouts, adapter.name)
    try:
        if upstream.status >= 400:
            body = await upstream.read()
            raise adapter.parse_error(upstream.status, upstream.headers, body)
        # While priming, a failure belongs to the gateway's fallback loop, which
        # reports it; the after-stages run once the stream is handed out.
        decoder = adapter.stream_decoder(model)
        if request.n is not None and request.n > 1 and isinstance(decoder, OpenAIStreamDecoder):
            decoder.one_choice = False  # its end needs [DONE] (see OpenAIStreamDecoder.close)
        stream = ChatStream(
            ctx,
            None,
            request.include_usage,
            http=http,
            upstream=upstream,
            decoder=decoder,
            scrub=adapter.scrub,
        )
        await stream._prime()
    except BaseException:
        http.close_stream(upstream, complete=False)
        raise
    stream._on_done = on_done
    return stream


class _BadChunkError(Exception):
    """Passed-on events of which one is no chunk: ``before`` it, then ``error``."""

    def __init__(self, before: list[ChatChunk], error: ProviderResponseError) -> None:
        super().__init__(error.message)
        self.before = before
        self.error = error


def _silent(item: StreamItem) -> bool:
    """Whether a modelled chunk has nothing for an OpenAI client: it carries only signed thinking
    (the signature that completes Claude's thinking, which the Anthropic ingress needs), no text,
    finish, logprobs or usage. (One attribute read per choice for any other chunk.)"""
    if isinstance(item, RawEvents) or item.usage is not None or not item.choices:
        return False
    for choice in item.choices:
        delta = choice.delta
        if delta.signed_thinking is None or choice.finish_reason is not None or choice.logprobs is not None:
            return False
        if delta.model_fields_set - {"signed_thinking"}:
            return False
    return True


def _sse(item: StreamItem, include_usage: bool) -> bytes:
    """The chunks of ``item`` as OpenAI's SSE events."""
    if isinstance(item, RawEvents):
        return item.sse
    return b"data: " + _json(item, include_usage) + b"\n\n"


def _json(item: ChatChunk, include_usage: bool) -> bytes:
    """The chunk as OpenAI JSON. One asked for with ``include_usage`` carries ``"usage": null``
    until the usage chunk, as the spec has every chunk of such a stream do."""
    data = item.model_dump_json(exclude_none=True).encode()
    return data[:-1] + b',"usage":null}' if include_usage and item.usage is None else data


def response_to_chunks(response: ChatResponse) -> list[ChatChunk]:
    """The chunks a stream of ``response`` would have carried, usage last."""
    chunks: list[ChatChunk] = []

    def chunk(choices: list[ChunkChoice], **extra: object) -> ChatChunk:
        return ChatChunk(
            id=response.id, created=response.created, model=response.model, choices=choices, **extra
        )

    for choice in response.choices:
        msg = choice.message
        tool_deltas = [
            ToolCallDelta(
                index=i,
                id=call.id,
                type="function",
                function=FunctionCallDelta(name=call.function.name, arguments=call.function.arguments),
            )
            for i, call in enumerate(msg.tool_calls or ())
        ]
        delta = ChunkDelta(
            role="assistant",
            content=msg.content,
            reasoning_content=msg.reasoning_content,
            tool_calls=tool_deltas or None,
        )
        chunks.append(chunk([ChunkChoice(index=choice.index, delta=delta)]))
        chunks.append(
            chunk([ChunkChoice(index=choice.index, delta=ChunkDelta(), finish_reason=choice.finish_reason)])
        )
    if response.usage is not None:
        chunks.append(chunk([], usage=response.usage))
    return chunks
