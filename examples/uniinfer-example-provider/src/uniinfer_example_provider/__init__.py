"""An example provider plug-in for uniinfer.

Installing this package registers provider type ``example`` through the
``uniinfer.providers`` entry point: no change to uniinfer, its gateway, server
or CLI. The row reuses the OpenAI adapter (subclassed only to add one header)
and declares its quirks as data, exactly like a built-in row.
"""

from __future__ import annotations

from uniinfer.providers.base import Capabilities, ProviderSpec
from uniinfer.providers.openai import OpenAIAdapter

__all__ = ["SPEC", "ExampleAdapter"]


class ExampleAdapter(OpenAIAdapter):
    """The OpenAI wire format, plus the client header Example Inc. asks every caller to send."""

    def auth_headers(self) -> dict[str, str]:
        return {**super().auth_headers(), "x-example-client": "uniinfer"}


SPEC = ProviderSpec(
    "example",
    "uniinfer_example_provider:ExampleAdapter",
    "https://api.example.invalid/v1",
    "EXAMPLE_API_KEY",
    Capabilities(vision=True, embeddings=True),
    # Example Inc. has no logit bias, knows only the older max_tokens and says "end"
    # where OpenAI says "stop".
    unsupported_params=frozenset({"logit_bias"}),
    param_renames={"max_completion_tokens": "max_tokens"},
    finish_reason_map={"end": "stop"},
    docs_url="https://example.invalid/docs/api",
    description="Example Inc. (a plug-in)",
)
