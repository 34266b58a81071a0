"""Retry decisions as small pure functions (which errors, how long to wait).

The router tries every available deployment of a group once per round; after
a round in which all failed with retryable errors it waits and starts
another, up to ``max_retries`` extra rounds. The wait is exponential backoff
with jitter, never shorter than the largest ``Retry-After`` the round saw,
and a round that could not finish before the request's deadline is not
started. Waiting is ``asyncio.sleep``: the event loop never blocks.
"""

from __future__ import annotations

import random

from uniinfer.config.routing import RetryConfig
from uniinfer.errors import (
    ProviderQuotaExceededError,
    UniInferError,
    UnsupportedFeatureError,
    UnsupportedParamError,
)

__all__ = ["backoff", "is_retryable", "is_target_mismatch"]


def is_target_mismatch(exc: UniInferError) -> bool:
    """The deployment cannot serve this request at all (nor soon: an account out of quota);
    another might."""
    return isinstance(exc, (UnsupportedParamError, UnsupportedFeatureError, ProviderQuotaExceededError))


def is_retryable(exc: UniInferError, config: RetryConfig) -> bool:
    """Rate limits, overload, 5xx, timeouts, connection errors; plus configured codes."""
    return exc.retryable or exc.code in config.also_retry_codes


def backoff(round_: int, config: RetryConfig, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds to wait before retry round ``round_`` (1-based)."""
    base = min(config.max_backoff_seconds, config.initial_backoff_seconds * 2.0 ** (round_ - 1))
    wait = base * (1.0 - config.jitter * rng.random())
    if retry_after is not None:
        wait = max(wait, retry_after)
    return wait
