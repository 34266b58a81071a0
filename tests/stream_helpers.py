"""Test doubles for a chat stream's upstream: a body in scripted reads, and a pool that records closes."""

from __future__ import annotations

from uniinfer.providers.base import Endpoint
from uniinfer.providers.registry import default_registry
from uniinfer.stages import RequestContext
from uniinfer.streaming import ChatStream, OnDone


class ScriptedUpstream:
    """An upstream response whose body arrives in the given reads (``at_eof`` after the last).

    End the script with ``b""`` for an end that comes in a read of its own.
    """

    def __init__(self, reads: list[bytes]) -> None:
        self._reads = list(reads)

    async def read_chunk(self) -> bytes:
        assert self._reads, "read past the end of the body"
        return self._reads.pop(0)

    def at_eof(self) -> bool:
        return not self._reads


class RecordingPool:
    """Stands in for the HTTP client: records how each stream's connection was given back."""

    def __init__(self) -> None:
        self.closed: list[bool] = []

    def close_stream(self, upstream: object, *, complete: bool) -> None:
        self.closed.append(complete)


async def _nothing(ctx: RequestContext) -> None:
    return None


#: The upstream credential of :func:`openai_stream`'s adapter.
API_KEY = "sk-test-stream-helpers-0123"


def openai_stream(
    reads: list[bytes],
    *,
    pool: RecordingPool | None = None,
    on_done: OnDone = _nothing,
    ctx: RequestContext | None = None,
    include_usage: bool = False,
    provider: str = "openai",
) -> ChatStream:
    """A ChatStream decoding ``reads`` as the gateway would build it (OpenAI's format unless ``provider``)."""
    registry = default_registry()
    adapter = registry.create(
        registry.get(provider),
        Endpoint(base_url="http://127.0.0.1:9/v1", api_key=API_KEY),
    )
    return ChatStream(
        ctx or RequestContext("chat"),
        on_done,
        include_usage,
        http=pool or RecordingPool(),  # type: ignore[arg-type]
        upstream=ScriptedUpstream(reads),  # type: ignore[arg-type]
        decoder=adapter.stream_decoder("m"),
        scrub=adapter.scrub,
    )
