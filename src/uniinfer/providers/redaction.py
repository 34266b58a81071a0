"""Taking the gateway's own secrets out of text a provider sent back.

Providers echo credentials in errors: some the whole key, more often a masked
form of it (OpenAI's 401 says ``Incorrect API key provided: sk-proj-****…7654``,
the key's first eight and last four characters). Either reaches the gateway's
caller, who should learn nothing of the gateway's keys, so both go: the key
itself, and any masked token whose visible head or tail is the key's.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact_secret"]

REDACTED = "[redacted]"

#: A token with a run of mask characters in it: ``sk-proj-****7654``, ``sk-ant-...wxyz``, ``AIza…1234``.
_MASKED = re.compile(r"[^\s\"'`,;()<>\[\]{}]*(?:\*{3,}|•{3,}|\.{3,}|…)[^\s\"'`,;()<>\[\]{}]*")
_MASK_RUN = re.compile(r"\*{3,}|•{3,}|\.{3,}|…")
#: Fewer visible characters than this say nothing about a key (and match too much).
_MIN_VISIBLE = 3


def redact_secret(text: str, secret: str | None) -> str:
    """``text`` without ``secret``, whole or masked; the text itself when neither is there."""
    if not secret:
        return text
    if secret in text:
        text = text.replace(secret, REDACTED)
    if "**" in text or "••" in text or ".." in text or "…" in text:
        text = _MASKED.sub(lambda m: _unmasked(m.group(), secret), text)
    return text


def _unmasked(token: str, secret: str) -> str:
    """``token`` redacted if it is ``secret`` with its middle masked (its visible head or tail is the
    secret's); the sentence's full stop or colon after it stays."""
    bare = token.rstrip(".:")
    end = token[len(bare) :]
    if not _MASK_RUN.search(bare):  # the mask was the trailing dots: "Wait..."
        return token
    parts = _MASK_RUN.split(bare)
    head, tail = parts[0], parts[-1]
    if (len(head) >= _MIN_VISIBLE and secret.startswith(head)) or (
        len(tail) >= _MIN_VISIBLE and secret.endswith(tail)
    ):
        return REDACTED + end
    return token
