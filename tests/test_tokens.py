"""Offline token counting with the bundled o200k_base encoding."""

from __future__ import annotations

import os
from pathlib import Path

from uniinfer.tokens import count_text_tokens, encoding


def test_known_counts() -> None:
    assert count_text_tokens("Hello, world!") == 4  # "Hello" "," " world" "!"
    assert encoding().decode(encoding().encode("héllo 世界")) == "héllo 世界"
    assert count_text_tokens("<|endoftext|>") > 1  # special tokens in text are plain text


def test_a_text_the_encoder_cannot_take_whole_is_counted_in_pieces() -> None:
    # a run of about a million spaces exhausts the encoder's regex ("Max stack size exceeded
    # for backtracking"): /v1/messages/count_tokens answered a 500
    assert 7_000 < count_text_tokens(" " * 1_000_001 + "x") < 8_000


def test_counting_reads_the_bundled_encoding_and_writes_nothing(tmp_path: Path) -> None:
    # tiktoken's loader copies a file into its cache directory, and fails where that cannot be
    # written (a read-only container): count_tokens answered 500 on every call
    import subprocess
    import sys

    cache = tmp_path / "cache"
    code = "from uniinfer.tokens import count_text_tokens; print(count_text_tokens('Hello, world!'))"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache / "not" / "here"), "DATA_GYM_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "4"), out.stderr
    assert not cache.exists()
