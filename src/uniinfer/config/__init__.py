"""Configuration: one strict, immutable, typed object loaded from YAML and the environment."""

from uniinfer.config.loader import default_config, load_config, parse_config
from uniinfer.config.schema import (
    Config,
    Deployment,
    ModelGroup,
    ProviderConfig,
    ServerConfig,
    Settings,
    TimeoutConfig,
)

__all__ = [
    "Config",
    "Deployment",
    "ModelGroup",
    "ProviderConfig",
    "ServerConfig",
    "Settings",
    "TimeoutConfig",
    "default_config",
    "load_config",
    "parse_config",
]
