"""Configuration of routing and resilience: strategies, retries, breakers, rules, experiments.

Every option here is documented in docs/configuration.md. Defaults are what a
team running a gateway in production would choose without thinking about it:
retry on the retryable error classes with backoff and jitter inside a 60 s
deadline, a breaker that opens at a 50% failure rate over at least 5
requests, and ordered (priority) fallback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from uniinfer.errors import catalogue

__all__ = [
    "BUILTIN_PROFILES",
    "BreakerConfig",
    "ExperimentConfig",
    "GroupFallbacks",
    "Problem",
    "ProfileConfig",
    "RetryConfig",
    "RouteAction",
    "RoutingConfig",
    "RuleConditions",
    "RuleConfig",
    "Strategy",
    "VariantConfig",
    "rule_problems",
]

Strategy = Literal[
    "priority", "weighted", "least_inflight", "lowest_latency", "lowest_cost", "usage_headroom"
]
TaskClass = Literal["chat", "code", "extraction", "summarisation", "reasoning", "translation", "creative"]


#: One problem found in a configuration: the key path it is about, and what is wrong.
Problem = tuple[tuple[str, ...], str]


class RefError(ValueError):
    """Names in a configuration that point at nothing: every one found, each with its key path.

    All of them at once, because each is usually a separate typo: reporting
    only the first made fixing a file one edit-and-rerun per mistake.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(path)}: {message}" for path, message in problems))
        self.problems = list(problems)


class _Strict(BaseModel):
    # strict: a YAML boolean or string is never silently taken for a number; nor is YAML's
    # .inf a duration, a weight or a price (an endless shutdown, say)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class RetryConfig(_Strict):
    """How failed attempts are retried (across the group's deployments, then again after backoff)."""

    #: Extra rounds over the group after every deployment failed with a retryable error.
    max_retries: int = Field(default=2, ge=0, le=10)
    initial_backoff_seconds: float = Field(default=0.25, ge=0)
    max_backoff_seconds: float = Field(default=8.0, ge=0)
    #: Full jitter fraction: the wait is drawn from [(1-jitter)*backoff, backoff].
    jitter: float = Field(default=0.5, ge=0, le=1)
    #: Total time budget of one request, all attempts and waits included.
    deadline_seconds: float = Field(default=60.0, gt=0)
    #: Also fall back on these normally final errors (e.g. ["authentication_failed"]).
    also_retry_codes: list[str] = Field(default_factory=list)

    @field_validator("also_retry_codes")
    @classmethod
    def _known_codes(cls, codes: list[str]) -> list[str]:
        # a misspelt code would never match: the retry it asks for would silently never happen
        known = {error.code for error in catalogue()}
        unknown = [code for code in codes if code not in known]
        if unknown:
            raise ValueError(
                f"unknown error code {unknown[0]!r}; the codes are listed in docs/errors.md "
                f"({', '.join(sorted(known))})"
            )
        return codes


class BreakerConfig(_Strict):
    """Per-deployment circuit breaker: closed -> open -> half-open (one probe) -> closed."""

    enabled: bool = True
    #: Open when failures / requests in the window reach this rate...
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    #: ... over at least this many requests...
    min_requests: int = Field(default=5, ge=1)
    #: ... counted over this sliding window.
    window_seconds: float = Field(default=30.0, gt=0)
    #: Stay open this long, then let one probe through (half-open).
    cooldown_seconds: float = Field(default=30.0, gt=0)


class GroupFallbacks(_Strict):
    """Other model groups to try when this group fails, by error class."""

    #: On context_length_exceeded: a group with a larger context window.
    context_length: str | None = None
    #: On content_filtered: a configured alternative.
    content_filter: str | None = None
    #: On retryable errors after this group's retries are exhausted, in order.
    default: list[str] = Field(default_factory=list)


class ProfileConfig(_Strict):
    """A routing profile: a strategy over deployments picked from groups and/or by tag."""

    strategy: Strategy = "priority"
    #: Groups whose deployments the profile may use (empty: every group).
    models: list[str] = Field(default_factory=list)
    #: Only deployments carrying all of these tags.
    tags: list[str] = Field(default_factory=list)
    #: Only deployments of local providers (Ollama, vLLM...).
    local_only: bool = False


#: Profiles that exist without configuration; ``routing.profiles`` may override any of them.
BUILTIN_PROFILES: Mapping[str, ProfileConfig] = MappingProxyType(
    {
        "fast": ProfileConfig(strategy="lowest_latency"),
        "cheap": ProfileConfig(strategy="lowest_cost"),
        "quality": ProfileConfig(strategy="priority", tags=["quality"]),
        "local": ProfileConfig(strategy="least_inflight", local_only=True),
    }
)


