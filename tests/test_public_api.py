"""The public surface is deliberate: changing it must change this test."""

from __future__ import annotations

import subprocess
import sys

import pytest

import uniinfer

EXPECTED = [
    "AsyncClient",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Client",
    "Config",
    "EmbeddingResponse",
    "Gateway",
    "UniInferError",
    "WebSocketClient",
    "__version__",
    "create_app",
    "load_config",
]


def test_all_is_pinned() -> None:
    assert sorted(uniinfer.__all__) == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in uniinfer.__all__:
        assert getattr(uniinfer, name) is not None


def test_import_is_lazy_and_does_nothing_heavy() -> None:
    code = "import sys, uniinfer; print(','.join(m for m in ('aiohttp', 'pydantic', 'uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="does_not_exist"):
        uniinfer.does_not_exist  # type: ignore[attr-defined]  # noqa: B018
