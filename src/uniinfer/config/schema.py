"""The one configuration schema: strict, typed, immutable.

Unknown keys are errors (``extra="forbid"``); every model is frozen, so the
object handed to ``Client(config)`` / ``create_app(config)`` cannot change
under a running gateway. Secrets are :class:`~pydantic.SecretStr`, resolved
from references (``env:NAME``, ``file:PATH``) by the loader and never printed.
Types are strict: ``port: true`` is not port 1, nor ``port: "4000"`` a number
(environment overrides are parsed as YAML, so they arrive typed).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from uniinfer.config.routing import (
    BUILTIN_PROFILES,
    GroupFallbacks,
    Problem,
    RefError,
    RetryConfig,
    RoutingConfig,
    Strategy,
)

__all__ = [
    "DEFER_REFERENCES",
    "Config",
    "Deployment",
    "ModelGroup",
    "ProviderConfig",
    "ServerConfig",
    "Settings",
    "TimeoutConfig",
]


class _Strict(BaseModel):
    # strict: a YAML boolean or string is never silently taken for a number; nor is YAML's
    # .inf a duration, a weight or a price (an endless shutdown, say)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


#: Validation-context key: when true, :class:`Config` leaves its cross-reference checks to the
#: caller (the loader), which lists them with every other problem in one error.
DEFER_REFERENCES = "uniinfer.defer_references"

#: Why an empty ``server.master_key`` is refused (here, and by the loader for ``master_key:`` left blank).
EMPTY_MASTER_KEY = "is empty; remove the key to run without authentication (local use only)"


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    #: Bearer key every request must present; None disables auth (local use only).
    master_key: SecretStr | None = None
    #: Larger request bodies get a 413 before they are parsed.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: How long shutdown waits for in-flight requests before closing them.
    graceful_shutdown_seconds: float = Field(default=30.0, ge=0)
    #: After SIGTERM, keep serving this long with ``/ready`` answering 503 before the listener
    #: closes and the drain starts: the time a load balancer needs to stop sending.
    drain_delay_seconds: float = Field(default=0.0, ge=0, le=300)
    #: Requests this process answers at once (streams until they end); beyond it, a 503
    #: with ``Retry-After`` before the body is read. None: no limit. Health checks are exempt.
    max_concurrent_requests: int | None = Field(default=None, ge=1)

    @field_validator("master_key")
    @classmethod
    def _not_blank(cls, key: SecretStr | None) -> SecretStr | None:
        # An empty key (an empty variable, file or string) must not turn authentication off:
        # only leaving the key out does.
        if key is not None and not key.get_secret_value().strip():
            raise ValueError(EMPTY_MASTER_KEY)
        return key


class TimeoutConfig(_Strict):
    connect: float = Field(default=10.0, gt=0)
    read: float = Field(default=120.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class CapabilityOverrides(_Strict):
    """What a configured provider can do, where it differs from its registry row: a generic
    OpenAI-compatible server (vLLM, llama.cpp, a company's own) serving a vision model, or one
    that takes JSON schemas. Unset: the row's. Names as ``uniinfer providers`` lists them."""

    chat: bool | None = None
    streaming: bool | None = None
    tools: bool | None = None
    vision: bool | None = None
    json_mode: bool | None = None
    json_schema: bool | None = None
    embeddings: bool | None = None
    reasoning: bool | None = None
    prompt_caching: bool | None = None


class ProviderConfig(_Strict):
    """One configured provider; the entry's name is its ``type`` unless given."""

    type: str | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    capabilities: CapabilityOverrides = Field(default_factory=CapabilityOverrides)
    #: Held as secrets (never printed: a header is often a credential); ``env:``/``file:``
    #: references are resolved by the loader.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    #: Provider-specific settings, checked by the provider's adapter (e.g. Bedrock's
    #: ``region``, Azure's ``api_version``); ``env:``/``file:`` references are resolved
    #: by the loader into :class:`SecretStr` (never printed; see :meth:`plain_options`).
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        # Caught here, a typo is one clear error at start-up instead of a connection
        # error on every request (retried, and counted against the provider).
        if url is None:
            return url
        try:
            parts = urlsplit(url)
            good = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            good = False
        if not good or _SPACE.search(url):
            raise ValueError(
                "must be an http:// or https:// URL with a host (e.g. https://api.example.com/v1)"
            )
        if parts.username is not None or parts.password is not None:
            # aiohttp would send them as Basic auth (or fail beside an api_key), and they would
            # be printed wherever the URL is: a credential has its own, redacted, settings
            raise ValueError(
                "must not carry credentials (user:password@): set api_key, or an Authorization "
                "header in headers"
            )
        return url

    def plain_options(self) -> dict[str, Any]:
        """``options`` with resolved secret references unwrapped, for the provider's adapter."""
        return {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in self.options.items()}


_SPACE = re.compile(r"\s")


class Deployment(_Strict):
    """Where a public model name is served: a configured provider and its model name."""

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    #: Share of traffic under the ``weighted`` strategy.
    weight: float = Field(default=1.0, gt=0)
    region: str | None = None
    #: Free labels that profiles and rules select on (e.g. ``cheap``, ``eu``).
    tags: list[str] = Field(default_factory=list)
    #: Overrides the provider's timeouts for this deployment (the keys it sets; the rest are the provider's).
    timeout: TimeoutConfig | None = None
    #: Requests / tokens per minute this deployment may take (``usage_headroom`` avoids
    #: deployments close to them).
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    #: Prices in USD per million tokens (``lowest_cost`` ranks by them).
    input_cost_per_mtok: float | None = Field(default=None, ge=0)
    output_cost_per_mtok: float | None = Field(default=None, ge=0)
    #: Prompt tokens read from the provider's prompt cache, and written to it, when they are
    #: priced apart (Anthropic: reads 0.1x, five-minute writes 1.25x the input price; OpenAI
    #: and Gemini reads a fraction); unset, they cost the input price.
    cached_input_cost_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_cost_per_mtok: float | None = Field(default=None, ge=0)
    #: Writes kept for an hour (Anthropic: 2x the input price); unset, the write price.
    cache_write_1h_cost_per_mtok: float | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # "openai/gpt-4o-mini" is short for {provider: openai, model: gpt-4o-mini}
        if isinstance(value, str):
            provider, sep, model = value.partition("/")
            if not sep or not provider or not model:
                raise ValueError(f"'{value}' is not of the form 'provider/model'")
            return {"provider": provider, "model": model}
        return value


class ModelGroup(_Strict):
    """A public model name: its deployments, how to choose among them, where to go next."""

    deployments: list[Deployment] = Field(min_length=1)
    strategy: Strategy = "priority"
    fallbacks: GroupFallbacks = Field(default_factory=GroupFallbacks)
    #: Overrides ``routing.retry`` for this group (the keys it sets; the rest are ``routing.retry``'s).
    retry: RetryConfig | None = None


class Settings(_Strict):
    #: Drop params the routed provider cannot honour (reported in a response header)
    #: instead of answering 400.
    drop_unsupported_params: bool = False
    #: Route ``provider/model`` names that are not configured model groups.
    allow_direct_routing: bool = True


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelGroup] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    settings: Settings = Field(default_factory=Settings)
    #: Where this config came from (a file path, or "embedded default").
    source: str = Field(default="embedded default", exclude=True)
    #: Where a key path was set (set by the loader; see :meth:`locate`).
    _locate: Callable[[tuple[str, ...]], str] | None = PrivateAttr(default=None)

    @field_validator("models")
    @classmethod
    def _names(cls, models: dict[str, ModelGroup]) -> dict[str, ModelGroup]:
        for name in models:
            if not name.strip():
                raise ValueError("model names must not be empty")
        return models

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Config:
        """Every name that points elsewhere in the file points at something that exists.

        The loader asks for the check to be left to it (``DEFER_REFERENCES`` in the
        validation context) and reports what :meth:`reference_problems` finds together
        with the problems the schema cannot see (contradictory rules, secrets); built in
        Python, the config is refused here, with every dangling name in one error.
        """
        if info.context and info.context.get(DEFER_REFERENCES):
            return self
        problems = self.reference_problems()
        if problems:
            raise RefError(problems)
        return self

    def reference_problems(self) -> list[Problem]:
        """Every name that points at nothing, as (key path, message): all of them, models first, then routing."""
        problems: list[Problem] = []
        for name, group in self.models.items():
            for i, dep in enumerate(group.deployments):
                if dep.provider not in self.providers:
                    problems.append(
                        (
                            ("models", name, "deployments", str(i), "provider"),
                            f"names provider '{dep.provider}', which is not configured under 'providers'",
                        )
                    )
            fb = group.fallbacks
            for key, target in [("context_length", fb.context_length), ("content_filter", fb.content_filter)]:
                if target is not None:
                    problems += self._model_problem(("models", name, "fallbacks", key), target)
            for i, target in enumerate(fb.default):
                problems += self._model_problem(("models", name, "fallbacks", "default", str(i)), target)
        routing = self.routing
        for pname, profile in routing.profiles.items():
            for i, target in enumerate(profile.models):
                at: tuple[str, ...] = ("routing", "profiles", pname, "models", str(i))
                problems += self._model_problem(at, target, direct=False)
        profiles = set(BUILTIN_PROFILES) | set(routing.profiles)
        if routing.default_profile not in profiles:
            problems.append((("routing", "default_profile"), f"'{routing.default_profile}' is not a profile"))
        for i, rule in enumerate(routing.rules):
            where = ("routing", "rules", str(i), "route")
            if rule.route.model is not None:
                problems += self._model_problem((*where, "model"), rule.route.model)
            if rule.route.profile is not None and rule.route.profile not in profiles:
                problems.append(((*where, "profile"), f"'{rule.route.profile}' is not a profile"))
        names = [e.name for e in routing.experiments]
        taken: dict[str, str] = {}  # model name -> the experiment that takes it
        for i, exp in enumerate(routing.experiments):
            if names.count(exp.name) > 1:
                problems.append(
                    (("routing", "experiments", str(i), "name"), f"duplicate experiment '{exp.name}'")
                )
            if exp.model in taken and taken[exp.model] != exp.name:
                # only one can take its requests: the other would report nothing, for ever
                problems.append(
                    (
                        ("routing", "experiments", str(i), "model"),
                        f"experiment '{taken[exp.model]}' already takes model '{exp.model}'",
                    )
                )
            taken.setdefault(exp.model, exp.name)
            for j, variant in enumerate(exp.variants):
                at = ("routing", "experiments", str(i), "variants", str(j), "model")
                problems += self._model_problem(at, variant.model)
        return problems

    def _model_problem(self, path: tuple[str, ...], target: str, *, direct: bool = True) -> list[Problem]:
        """``[]`` when ``target`` names a group (or, ``direct``, a configured provider's model)."""
        if target in self.models:
            return []
        provider, sep, rest = target.partition("/")
        if direct and sep and rest and provider in self.providers:
            return []
        what = "a configured model group" + (" or provider/model" if direct else "")
        return [(path, f"'{target}' is not {what}")]

    def provider_type(self, name: str) -> str:
        return self.providers[name].type or name

    def locate(self, path: tuple[str, ...]) -> str:
        """Where ``path`` was set: ``line L, column C`` of the file, ``environment override
        VAR``, or "" (unknown, e.g. a config built in Python)."""
        return self._locate(path) if self._locate is not None else ""

    def explain(self, message: str, path: tuple[str, ...]) -> str:
        """``message`` (an error found after loading, about ``path``) with where it was set.

        A message that starts with a more precise key path under ``path``
        (``providers.x.options: ...``, as adapters write them) is placed there.
        """
        named = _LEADING_PATH.match(message)
        leading = tuple(named.group(1).split(".")) if named else ()
        if leading[: len(path)] == path:
            path = leading
        else:
            message = f"{'.'.join(path)}: {message}"
        where = self.locate(path)
        return f"{where}: {message}" if where else message


_LEADING_PATH = re.compile(r"([\w.-]+): ")
