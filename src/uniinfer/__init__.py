"""uniinfer: one fast, trustworthy gateway to every AI model.

The public surface is listed in ``__all__`` (a test pins it). Names load on
first use, so ``import uniinfer`` stays cheap for the CLI and for
applications that only need the types.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from uniinfer.client import AsyncClient, Client
    from uniinfer.config import Config, load_config
    from uniinfer.errors import UniInferError
    from uniinfer.gateway import Gateway
    from uniinfer.server import create_app
    from uniinfer.types import ChatChunk, ChatRequest, ChatResponse, EmbeddingResponse
    from uniinfer.ws_client import WebSocketClient

_LAZY = {
    "AsyncClient": "uniinfer.client",
    "ChatChunk": "uniinfer.types",
    "ChatRequest": "uniinfer.types",
    "ChatResponse": "uniinfer.types",
    "Client": "uniinfer.client",
    "Config": "uniinfer.config",
    "EmbeddingResponse": "uniinfer.types",
    "Gateway": "uniinfer.gateway",
    "UniInferError": "uniinfer.errors",
    "WebSocketClient": "uniinfer.ws_client",
    "create_app": "uniinfer.server",
    "load_config": "uniinfer.config",
}

__all__ = [
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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'uniinfer' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
