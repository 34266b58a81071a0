"""Offline token counting with the bundled o200k_base encoding."""

from __future__ import annotations

from uniinfer.tokens import count_text_tokens, encoding


def test_known_counts() -> None:
    assert count_text_tokens("Hello, world!") == 4  # "Hello" "," " world" "!"
    assert encoding().decode(encoding().encode("héllo 世界")) == "héllo 世界"
    assert count_text_tokens("<|endoftext|>") > 1  # special tokens in text are plain text