class RuleConditions(_Strict):
    """All given conditions must hold (an empty ``when`` always matches)."""

    model: str | list[str] | None = None
    task: TaskClass | list[TaskClass] | None = None
    min_prompt_tokens: int | None = Field(default=None, ge=0)
    max_prompt_tokens: int | None = Field(default=None, ge=0)
    has_images: bool | None = None
    has_tools: bool | None = None
    json_mode: bool | None = None
    has_code: bool | None = None
    language: str | list[str] | None = None
    min_messages: int | None = Field(default=None, ge=0)
    max_messages: int | None = Field(default=None, ge=0)
    #: Request ``metadata`` entries that must equal these values.
    metadata: dict[str, str] = Field(default_factory=dict)
    #: Request headers (lower-case names) that must equal these values.
    headers: dict[str, str] = Field(default_factory=dict)
    #: Caller identity fields (``principal``, later tenant/team) that must equal these values.
    caller: dict[str, str] = Field(default_factory=dict)

    @field_validator("language")
    @classmethod
    def _language_codes(cls, value: str | list[str] | None) -> str | list[str] | None:
        # The analyser detects ISO 639-1 codes (or "und" when unsure) and the rules compare
        # them case-insensitively: anything else (`english`) could never match.
        for code in [value] if isinstance(value, str) else value or []:
            if not _LANGUAGE.fullmatch(code):
                raise ValueError(
                    f"'{code}' is not an ISO 639-1 language code (two letters, e.g. 'en'; or 'und')"
                )
        return value


_LANGUAGE = re.compile(r"[A-Za-z]{2}|und")


class RouteAction(_Strict):
    """Where a matching rule sends the request: a model group or a profile (exactly one)."""

    model: str | None = None
    profile: str | None = None

    @model_validator(mode="after")
    def _one(self) -> RouteAction:
        if (self.model is None) == (self.profile is None):
            raise ValueError("a route names exactly one of 'model' or 'profile'")
        return self


class RuleConfig(_Strict):
    name: str = Field(min_length=1)
    #: Higher runs first; equal priorities keep file order.
    priority: int = 0
    when: RuleConditions = Field(default_factory=RuleConditions)
    route: RouteAction


class VariantConfig(_Strict):
    name: str = Field(min_length=1)
    #: The model group (or provider/model) this variant is served by.
    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)


class ExperimentConfig(_Strict):
    """Splits traffic for ``model`` between variants, sticky per user or session."""

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    variants: list[VariantConfig] = Field(min_length=2)
    #: What keeps one caller on one variant: the request's ``user``, a metadata key
    #: (``metadata.session_id``) or a header (``header.x-session-id``).
    sticky_by: str = "user"
    status: Literal["running", "stopped"] = "running"
    #: When stopped, every request goes to this variant (the promoted winner).
    winner: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if self.winner is not None and self.winner not in names:
            raise ValueError(f"winner '{self.winner}' is not a variant")
        if self.status == "stopped" and self.winner is None:
            raise ValueError("a stopped experiment names its 'winner'")
        source, dot, key = self.sticky_by.partition(".")
        if not (self.sticky_by == "user" or (dot and key and source in ("metadata", "header"))):
            # "metadata." with no key would assign every request at random, without a word
            raise ValueError("sticky_by is 'user', 'metadata.<key>' or 'header.<name>'")
        return self


class RoutingConfig(_Strict):
    retry: RetryConfig = Field(default_factory=RetryConfig)
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    #: Profiles callers pick with ``profile:<name>`` (built-ins: fast, cheap, quality, local).
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    #: The profile ``uniinfer/auto`` uses when no rule matches.
    default_profile: str = "fast"
    rules: list[RuleConfig] = Field(default_factory=list)
    experiments: list[ExperimentConfig] = Field(default_factory=list)


def rule_problems(rules: Sequence[RuleConfig]) -> list[Problem]:
    """Rules that can never match or are ambiguous, as (key path, message), for the loader.

    Checked after the schema rather than by it, so a contradictory rule can
    still be built in Python (tests of the matcher do): min above max (prompt
    tokens, messages), an empty any-of list (``model: []``, ``task: []``,
    ``language: []``) and a rule name used twice.
    """
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        where = ("routing", "rules", str(i))
        when = rule.when
        for feature in ("prompt_tokens", "messages"):
            low, high = getattr(when, f"min_{feature}"), getattr(when, f"max_{feature}")
            if low is not None and high is not None and low > high:
                problems.append(
                    (
                        (*where, "when", f"min_{feature}"),
                        f"{low} is greater than max_{feature} ({high}): rule '{rule.name}' can never match",
                    )
                )
        for name in ("model", "task", "language"):
            if getattr(when, name) == []:
                problems.append(
                    ((*where, "when", name), f"an empty list: rule '{rule.name}' can never match")
                )
        if rule.name in seen:
            problems.append(
                ((*where, "name"), f"'{rule.name}' is already the name of routing.rules.{seen[rule.name]}")
            )
        else:
            seen[rule.name] = i
    return problems
