"""Incremental stream framers: Server-Sent Events and NDJSON, cut from the bytes as they arrive.

What the provider decoders build on: pure, safe at any byte boundary, no I/O (the bytes come
from :mod:`uniinfer.http`).
"""

from __future__ import annotations

__all__ = ["NDJSONFramer", "SSEBytesFramer", "SSEFramer"]


class SSEBytesFramer:
    """Incremental Server-Sent Events parser (WHATWG rules), safe at any byte boundary.

    ``feed`` returns the complete events so far as ``(event, data)`` pairs:
    ``event`` is text (``""`` when the stream sent none), ``data`` the event's
    bytes as sent, so an event can be passed on without being decoded and
    encoded again (invalid UTF-8 is left for its consumer to repair, as
    :class:`SSEFramer` does). Lines end with LF, CRLF or a lone CR; ``id``,
    ``retry`` and comments are skipped.
    """

    __slots__ = ("_after_cr", "_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._after_cr = False
        self._event = ""
        self._data: list[bytes] = []

    @property
    def idle(self) -> bool:
        """No part of an event is held: the next bytes start a new one."""
        return not (self._buf or self._data or self._event or self._after_cr)

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        if self._data or self._event or self._after_cr or b"\r" in chunk:
            return self._take(self._lines(chunk), [])
        # The usual case, LF line endings between events: cut whole events
        # at blank lines and take a lone ``data:`` line without a line loop.
        # (The buffer never holds a CR: a line cut at one is taken, not kept.)
        buf = self._buf + chunk if self._buf else chunk
        end = buf.rfind(b"\n\n")
        if end == -1:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        head = buf[:end]
        if head.startswith(b"data: "):
            payloads = head[6:].split(b"\n\ndata: ")
            if head.count(b"\n") == 2 * len(payloads) - 2:  # nothing but one data line per event
                return [("", payload) for payload in payloads]
        events: list[tuple[str, bytes]] = []
        for block in head.split(b"\n\n"):
            if block[:5] == b"data:" and b"\n" not in block:
                events.append(("", block[6:] if block[5:6] == b" " else block[5:]))
            else:
                self._take([*block.split(b"\n"), b""], events)
        return events

    def _take(self, lines: list[bytes], events: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Add the events that ``lines`` complete to ``events``; keep a partial one."""
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = self._data = []
                self._event = ""
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line == b"data":
                data.append(b"")
            elif line.startswith(b"event:"):
                value = line[7:] if line[6:7] == b" " else line[6:]
                self._event = value.decode("utf-8", "replace")
            elif line == b"event":
                self._event = ""
        return events

    def close(self) -> list[tuple[str, bytes]]:
        """Flush an event the stream ended without a blank line after."""
        return self.feed(b"\n\n") if self._buf or self._data else []

    def _lines(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        lines: list[bytes] = []
        start = 0
        if self._after_cr:
            # The CR that ended the last feed may be the first half of a CRLF.
            self._after_cr = False
            if buf[:1] == b"\n":
                start = 1
        if b"\r" not in buf:  # the usual case: LF only
            end = buf.find(b"\n", start)
            while end != -1:
                lines.append(buf[start:end])
                start = end + 1
                end = buf.find(b"\n", start)
            self._buf = buf[start:]
            return lines
        size = len(buf)
        while start < size:
            end = buf.find(b"\n", start)
            nxt = end + 1
            cr = buf.find(b"\r", start)
            if cr != -1 and (end == -1 or cr < end):
                end = cr
                if cr == size - 1:
                    self._after_cr = True
                    nxt = size
                else:
                    nxt = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            if end == -1:
                break
            lines.append(buf[start:end])
            start = nxt
        self._buf = buf[start:]
        return lines


class SSEFramer:
    """:class:`SSEBytesFramer` with each event's data decoded as text.

    The SSE standard decodes with replacement: bad bytes never stop a stream.
    """

    __slots__ = ("_framer",)

    def __init__(self) -> None:
        self._framer = SSEBytesFramer()

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        return [(event, data.decode("utf-8", "replace")) for event, data in self._framer.feed(chunk)]

    def close(self) -> list[tuple[str, str]]:
        """Flush an event the stream ended without a blank line after."""
        return [(event, data.decode("utf-8", "replace")) for event, data in self._framer.close()]


class NDJSONFramer:
    """Incremental newline-delimited JSON framer: returns complete lines."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        *lines, self._buf = buf.split(b"\n")
        return [line for line in lines if line.strip()]

    def close(self) -> list[bytes]:
        rest, self._buf = self._buf, b""
        return [rest] if rest.strip() else []
