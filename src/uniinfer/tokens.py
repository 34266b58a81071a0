"""Offline token counting with OpenAI's o200k_base encoding (bundled, never downloaded).

Used where a count is needed and the provider offers none: an estimate for
models of other tokenizers, exact for OpenAI's current models. The encoding
loads on first use (about 0.3 s) and is shared by the process.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

__all__ = ["count_text_tokens", "encoding", "encoding_loaded"]

_O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
# The o200k_base split pattern and special tokens, as tiktoken_ext.openai_public defines them.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@cache
def encoding() -> tiktoken.Encoding:
    import tiktoken

    return tiktoken.Encoding(
        name="o200k_base",
        pat_str=_O200K_PATTERN,
        mergeable_ranks=_ranks(),
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    )


def encoding_loaded() -> bool:
    """Whether :func:`encoding` has loaded (its first call reads and parses 3.6 MB)."""
    return encoding.cache_info().currsize > 0


def _ranks() -> dict[bytes, int]:
    """The bundled BPE ranks, read and checked here: ``tiktoken.load`` would also copy the file
    into its cache directory (``TIKTOKEN_CACHE_DIR``), and fail where that cannot be written."""
    data = resources.files("uniinfer.data").joinpath("o200k_base.tiktoken").read_bytes()
    if hashlib.sha256(data).hexdigest() != _O200K_SHA256:
        raise RuntimeError("uniinfer's bundled o200k_base.tiktoken is corrupted (its sha256 does not match)")
    return {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }


#: Text is counted in pieces of this many characters when it is one piece too many for the
#: encoder (a run of about a million spaces exhausts its regex's backtracking stack).
_PIECE = 10_000


def count_text_tokens(text: str) -> int:
    """The tokens of ``text``; special-token text counts as plain text. A text the encoder
    cannot take whole is counted in pieces (a token or two more at each cut: an estimate)."""
    encode = encoding().encode
    try:
        return len(encode(text, disallowed_special=()))
    except ValueError:
        return sum(
            len(encode(text[i : i + _PIECE], disallowed_special=())) for i in range(0, len(text), _PIECE)
        )
