"""Configuration: strict schema, locations in errors, env overrides, secret references."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from uniinfer.config import Config, default_config, load_config, parse_config
from uniinfer.errors import ConfigError
from uniinfer.gateway import Gateway

GOOD = """
server:
  port: 8080
  master_key: env:MASTER
providers:
  openai:
    api_key: env:OPENAI_API_KEY
  local:
    type: openai_compatible
    base_url: http://127.0.0.1:9999/v1
models:
  fast:
    deployments:
      - openai/gpt-4o-mini
      - {provider: local, model: llama}
"""
ENV = {"OPENAI_API_KEY": "sk-real-secret", "MASTER": "sk-master"}


def test_a_good_file_loads_into_an_immutable_typed_object() -> None:
    config = parse_config(GOOD, source="g.yaml", env=ENV)
    assert config.server.port == 8080
    assert [(d.provider, d.model) for d in config.models["fast"].deployments] == [
        ("openai", "gpt-4o-mini"),
        ("local", "llama"),
    ]
    assert config.provider_type("local") == "openai_compatible"
    with pytest.raises(ValueError, match="frozen"):
        config.server.port = 1  # type: ignore[misc]


def test_secrets_are_resolved_but_never_printed() -> None:
    config = parse_config(GOOD, env=ENV)
    api_key = config.providers["openai"].api_key
    assert api_key is not None
    assert api_key.get_secret_value() == "sk-real-secret"
    for text in (repr(config), str(config), config.model_dump_json()):
        assert "sk-real-secret" not in text
        assert "sk-master" not in text


def test_unknown_keys_are_errors_naming_key_file_and_line() -> None:
    text = "server:\n  port: 8080\n  prot: 1\nproviders:\n  openai:\n    api_kee: x\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="bad.yaml", env=ENV)
    message = str(info.value)
    assert "bad.yaml" in message
    assert "line 3, column 3: server.prot: unknown key" in message
    assert "line 6, column 5: providers.openai.api_kee: unknown key" in message


def test_bad_values_and_dangling_deployments_are_explained() -> None:
    with pytest.raises(ConfigError, match=r"line 2, column 3: server.port: .*less than or equal to 65535"):
        parse_config("server:\n  port: 70000\n", source="p.yaml", env={})
    with pytest.raises(ConfigError, match="names provider 'ghost'"):
        parse_config("models:\n  m:\n    deployments: [ghost/x]\n", env={})
    with pytest.raises(ConfigError, match="provider/model"):
        parse_config("providers: {openai: {api_key: k}}\nmodels:\n  m:\n    deployments: [nodash]\n", env={})
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse_config("server: [unclosed\n", env={})
    with pytest.raises(ConfigError, match="mapping"):
        parse_config("- a list\n", env={})


def test_missing_secret_names_the_provider_and_variable() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("providers:\n  openai:\n    api_key: env:NOPE_KEY\n", source="k.yaml", env={})
    assert "providers.openai.api_key" in str(info.value)
    assert "NOPE_KEY" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config("providers:\n  anthropic: {}\n", env={})
    assert "ANTHROPIC_API_KEY" in str(info.value)
    assert "'anthropic'" in str(info.value)


def test_a_key_from_a_crlf_env_file_loses_its_line_end_and_a_key_with_a_control_character_is_refused() -> (
    None
):
    yaml = "server: {master_key: env:MASTER}\nproviders:\n  openai:\n    api_key: env:KEY\n"
    config = parse_config(yaml, env={"KEY": "sk-abc\r", "MASTER": " mk-1\n"})
    assert config.providers["openai"].api_key is not None
    assert config.providers["openai"].api_key.get_secret_value() == "sk-abc"
    assert config.server.master_key is not None
    assert config.server.master_key.get_secret_value() == "mk-1"
    # inside a key, no header could carry it: said at start-up, naming the key, not its value
    for where, env in (
        ("providers.openai.api_key", {"KEY": "sk-a\nb", "MASTER": "m"}),
        ("server.master_key", {"KEY": "k", "MASTER": "m\x00x"}),
    ):
        with pytest.raises(ConfigError, match="control character") as info:
            parse_config(yaml, source="c.yaml", env=env)
        assert where in str(info.value)
        assert "sk-a" not in str(info.value)


def test_conventional_key_variable_and_file_references(tmp_path: Path) -> None:
    config = parse_config("providers:\n  groq: {}\n", env={"GROQ_API_KEY": "gsk-1"})
    key = config.providers["groq"].api_key
    assert key is not None
    assert key.get_secret_value() == "gsk-1"
    secret = tmp_path / "key"
    secret.write_text("sk-from-file\n")
    config = parse_config(f"providers:\n  openai: {{api_key: 'file:{secret}'}}\n", env={})
    key = config.providers["openai"].api_key
    assert key is not None
    assert key.get_secret_value() == "sk-from-file"
    with pytest.raises(ConfigError, match="cannot read secret file"):
        parse_config(f"providers:\n  openai: {{api_key: 'file:{tmp_path}/missing'}}\n", env={})


def test_environment_overrides_are_typed_and_checked() -> None:
    env = {
        **ENV,
        "UNIINFER_SERVER__PORT": "9090",
        "UNIINFER_SETTINGS__DROP_UNSUPPORTED_PARAMS": "true",
        "UNIINFER_PROVIDERS__LOCAL__BASE_URL": "http://127.0.0.1:1/v1",
        "UNIINFER_REQUIRE_SERVICES": "1",  # not an override
    }
    config = parse_config(GOOD, env=env)
    assert config.server.port == 9090
    assert config.settings.drop_unsupported_params is True
    assert config.providers["local"].base_url == "http://127.0.0.1:1/v1"
    with pytest.raises(ConfigError, match=r"settings\.colour: unknown key"):
        parse_config(GOOD, env={**ENV, "UNIINFER_SETTINGS__COLOUR": "red"})


def test_embedded_default_enables_providers_whose_keys_are_present() -> None:
    config = default_config({"ANTHROPIC_API_KEY": "sk-ant"})
    assert "anthropic" in config.providers
    assert "openai" not in config.providers
    assert "ollama" in config.providers  # local servers need no key
    assert config.source == "embedded default"
    gateway = Gateway(config)
    status = {p.name: p for p in gateway.provider_status()}
    assert status["anthropic"].available
    assert not status["openai"].available
    assert status["openai"].reason == "set OPENAI_API_KEY"


def test_load_config_reads_files_and_uniinfer_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    assert load_config(path, env=ENV).source == str(path)
    assert load_config(None, env={**ENV, "UNIINFER_CONFIG": str(path)}).server.port == 8080
    assert isinstance(load_config(None, env={}), Config)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", env={})


def test_unknown_provider_type_fails_when_the_gateway_is_built() -> None:
    # the gateway's registry decides (it may hold plug-ins); the config still knows the line
    config = parse_config("providers:\n  x: {type: nosuch, api_key: k}\n", env={})
    with pytest.raises(ConfigError, match=r"line 2, column 3: providers\.x: unknown provider type 'nosuch'"):
        Gateway(config)


def test_provider_options_are_checked_by_the_adapter() -> None:
    config = parse_config("providers:\n  openai: {api_key: k, options: {region: x}}\n", env={})
    with pytest.raises(ConfigError, match=r"providers\.openai\.options: provider 'openai' takes no options"):
        Gateway(config)


def test_option_values_resolve_secret_references() -> None:
    config = parse_config(
        "providers:\n  openai: {api_key: k, options: {secret: 'env:S', plain: 'x'}}\n", env={"S": "v"}
    )
    options = config.providers["openai"].options
    assert isinstance(options["secret"], SecretStr)  # a resolved reference is never printed
    assert options["plain"] == "x"
    assert config.providers["openai"].plain_options() == {"secret": "v", "plain": "x"}


def test_provider_headers_take_references_and_are_never_printed() -> None:
    text = "providers:\n  p: {type: ollama, headers: {X-Tenant-Token: 'env:TENANT', X-Region: eu}}\n"
    config = parse_config(text, env={"TENANT": "tok-SECRET-123"})
    headers = config.providers["p"].headers
    assert {name: value.get_secret_value() for name, value in headers.items()} == {
        "X-Tenant-Token": "tok-SECRET-123",
        "X-Region": "eu",
    }
    assert "SECRET" not in repr(config)
    assert "SECRET" not in config.model_dump_json()
    with pytest.raises(ConfigError, match=r"providers\.p\.headers\.X-Tenant-Token.*TENANT"):
        parse_config(text, env={})
