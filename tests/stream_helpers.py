"""Test doubles for a chat stream's upstream: a body in scripted reads, and a pool that records closes."""

from __future__ import annotations


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
