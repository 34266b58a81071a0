"""Ingress translations: other API families' requests into uniinfer's OpenAI-shaped core, and back.

The gateway speaks OpenAI Chat Completions internally
(:class:`~uniinfer.types.ChatRequest`, :class:`~uniinfer.types.ChatResponse`,
:class:`~uniinfer.types.ChatChunk`). Each module here is the pure, I/O-free
translation for one foreign API family at the server's front door, so that
that family's official SDKs can reach any model behind uniinfer; the routes
that use them live in :mod:`uniinfer.server` (for example
:mod:`uniinfer.ingress.anthropic` for Anthropic Messages, served by
:mod:`uniinfer.server.anthropic_api`).
"""
