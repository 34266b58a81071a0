"""Taking the gateway's own secrets out of text a provider sent back.

Providers echo credentials in errors: some the whole key, more often a masked
form of it (OpenAI's 401 says ``Incorrect API key provided: sk-proj-****…7654``,
the key's first eight and last four characters). Either reaches the gateway's
caller, who should learn nothing of the gateway's keys, so both go: the key
itself, and any masked token whose visible head or tail is the key's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

__all__ = ["REDACTED", "credential_headers", "redact_secret"]

REDACTED = "[redacted]"

#: A token: a run of characters that are not separators (whitespace, quotes, brackets,
#: punctuation between words, a query string's ``&`` and ``?``; not ``=``, base64's
#: padding). Matched from left to right, each character once: linear in the text's length.
_TOKEN = re.compile(r"[^\s\"'`,;()<>\[\]{}&?]+")
#: A run of mask characters: ``sk-proj-****7654``, ``sk-ant-...wxyz``, ``AIza…1234``.
_MASK_RUN = re.compile(r"\*{3,}|•{3,}|\.{3,}|…")
#: Fewer visible characters than this say nothing about a key (and match too much).
_MIN_VISIBLE = 3


#: Parts of a header's name that say its value is a credential (``Authorization``, ``Cookie``,
#: ``X-Api-Key``, ``X-Tenant-Token``, ``X-Client-Secret``...), compared in lower case.
_CREDENTIAL_NAMES = ("auth", "cookie", "key", "token", "secret", "password", "signature", "session")
#: ``<scheme> <credential>``: an echo may hold the credential alone.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]* (\S+)$")


def credential_headers(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The values of configured ``headers`` that are credentials, by their names, to redact as
    the key is (with a ``Bearer``/``Basic`` value, its credential alone too)."""
    found: list[str] = []
    for name, value in headers.items():
        if value and any(part in name.lower() for part in _CREDENTIAL_NAMES):
            found.append(value)
            scheme = _SCHEME.match(value)
            if scheme is not None:
                found.append(scheme.group(1))
    return tuple(found)


def redact_secret(text: str, secret: str | None) -> str:
    """``text`` without ``secret``, whole or masked; the text itself when neither is there."""
    if not secret:
        return text
    if secret in text:
        text = text.replace(secret, REDACTED)
    if "%" in text:  # echoed from a URL or form: percent-encoded (a key with +, / or =, or any)
        for encoded in {quote(secret, safe=""), quote(secret, safe="-_.~").replace("-", "%2D")}:
            if encoded != secret and encoded in text:
                text = text.replace(encoded, REDACTED)
    if "**" in text or "••" in text or "..." in text or "…" in text:
        text = _TOKEN.sub(lambda m: _unmasked(m.group(), secret), text)
    return text


def _unmasked(token: str, secret: str) -> str:
    """``token`` redacted if it is ``secret`` with its middle (or end) masked: its visible head
    or tail is the secret's. A full stop or colon after a mid-token mask stays."""
    if "**" not in token and "••" not in token and "..." not in token and "…" not in token:
        return token
    bare = token.rstrip(".:")
    end = token[len(bare) :]
    parts = _MASK_RUN.split(bare)
    if len(parts) == 1:  # the only mask is the trailing dots: "sk-proj-ABCDEFGH..." (or "Wait...")
        if not end.startswith("..."):
            return token
        parts, end = [bare, ""], end[3:]
    head, tail = parts[0], parts[-1]
    if (len(head) >= _MIN_VISIBLE and secret.startswith(head)) or (
        len(tail) >= _MIN_VISIBLE and secret.endswith(tail)
    ):
        return REDACTED + end
    return token
