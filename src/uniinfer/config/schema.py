"""The one configuration schema: strict, typed, immutable.

Unknown keys are errors (``extra="forbid"``); every model is frozen, so the
object handed to ``Client(config)`` / ``create_app(config)`` cannot change
under a running gateway. Secrets are :class:`~pydantic.SecretStr`, resolved
from references (``env:NAME``, ``file:PATH``) by the loader and never printed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "Config",
    "Deployment",
    "ModelGroup",
    "ProviderConfig",
    "ServerConfig",
    "Settings",
    "TimeoutConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=0, le=65535)
    #: Bearer key every request must present; None disables auth (local use only).
    master_key: SecretStr | None = None
    #: Larger request bodies get a 413 before they are parsed.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: How long shutdown waits for in-flight requests before closing them.
    graceful_shutdown_seconds: float = Field(default=30.0, ge=0)


class TimeoutConfig(_Strict):
    connect: float = Field(default=10.0, gt=0)
    read: float = Field(default=120.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class ProviderConfig(_Strict):
    """One configured provider; the entry's name is its ``type`` unless given."""

    type: str | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    headers: dict[str, str] = Field(default_factory=dict)
    #: Provider-specific settings, checked by the provider's adapter (e.g. Bedrock's
    #: ``region``, Azure's ``api_version``); ``env:``/``file:`` references are resolved.
    options: dict[str, Any] = Field(default_factory=dict)


class Deployment(_Strict):
    """Where a public model name is served: a configured provider and its model name."""

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)

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
    """A public model name: deployments tried in order (fallback on retryable errors)."""

    deployments: list[Deployment] = Field(min_length=1)


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
    settings: Settings = Field(default_factory=Settings)
    #: Where this config came from (a file path, or "embedded default").
    source: str = Field(default="embedded default", exclude=True)

    @field_validator("models")
    @classmethod
    def _names(cls, models: dict[str, ModelGroup]) -> dict[str, ModelGroup]:
        for name in models:
            if not name.strip():
                raise ValueError("model names must not be empty")
        return models

    @model_validator(mode="after")
    def _deployments_name_providers(self) -> Config:
        for name, group in self.models.items():
            for i, dep in enumerate(group.deployments):
                if dep.provider not in self.providers:
                    raise ValueError(
                        f"models.{name}.deployments[{i}] names provider '{dep.provider}', "
                        f"which is not configured under 'providers'"
                    )
        return self

    def provider_type(self, name: str) -> str:
        return self.providers[name].type or name
