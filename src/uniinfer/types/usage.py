"""Token usage, normalised to the OpenAI ``CompletionUsage`` shape.

Every provider's numbers are mapped onto these fields exactly as the provider
reported them, never recounted:

- ``prompt_tokens``: all input tokens, including cache reads and cache writes
  (OpenAI's convention; Anthropic reports the three separately and they are
  summed here, each part kept in ``prompt_tokens_details``).
- ``prompt_tokens_details.cached_tokens``: input tokens read from a prompt cache.
- ``prompt_tokens_details.cache_write_tokens``: input tokens written to a cache; of them,
  ``cache_write_1h_tokens`` were written for an hour (Anthropic's ``ephemeral_1h_input_tokens``,
  priced above five-minute writes; kept for pricing, not serialised).
- ``completion_tokens_details.reasoning_tokens``: hidden reasoning ("thinking")
  tokens, part of ``completion_tokens``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CompletionTokensDetails", "PromptTokensDetails", "Usage"]


class PromptTokensDetails(BaseModel):
    model_config = ConfigDict(extra="allow")  # text_tokens, image_tokens... kept as reported
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    #: Of ``cache_write_tokens``, those written for an hour (see the module's docs).
    cache_write_1h_tokens: int | None = Field(default=None, exclude=True)
    audio_tokens: int | None = None


class CompletionTokensDetails(BaseModel):
    model_config = ConfigDict(extra="allow")  # text_tokens, image_tokens... kept as reported
    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(BaseModel):
    model_config = ConfigDict(extra="allow")  # text_tokens, image_tokens... kept as reported
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    #: (input, output) tokens the provider bills, where it says they differ from the counts
    #: above (Cohere's ``billed_units``): what cost is priced on. Never serialised.
    billed: tuple[int, int] | None = Field(default=None, exclude=True)

    @classmethod
    def of(
        cls,
        prompt: int,
        completion: int,
        *,
        cached: int | None = None,
        cache_write: int | None = None,
        cache_write_1h: int | None = None,
        reasoning: int | None = None,
        total: int | None = None,
    ) -> Usage:
        """Build usage from parts; details are present only when reported."""
        prompt_details = (
            PromptTokensDetails(
                cached_tokens=cached, cache_write_tokens=cache_write, cache_write_1h_tokens=cache_write_1h
            )
            if cached is not None or cache_write is not None
            else None
        )
        completion_details = (
            CompletionTokensDetails(reasoning_tokens=reasoning) if reasoning is not None else None
        )
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total if total is not None else prompt + completion,
            prompt_tokens_details=prompt_details,
            completion_tokens_details=completion_details,
        )

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens read from the cache: OpenAI's ``prompt_tokens_details.cached_tokens``,
        else where an OpenAI-compatible provider reports them in its own field (DeepSeek's
        ``prompt_cache_hit_tokens``, Moonshot's top-level ``cached_tokens``)."""
        d = self.prompt_tokens_details
        if d is not None and d.cached_tokens is not None:
            return d.cached_tokens
        extra = self.model_extra
        if extra:
            for name in ("prompt_cache_hit_tokens", "cached_tokens"):
                value = extra.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
        return 0

    @property
    def cache_write_tokens(self) -> int:
        d = self.prompt_tokens_details
        return (d.cache_write_tokens or 0) if d else 0

    @property
    def cache_write_1h_tokens(self) -> int:
        """Of :attr:`cache_write_tokens`, those written for an hour."""
        d = self.prompt_tokens_details
        return (d.cache_write_1h_tokens or 0) if d else 0

    @property
    def output_tokens(self) -> int:
        """The tokens the model wrote, reasoning included, as OpenAI's ``completion_tokens``
        counts them. A provider that reports reasoning beside its completion tokens instead
        (xAI: ``total = prompt + completion + reasoning``) shows in its own total, and its
        reasoning is added back: what metering and cost count."""
        reasoning = self.reasoning_tokens
        if reasoning and self.total_tokens == self.prompt_tokens + self.completion_tokens + reasoning:
            return self.completion_tokens + reasoning
        return self.completion_tokens

    @property
    def reasoning_tokens(self) -> int:
        d = self.completion_tokens_details
        return (d.reasoning_tokens or 0) if d else 0
