"""The router: from a model name to an answer, across deployments, groups and time.

:meth:`Router.decide` picks the group a request goes to (experiments, then
rules, then ``profile:<name>`` / ``uniinfer/auto``, then the model name
itself). :meth:`Router.run` tries the group's available deployments in the
order its strategy gives, retries whole rounds with backoff inside the
request's deadline, falls back to other groups by error class, keeps every
deployment's circuit breaker and observed state up to date, and records in
the request's :class:`~uniinfer.stages.Route` what it did.

Which errors do what:

- retryable (429, overload, 5xx, timeout, connection): next deployment, then
  another round after backoff (at least the largest ``Retry-After`` seen),
  then the group's ``fallbacks.default``;
- unsupported param / feature: next deployment (this one cannot serve it);
- context length exceeded / content filtered: the group's
  ``fallbacks.context_length`` / ``fallbacks.content_filter`` if configured;
- anything else (400, 401, 403, 404): returned at once, never retried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from uniinfer.config import Config, Deployment
from uniinfer.config.routing import (
    BUILTIN_PROFILES,
    GroupFallbacks,
    ProfileConfig,
    RetryConfig,
    Strategy,
    rule_problems,
)
from uniinfer.errors import (
    AllTargetsFailedError,
    AuthenticationError,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderOverloadedError,
    ProviderQuotaExceededError,
    ProviderTimeoutError,
    RateLimitError,
    RequestCancelledError,
    UniInferError,
)
from uniinfer.http import Timeouts
from uniinfer.providers.base import ProviderAdapter
from uniinfer.providers.registry import Registry
from uniinfer.routing import strategies
from uniinfer.routing.analyser import Features, analyse
from uniinfer.routing.breaker import BreakerState, OnChange, Ticket
from uniinfer.routing.experiments import ExperimentStore, assign, sticky_key
from uniinfer.routing.group import Decision, Group, Member, Target, cut_timeouts
from uniinfer.routing.retry import backoff, is_retryable, is_target_mismatch
from uniinfer.routing.rules import RuleInput, RuleSet
from uniinfer.routing.state import DeploymentState
from uniinfer.stages import RequestContext, Route
from uniinfer.types import ChatRequest, EmbeddingRequest

__all__ = ["AUTO_MODEL", "Router"]

T = TypeVar("T")

#: The model name that lets rules (or the default profile) choose.
AUTO_MODEL = "uniinfer/auto"
PROFILE_PREFIX = "profile:"
#: Direct (``provider/model``) routes remembered, with their routing state; the oldest go first.
_DIRECT_CACHE_LIMIT = 4096
#: Prompt size the cost ranking assumes (prices differ per deployment, not per request).
_COST_PROMPT_TOKENS = 1000
#: How long a deployment that answered a 429 without Retry-After goes after its group's others
#: (it is not skipped: no word says for how long, and a group of one must still be tried).
_THROTTLED_SECONDS = 5.0
#: An attempt that timed out this close to the request's deadline was cut by the deadline.
_DEADLINE_SLACK = 0.01


class Router:
    """Routing state and decisions for one gateway (one per process)."""

    def __init__(
        self,
        config: Config,
        adapters: Mapping[str, ProviderAdapter],
        registry: Registry,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_breaker_change: OnChange | None = None,
    ) -> None:
        self.config = config
        self._adapters = adapters
        self._registry = registry
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._on_breaker_change = on_breaker_change
        self._retry = config.routing.retry
        self.states: dict[str, DeploymentState] = {}
        self.groups: dict[str, Group] = {
            name: self._group(name, group.deployments, group.strategy, group.fallbacks, group.retry)
            for name, group in config.models.items()
        }
        self.profiles: dict[str, Group] = {
            name: self._profile(name, profile)
            for name, profile in {**BUILTIN_PROFILES, **config.routing.profiles}.items()
        }
        # the loader refuses these with the file's lines; a Config built in Python meets them here
        problems = rule_problems(config.routing.rules)
        if problems:
            found = "; ".join(f"{'.'.join(path)}: {message}" for path, message in problems)
            raise ConfigError(f"{config.source}: {found}")
        self.rules = RuleSet(config.routing.rules)
        self.experiments = ExperimentStore(config.routing.experiments)
        self._experiments = {exp.model: exp for exp in config.routing.experiments}
        self._direct: dict[str, Group] = {}
        #: Labels of configured deployments: their routing state outlives any direct route's.
        self._configured = frozenset(
            m.target.label for g in (*self.groups.values(), *self.profiles.values()) for m in g.members
        )

    # --- building groups ------------------------------------------------------------

    def _state(self, label: str) -> DeploymentState:
        state = self.states.get(label)
        if state is None:
            state = self.states[label] = DeploymentState.create(
                label,
                self.config.routing.circuit_breaker,
                clock=self._clock,
                on_change=self._on_breaker_change,
            )
        return state

    def _member(self, index: int, dep: Deployment, deadline: float) -> Member:
        adapter = self._adapters[dep.provider]
        target = Target(dep.provider, dep.model, adapter)
        timeouts = adapter.endpoint.timeouts
        if dep.timeout is not None:  # what the deployment sets, over the provider's
            timeouts = dataclasses.replace(timeouts, **dep.timeout.model_dump(exclude_unset=True))
        cost = self._cost(dep)
        return Member(
            index,
            target,
            self._state(target.label),
            timeouts,
            dep,
            dep.weight,
            cost,
            deadline,
            cut_timeouts(timeouts, deadline, stream=False),
            cut_timeouts(timeouts, deadline, stream=True),
        )

    def _group(
        self,
        name: str,
        deployments: Iterable[Deployment],
        strategy: Strategy = "priority",
        fallbacks: GroupFallbacks | None = None,
        retry: RetryConfig | None = None,
    ) -> Group:
        # what the group sets, over routing.retry
        retry = self._retry.model_copy(update=retry.model_dump(exclude_unset=True)) if retry else self._retry
        members = tuple(self._member(i, d, retry.deadline_seconds) for i, d in enumerate(deployments))
        return Group(name, members, strategy, fallbacks or GroupFallbacks(), retry)

    def _profile(self, name: str, profile: ProfileConfig) -> Group:
        seen: dict[str, Deployment] = {}
        sources = profile.models or list(self.config.models)
        for group_name in sources:
            for dep in self.config.models[group_name].deployments:
                if profile.tags and not set(profile.tags) <= set(dep.tags):
                    continue
                if profile.local_only and not self._is_local(dep.provider):
                    continue
                seen.setdefault(f"{dep.provider}/{dep.model}", dep)
        return self._group(f"{PROFILE_PREFIX}{name}", seen.values(), profile.strategy)

    def _is_local(self, provider: str) -> bool:
        kind = self.config.provider_type(provider)
        return kind in self._registry and self._registry.get(kind).local

    # --- deciding ---------------------------------------------------------------------

    def decide(self, model: str, request: ChatRequest | EmbeddingRequest, ctx: RequestContext) -> Decision:
        """The group for this request, and why (experiment, rule, profile or the name itself).

        An embedding request takes part in experiments (kept on its variant by its ``user`` or a
        header) and in the rules that name its model, except those that test what only a chat
        has (its features, ``metadata``); see :attr:`~uniinfer.routing.rules.RuleInput.chat`."""
        experiment = self._experiments.get(model)
        if experiment is not None:
            metadata = (request.metadata or {}) if isinstance(request, ChatRequest) else {}
            key = sticky_key(experiment, request.user, metadata, ctx.headers)
            variant = assign(experiment, key, self._rng)
            decision = self._decide_model(variant.model, request, ctx, configured=True)
            decision.experiment, decision.variant = experiment.name, variant.name
            return decision
        return self._decide_model(model, request, ctx)

    def _decide_model(
        self,
        model: str,
        request: ChatRequest | EmbeddingRequest,
        ctx: RequestContext,
        *,
        configured: bool = False,
    ) -> Decision:
        features: Features | None = None
        rules = self.rules
        if rules.applies_to(model):
            # the analyser (tens of µs) runs only when a rule that may match tests a feature
            if rules.needs_features and isinstance(request, ChatRequest):
                features = analyse(request)
            rule = rules.match(self._rule_input(model, request, features, ctx))
            if rule is not None:
                if rule.route.profile is not None:
                    group = self._profile_group(rule.route.profile)
                    return Decision(group, rule=rule.name, profile=rule.route.profile, features=features)
                routed = rule.route.model
                group = self.group(routed or model, configured=configured or routed is not None)
                return Decision(group, rule=rule.name, features=features)
        if model == AUTO_MODEL:
            profile = self.config.routing.default_profile
            return Decision(self._profile_group(profile), profile=profile, features=features)
        if model.startswith(PROFILE_PREFIX):
            profile = model[len(PROFILE_PREFIX) :]
            return Decision(self._profile_group(profile), profile=profile, features=features)
        return Decision(self.group(model, configured=configured), features=features)

    def _rule_input(
        self,
        model: str,
        request: ChatRequest | EmbeddingRequest,
        features: Features | None,
        ctx: RequestContext,
    ) -> RuleInput:
        caller = {"principal": ctx.principal} if ctx.principal else {}
        chat = isinstance(request, ChatRequest)
        return RuleInput(
            model=model,
            features=features,
            chat=chat,
            metadata=(request.metadata or {}) if isinstance(request, ChatRequest) else {},
            headers=ctx.headers,
            caller=caller,
        )

    def _profile_group(self, name: str) -> Group:
        group = self.profiles.get(name)
        if group is None:
            known = ", ".join(sorted(self.profiles))
            raise ModelNotFoundError(f"profile '{name}' does not exist (known: {known})", param="model")
        if not group.members:
            raise ModelNotFoundError(f"profile '{name}' has no deployments to choose from", param="model")
        return group

    def group(self, model: str, *, configured: bool = False) -> Group:
        """A configured group, or a one-deployment group for ``provider/model``.

        ``settings.allow_direct_routing: false`` refuses ``provider/model`` from callers
        only: one the configuration names itself (a fallback, a rule's route, an
        experiment's variant: ``configured``) is the operator's choice, and is served.
        """
        found = self.groups.get(model)
        if found is not None:
            return found
        direct = configured or self.config.settings.allow_direct_routing
        found = self._direct.pop(model, None) if direct else None
        if found is not None:
            self._direct[model] = found  # the most recently used last: the oldest use goes first
            return found
        provider, sep, upstream = model.partition("/")
        if not model.isprintable():
            # no provider serves such a name, and it would reach the x-uniinfer-* headers,
            # where a control character fails the answer after the provider has been paid
            raise ModelNotFoundError(
                f"model {model!r} does not exist: a model name has no control characters", param="model"
            )
        if sep and upstream and direct:
            if provider in self._adapters:
                found = self._group(model, [Deployment(provider=provider, model=upstream)])
                if len(self._direct) >= _DIRECT_CACHE_LIMIT:
                    self._forget_oldest_direct()
                self._direct[model] = found
                return found
            if provider in self._registry:
                spec = self._registry.get(provider)
                how = f"set {spec.api_key_env}" if spec.api_key_env else f"configure providers.{provider}"
                raise ModelNotFoundError(
                    f"model '{model}' is not available: provider '{provider}' is not configured ({how})",
                    param="model",
                )
        raise ModelNotFoundError(
            f"model '{model}' does not exist: use a configured model name or 'provider/model'", param="model"
        )

    def _forget_oldest_direct(self) -> None:
        """Drop the least recently used direct route and its routing state, so that memory
        stays bounded however many ``provider/model`` names callers send (each has a breaker
        and a window); a route in use keeps its state (an open circuit) however many others
        come and go."""
        model = next(iter(self._direct))
        group = self._direct.pop(model)
        for member in group.members:
            if member.target.label not in self._configured:
                self.states.pop(member.target.label, None)

    def explain(self, request: ChatRequest, ctx: RequestContext) -> dict[str, Any]:
        """A dry run: features, every rule's verdict, the decision and the attempt order.

        Nothing is sent and no deployment's state changes (experiment assignment
        is computed the same way, so a sticky key shows the variant it would get;
        a ``provider/model`` name gets its direct route made, as a request would).
        """
        decision = self.decide(request.model, request, ctx)
        features = decision.features or analyse(request)
        # the rules are matched against the model the decision was made for: an experiment's variant
        matched = self._variant_model(request.model, decision.variant) or request.model
        rules = self.rules.explain(self._rule_input(matched, request, features, ctx))
        group = decision.group
        order = self._ordered(group, set())
        return {
            "model": request.model,
            "features": features.to_dict(),
            "rules": rules.to_dict()["rules"],
            "matched_rule": decision.rule,
            "decision": {
                "group": group.name,
                "strategy": group.strategy,
                "profile": decision.profile,
                "experiment": decision.experiment,
                "variant": decision.variant,
            },
            "attempt_order": [m.target.label for m in order],
            "deployments": [self._describe(m) for m in group.members],
            "fallbacks": {
                "context_length": group.fallbacks.context_length,
                "content_filter": group.fallbacks.content_filter,
                "default": list(group.fallbacks.default),
            },
        }

    def _variant_model(self, model: str, variant: str | None) -> str | None:
        experiment = self._experiments.get(model) if variant is not None else None
        if experiment is None:
            return None
        return next((v.model for v in experiment.variants if v.name == variant), None)

    def _describe(self, member: Member) -> dict[str, Any]:
        state, dep = member.state, member.config
        requests, tokens = state.window.totals()
        return {
            "deployment": member.target.label,
            "available": state.available(),
            "circuit": state.breaker.state.value,
            "in_flight": state.in_flight,
            "latency_ewma_s": state.latency,
            "ttft_ewma_s": state.ttft,
            "requests_last_minute": requests,
            "tokens_last_minute": tokens,
            "weight": dep.weight if dep else 1.0,
            "region": dep.region if dep else None,
            "tags": list(dep.tags) if dep else [],
        }

    # --- running ----------------------------------------------------------------------

    async def run(
        self,
        decision: Decision,
        route: Route,
        attempt: Callable[[Member, Timeouts], Awaitable[T]],
        *,
        stream: bool = False,
        one_model: bool = False,
    ) -> T:
        """Try the decision's group (and its fallback groups) until an attempt succeeds.

        ``one_model`` (embeddings): only deployments of the model the group lists first, in
        every group tried. Vectors of two models are not comparable (nor, often, of one size):
        an index fed by both, one request here and a fallback there, would be corrupt.
        """
        route.group, route.rule, route.profile = decision.group.name, decision.rule, decision.profile
        route.experiment, route.variant = decision.experiment, decision.variant
        deadline = self._clock() + decision.group.retry.deadline_seconds
        attempts: list[tuple[str, UniInferError]] = []
        pending = [decision.group]
        visited: set[str] = set()
        only = decision.group.members[0].target.model if one_model else None
        while pending:
            group = pending.pop(0)
            visited.add(group.name)
            if only is not None and all(m.target.model != only for m in group.members):
                outcome: T | _Next = _Next(None)  # none of its deployments serves the model: not tried
            else:
                if group is not decision.group:
                    route.fallback_groups.append(group.name)
                    route.group = group.name  # the group that serves, if this one does
                outcome = await self._run_group(group, route, attempt, attempts, deadline, stream, only)
            if not isinstance(outcome, _Next):
                return outcome
            after = [g for g in self._next_groups(group, outcome.error) if g.name not in visited]
            if _final(outcome.error, group):  # stops here: only its own fallback for it, if any
                pending = after
            else:
                pending = after + [g for g in pending if g.name not in visited]
        if route.failed:
            route.failed.pop()  # the last attempt is the error we report
        raise _failure(route.model, attempts)

    async def _run_group(
        self,
        group: Group,
        route: Route,
        attempt: Callable[[Member, Timeouts], Awaitable[T]],
        attempts: list[tuple[str, UniInferError]],
        deadline: float,
        stream: bool,
        only: str | None = None,
    ) -> T | _Next:
        excluded: set[int] = set()
        if only is not None:  # one model's deployments only (see run)
            excluded = {m.index for m in group.members if m.target.model != only}
        last: UniInferError | None = None
        for round_ in range(group.retry.max_retries + 1):
            if round_ and len(excluded) >= len(group.members):
                break  # every deployment cannot serve this request: no round will change that
            if round_:
                # at least until the soonest of its deployments is back from its Retry-After, not
                # the longest (another may serve sooner); none while every one is held by an open
                # circuit: a request does not sit out a cooldown (30 s), it ends with its error
                soonest = self._soonest_back(group, excluded)
                if soonest is None:
                    break
                wait = backoff(round_, group.retry, self._rng, soonest)
                if self._clock() + wait >= deadline:
                    break
                route.retries += 1
                await self._sleep(wait)
            members = self._ordered(group, excluded, stream=stream)
            if not members:
                if last is None:
                    last = self._unavailable(group, excluded)
                    attempts.append((group.name, last))
                break
            for member in members:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return _Next(last)
                try:
                    return await self._attempt(member, route, attempt, remaining, stream)
                except UniInferError as exc:
                    # kept as data (for the fallback decision and AllTargetsFailedError); its
                    # traceback, which runs through this frame and so back to `attempts`,
                    # would make every failed attempt a cycle for the garbage collector
                    last = exc.with_traceback(None)
                    attempts.append((member.target.label, last))
                    route.failed.append(member.target.label)
                    if is_target_mismatch(exc) or exc.code in group.retry.also_retry_codes:
                        # it cannot serve this request (also_retry_codes: a revoked key, say):
                        # the group's others may, and no round will change it for this one
                        excluded.add(member.index)
                    elif not is_retryable(exc, group.retry):
                        return _Next(exc)
        return _Next(last)

    async def _attempt(
        self,
        member: Member,
        route: Route,
        attempt: Callable[[Member, Timeouts], Awaitable[T]],
        remaining: float,
        stream: bool,
    ) -> T:
        state = member.state
        ticket = state.breaker.acquire()
        if ticket is None:
            raise ProviderOverloadedError(
                f"{member.target.label}: circuit open", provider=member.target.provider
            )
        route.attempts += 1
        route.provider, route.upstream_model = member.target.provider, member.target.model
        state.in_flight += 1
        state.window.add(requests=1)
        timeouts = member.timeouts_for(remaining, stream)
        started = self._clock()
        handed_off = False
        try:
            result = await attempt(member, timeouts)
        except UniInferError as exc:
            member.target.adapter.scrub(exc)
            if (
                isinstance(exc, ProviderTimeoutError)
                and exc.upstream_status is None  # the gateway's timer, not the upstream's 504
                and _cut_short(member, timeouts)
                and self._clock() >= started + remaining - _DEADLINE_SLACK
            ):
                # tried late, the time the request had left ran out, not the deployment's own
                # timeout: no word on its health (a healthy one tried late would open its
                # circuit); a first attempt had the whole deadline: a hang is its failure
                state.breaker.release(ticket)
            else:
                self._record_failure(state, exc, ticket)
            raise
        except BaseException:
            state.breaker.release(ticket)
            raise
        else:
            # a stream is judged when it ends (DeploymentState.stream_ended), but a half-open
            # circuit's probe is settled by its first chunk: the deployment answers again, and
            # traffic need not wait for a long stream to end
            if not stream or state.breaker.state is BreakerState.HALF_OPEN:
                state.breaker.record(True, ticket)
            state.observe_latency(self._clock() - started, first_token=stream)
            handed_off = stream
            dep = member.config
            if dep is not None:
                route.prices = (
                    dep.input_cost_per_mtok,
                    dep.output_cost_per_mtok,
                    dep.cached_input_cost_per_mtok,
                    dep.cache_write_cost_per_mtok,
                    dep.cache_write_1h_cost_per_mtok,
                )
            return result
        finally:
            if not handed_off:
                state.in_flight -= 1

    def _record_failure(self, state: DeploymentState, exc: UniInferError, ticket: Ticket) -> None:
        if isinstance(exc, RateLimitError):
            # throttled, not broken (nor shown healthy: a half-open probe stays unanswered);
            # the deployment waits out Retry-After instead
            state.breaker.release(ticket)
            wait = exc.retry_after
            quota = isinstance(exc, ProviderQuotaExceededError)
            if not wait and quota:
                # an account out of quota stays so a while: not tried first again at once
                wait = self.config.routing.circuit_breaker.cooldown_seconds
            if wait:
                state.cool_down(wait, quota=exc.message if quota else None)
            else:  # no word on how long: the group's other deployments first for a while
                state.throttled_until = self._clock() + _THROTTLED_SECONDS
        elif is_target_mismatch(exc) or isinstance(exc, RequestCancelledError):
            # refused before it was sent, or cut by the caller (its client closed): no word on
            # the deployment's health (a cancelled probe that counted as a success would close
            # the circuit on a deployment nobody heard from)
            state.breaker.release(ticket)
        else:
            # a failure of the deployment's: retryable ones, an answer it could not make whole
            # (a 5xx such as an unreadable body), its provider refusing the gateway's own key;
            # a caller's own mistake (a 400, a prompt too long) is no failure of it
            healthy = not exc.retryable and exc.http_status < 500 and not _refused_key(exc)
            state.breaker.record(healthy, ticket)
            if exc.retry_after and exc.upstream_status is not None:  # a 503 saying when to come back
                state.cool_down(exc.retry_after)

    def _ordered(self, group: Group, excluded: set[int], *, stream: bool = False) -> list[Member]:
        available = [m for m in group.members if m.index not in excluded and m.state.available()]
        if len(available) <= 1:
            return available
        if group.strategy != "priority":
            views = [self._view(m, group.strategy, stream) for m in available]
            by_index = {m.index: m for m in available}
            available = [by_index[v.index] for v in strategies.order(group.strategy, views, self._rng)]
        now = self._clock()
        if any(m.state.throttled_until > now for m in available):  # a 429 without Retry-After: last
            available.sort(key=lambda m: m.state.throttled_until > now)
        return available

    def _soonest_back(self, group: Group, excluded: set[int]) -> float | None:
        """Seconds until the first of ``group``'s deployments (but ``excluded``) is back from its
        Retry-After; None when every one is held by its open circuit instead. A request does
        not sit out a circuit's cooldown (30 s by default): it ends with its last error, and the
        requests after it get a 503 with the Retry-After at once (the breaker is there to fail
        fast)."""
        now = self._clock()
        backs = [
            max(m.state.cooldown_until - now, 0.0)
            for m in group.members
            if m.index not in excluded and m.state.breaker.available()
        ]
        return min(backs) if backs else None

    def _view(self, member: Member, strategy: Strategy, stream: bool = False) -> strategies.View:
        """What ``strategy`` needs to know about ``member`` (only that is computed)."""
        state = member.state
        if strategy == "weighted":
            return strategies.View(member.index, weight=member.weight)
        if strategy == "least_inflight":
            return strategies.View(member.index, in_flight=state.in_flight)
        if strategy == "lowest_latency":
            # a stream by its time to first token, an answer by its whole latency (either, when
            # only the other is known yet)
            first, other = (state.ttft, state.latency) if stream else (state.latency, state.ttft)
            return strategies.View(member.index, latency=first if first is not None else other)
        if strategy == "lowest_cost":
            return strategies.View(member.index, cost=member.cost)
        dep = member.config
        used_requests, used_tokens = state.window.totals()
        free = strategies.headroom(
            used_requests, used_tokens, dep.rpm if dep else None, dep.tpm if dep else None
        )
        return strategies.View(member.index, headroom=free)

    def _cost(self, dep: Deployment) -> float | None:
        """Estimated USD of a typical request; local servers cost nothing unless priced."""
        inp, out = dep.input_cost_per_mtok, dep.output_cost_per_mtok
        if inp is None and out is None and self._is_local(dep.provider):
            return 0.0
        return strategies.estimate_cost(_COST_PROMPT_TOKENS, strategies.DEFAULT_COMPLETION_TOKENS, inp, out)

    def _next_groups(self, group: Group, error: UniInferError | None) -> list[Group]:
        fb = group.fallbacks
        names: list[str] = []
        if isinstance(error, ContextLengthExceededError) and fb.context_length:
            names = [fb.context_length]
        elif isinstance(error, ContentFilteredError) and fb.content_filter:
            names = [fb.content_filter]
        elif error is None or is_retryable(error, group.retry) or is_target_mismatch(error):
            names = list(fb.default)
        return [self.group(n, configured=True) for n in names]

    def _unavailable(self, group: Group, excluded: Collection[int] = ()) -> UniInferError:
        """No deployment may be tried: rate limited if all are waiting out a 429, else overloaded
        (of the deployments the request could use: not ``excluded``)."""
        now = self._clock()
        members = [m for m in group.members if m.index not in excluded] or list(group.members)
        if all(m.state.cooldown_until > now for m in members):
            wait = min(m.state.back_in(now) or 0.0 for m in members)  # a 429, maybe an open circuit
            quota = [m.state.out_of_quota for m in members]
            if all(quota):  # out of credit, not throttled: said as such (clients retry a rate limit)
                return ProviderQuotaExceededError(
                    f"every deployment of '{group.name}' is out of quota upstream ({quota[0]})",
                    retry_after=wait,
                )
            return RateLimitError(
                f"every deployment of '{group.name}' is rate limited upstream; retry after {wait:.1f} s",
                retry_after=wait,
            )
        # the soonest any deployment is back: each is back once both its 429's wait and its
        # open circuit's cooldown are over (a half-open one, its probe in flight, is unknown)
        backs = [m.state.back_in(now) for m in members]
        known = [b for b in backs if b is not None]
        return ProviderOverloadedError(
            f"no deployment of '{group.name}' is available right now (circuits open or cooling down "
            "after rate limits); try again later",
            retry_after=min(known) if known else self.config.routing.circuit_breaker.cooldown_seconds,
        )


@dataclass(frozen=True, slots=True)
class _Next:
    """A group finished without success; ``error`` decides where to go next."""

    error: UniInferError | None


def _cut_short(member: Member, timeouts: Timeouts) -> bool:
    """Whether an attempt's ``timeouts`` were cut by what its request had left of its deadline
    (a first attempt's are the deployment's own, or cut to the group's whole deadline, built
    once: :meth:`Member.timeouts_for`)."""
    return (
        timeouts is not member.timeouts
        and timeouts is not member.first
        and timeouts is not member.first_stream
    )


def _refused_key(exc: UniInferError) -> bool:
    """Whether a provider refused the gateway's own credentials (a 401 or 403 it answered)."""
    return exc.provider is not None and isinstance(exc, (AuthenticationError, PermissionDeniedError))


def _final(error: UniInferError | None, group: Group) -> bool:
    """Whether ``error`` ends the request where it happened (a 400, 401, a content filter...):
    no group still pending from an earlier fallback list is tried after it."""
    return error is not None and not (is_retryable(error, group.retry) or is_target_mismatch(error))


def _failure(model: str, attempts: list[tuple[str, UniInferError]]) -> UniInferError:
    if len({target for target, _ in attempts}) == 1:
        # one deployment, perhaps tried again: its own last error, typed (a 429 stays a
        # RateLimitError for the caller who catches that); the route records how many tries
        return attempts[-1][1]
    return AllTargetsFailedError(model, attempts)
