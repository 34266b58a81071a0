"""The OpenAI-compatible HTTP server over the gateway."""

from uniinfer.server.app import App, create_app

__all__ = ["App", "create_app"]
