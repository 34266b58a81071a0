"""Ollama's log probabilities as OpenAI's ``choices[].logprobs`` (part of :mod:`uniinfer.providers.ollama`).

Ollama (0.12.11+) lists a token's ``token``, ``logprob``, ``bytes`` and ``top_logprobs`` for every
token the model generated, thinking and tool calls included; OpenAI's ``logprobs.content`` holds
the content's only. For a thinking model the list is cut to the run of tokens whose bytes spell
the content (:func:`content_tokens`). Pure: no I/O.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from uniinfer.providers.translation import logprobs_of, token_logprob

__all__ = ["content_tokens", "logprobs"]


#: Tokens after the content's that may still be in the list: a stop sequence's, cut from the text.
_TRAILING = 8
#: Places the text is found inside tokens, passed over before giving up (a repetitive answer's).
_TRIES = 64


def logprobs(raw: Any, spelling: str | None = None, after: str | None = None) -> dict[str, Any] | None:
    """Ollama's ``logprobs`` list as a choice's OpenAI ``logprobs``; None when there are none.

    ``spelling``: the content of an answer (or line) whose list also holds thinking tokens: the
    list is cut to the tokens that spell it (:func:`content_tokens`; ``after``: the thinking, when a
    call's tokens follow the content's), None where none do. An entry
    not of Ollama's shape is a ValueError (the caller's shape error).
    """
    if not isinstance(raw, list) or not raw:
        return None
    content = [_entry(entry) for entry in raw]
    if spelling is not None:
        cut = content_tokens(content, spelling, after=after)
        if not cut:
            return None
        content = cut
    return logprobs_of(content)


def _entry(entry: Any) -> dict[str, Any]:
    top = entry.get("top_logprobs") if isinstance(entry, dict) else None
    return {
        **_token_logprob(entry),
        "top_logprobs": [_token_logprob(t) for t in (top if isinstance(top, list) else [])],
    }


def content_tokens(
    entries: list[dict[str, Any]], text: str, trailing: int = _TRAILING, after: str | None = None
) -> list[dict[str, Any]] | None:
    """The run of ``entries`` whose bytes spell ``text`` (leading whitespace of its first token
    allowed: the server trims it off the content; its last token may run past the text, where a
    stop sequence was cut inside it); None when there is none.

    Without ``after``: the run that ends last, at most ``trailing`` tokens before the last token
    (a stop sequence's may follow). With ``after`` (the thinking of an answer with a tool call,
    whose tokens follow the content's): the first run past the thinking's bytes, so the text
    said again in the call's arguments is not taken for it. The text is looked for in the
    tokens' bytes joined (C's search), at most :data:`_TRIES` places found inside tokens passed
    over.
    """
    want = text.encode()
    if not want:
        return None
    pieces = [bytes(e["bytes"]) for e in entries]
    ends = list(itertools.accumulate(len(piece) for piece in pieces))  # where each token ends
    joined = b"".join(pieces)
    if after is not None:
        thought = joined.find(after.encode())
        low, high = (0 if thought < 0 else thought + len(after.encode())), len(joined)
    else:
        edge = len(pieces) - trailing - 2  # the run must end in a token after this one
        low, high = (max(ends[edge] - len(want) + 1, 0) if edge >= 0 else 0), len(joined)
    for _ in range(_TRIES):
        at = joined.find(want, low, high) if after is not None else joined.rfind(want, low, high)
        if at == -1:
            return None
        first = bisect.bisect_right(ends, at)  # the token the text starts in
        if not joined[ends[first] - len(pieces[first]) : at].strip():
            return entries[first : bisect.bisect_left(ends, at + len(want)) + 1]
        if after is not None:
            low = at + 1
        else:
            high = at + len(want) - 1
    return None


def _token_logprob(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ValueError("a logprob entry is not an object")
    token, token_bytes, logprob = entry.get("token", ""), entry.get("bytes"), entry.get("logprob")
    if logprob is None:  # Go leaves out a zero where it says omitempty
        logprob = 0.0
    if not isinstance(token, str) or isinstance(logprob, bool) or not isinstance(logprob, int | float):
        raise ValueError("a token that is not text, or a logprob that is not a number")
    if token_bytes is not None and not (
        isinstance(token_bytes, list) and all(isinstance(b, int) and 0 <= b < 256 for b in token_bytes)
    ):
        raise ValueError("token bytes that are not bytes")
    return token_logprob(token, float(logprob), token_bytes)
