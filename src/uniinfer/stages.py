"""The named places where later capabilities plug into the request pipeline.

A request passes the stages in :data:`SLOTS` order before it is routed, and
in reverse order after it completed (successfully or not)::

    identity -> policy -> limits -> cache -> [route + provider] -> cache -> limits -> policy -> identity
                                                                 usage (after only)

A stage implements any of ``before(ctx)`` (may answer the request itself by
returning a response, e.g. a cache hit, or refuse it by raising a
:class:`~uniinfer.errors.UniInferError`) and ``after(ctx)`` (sees
``ctx.usage``, ``ctx.route`` and ``ctx.error``; for streams it runs when the
stream ends). The pipeline itself has no per-feature branches: adding
budgets or caching is adding a stage.

This issue ships one stage: :class:`UsageMeter`, in-memory usage accounting
per model and provider, which also proves that usage is captured for every
stream, including those whose caller did not ask for it.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from uniinfer.errors import UniInferError
from uniinfer.types import ChatResponse, Usage

__all__ = [
    "MAX_METERED_MODELS",
    "OTHER_MODELS",
    "SLOTS",
    "AfterStage",
    "BeforeStage",
    "RequestContext",
    "Route",
    "UsageMeter",
    "UsageTotals",
]

#: The named plug-in places, in the order ``before`` runs.
SLOTS = ("identity", "policy", "limits", "cache", "usage")


@dataclass(slots=True)
class Route:
    """What the router did: the deployment that answered and what it tried before."""

    model: str
    provider: str | None = None
    upstream_model: str | None = None
    attempts: int = 0
    #: ``provider/model`` of every target that failed before the one that answered.
    failed: list[str] = field(default_factory=list)
    dropped_params: tuple[str, ...] = ()
    #: The model group that served (after rules, profiles and experiments).
    group: str | None = None
    #: Other groups fallen back to, in order.
    fallback_groups: list[str] = field(default_factory=list)
    #: Extra rounds over a group after every deployment failed.
    retries: int = 0
    rule: str | None = None
    profile: str | None = None
    experiment: str | None = None
    variant: str | None = None
    #: USD per million tokens of the deployment that answered, as configured: input, output,
    #: cache reads, cache writes, hour-long cache writes (see :meth:`cost`).
    prices: tuple[float | None, float | None, float | None, float | None, float | None] = (
        None,
        None,
        None,
        None,
        None,
    )
    #: ``(provider/model, usage)`` of answers refused after the provider produced them (a 200
    #: saying the generation failed: :attr:`ProviderError.usage <uniinfer.errors.ProviderError.usage>`),
    #: in attempt order: tokens billed though no caller got them.
    spent: tuple[tuple[str, Usage], ...] = ()

    def cost(self, usage: Usage | None) -> float | None:
        """What the answer cost at the configured prices (None when unpriced or unknown).

        The prompt's cache reads and writes (within ``prompt_tokens``, as uniinfer normalises
        every provider's usage) at their own prices where configured, else the input price;
        the completion, reasoning included, at the output price."""
        inp, out, cached, write, write_1h = self.prices
        if usage is None or (inp is None and out is None):
            return None
        full = inp or 0.0
        if usage.billed is not None:  # the provider's own billed counts (Cohere)
            billed_in, billed_out = usage.billed
            return (billed_in * full + billed_out * (out or 0.0)) / 1e6
        reads, writes, hour = usage.cached_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens
        fresh = max(usage.prompt_tokens - reads - writes, 0)
        write = full if write is None else write
        prompt = (
            fresh * full
            + reads * (full if cached is None else cached)
            + (writes - hour) * write
            + hour * (write if write_1h is None else write_1h)
        )
        return (prompt + usage.output_tokens * (out or 0.0)) / 1e6


@dataclass(slots=True)
class RequestContext:
    """Everything stages share about one request."""

    kind: Literal["chat", "embeddings"]
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    #: Who is calling (set by the identity stage; the master key in this release).
    principal: str | None = None
    #: Request headers (lower-case names) for routing rules and sticky experiments.
    headers: Mapping[str, str] = field(default_factory=dict)
    route: Route | None = None
    usage: Usage | None = None
    error: UniInferError | None = None
    #: Seconds from the start of the request to its first streamed chunk.
    ttft: float | None = None


class BeforeStage(Protocol):
    async def before(self, ctx: RequestContext) -> ChatResponse | None: ...


class AfterStage(Protocol):
    async def after(self, ctx: RequestContext) -> None: ...


#: How many ``provider/model`` names :class:`UsageMeter` keeps apart.
MAX_METERED_MODELS = 10_000
#: Where the usage of names beyond them is added up.
OTHER_MODELS = "(other models)"


@dataclass(slots=True)
class UsageTotals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def add(self, usage: Usage) -> None:
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.output_tokens
        self.cached_tokens += usage.cached_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        self.reasoning_tokens += usage.reasoning_tokens


class UsageMeter:
    """In-memory usage per ``provider/model`` (the embedded default's usage stage).

    At most :data:`MAX_METERED_MODELS` names are kept apart (callers choose
    ``provider/model`` names freely); usage of names beyond them is added up
    under :data:`OTHER_MODELS`. The tokens of answers refused as failed generations
    (:attr:`Route.spent`) count in their deployment's totals, not as requests.
    """

    def __init__(self) -> None:
        self.totals: defaultdict[str, UsageTotals] = defaultdict(UsageTotals)

    async def after(self, ctx: RequestContext) -> None:
        route = ctx.route
        if route is None:
            return
        for label, usage in route.spent:  # billed to the deployments that produced them
            self._totals(label).add(usage)
        if route.provider is None:
            return
        totals = self._totals(f"{route.provider}/{route.upstream_model}")
        totals.requests += 1
        if ctx.error is not None:
            totals.errors += 1
        if ctx.usage is not None:
            totals.add(ctx.usage)

    def _totals(self, label: str) -> UsageTotals:
        if label not in self.totals and len(self.totals) >= MAX_METERED_MODELS:
            label = OTHER_MODELS
        return self.totals[label]
