"""Configuration errors: what a user relies on when a file or an override is wrong.

An empty master key never turns authentication off; secrets under ``options``
are never printed; every error names the key and where it was set (the file's
line and column, or the environment variable), never a secret value.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from uniinfer.cli.app import app
from uniinfer.config import Config, parse_config
from uniinfer.config.loader import load_config
from uniinfer.errors import ConfigError
from uniinfer.gateway import Gateway
from uniinfer.server import create_app

SECRET = "sk-very-secret-value-42"


def _error(text: str, env: dict[str, str] | None = None, source: str = "c.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source=source, env=env or {})
    return str(info.value)


# --- 1. an empty master key is an error, not "no auth" ------------------------------------------


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ('server:\n  master_key: ""\n', {}),
        ('server:\n  master_key: "  "\n', {}),
        ("server:\n  master_key:\n", {}),
        ("server:\n  port: 4000\n", {"UNIINFER_SERVER__MASTER_KEY": ""}),
        ("server:\n  master_key: env:MK\n", {"MK": " "}),
    ],
)
def test_an_empty_master_key_is_refused(text: str, env: dict[str, str]) -> None:
    message = _error(text, env)
    assert "server.master_key: is empty" in message


def test_an_empty_master_key_file_is_refused_and_an_absent_key_means_no_auth(tmp_path: Path) -> None:
    empty = tmp_path / "key"
    empty.write_text("\n")
    message = _error(f"server:\n  master_key: file:{empty}\n")
    assert "line 2, column 3: server.master_key: is empty" in message
    assert create_app(parse_config("server:\n  port: 4000\n", env={}))._master_key is None
    app = create_app(parse_config("server:\n  master_key: env:MK\n", env={"MK": SECRET}))
    assert app._master_key == SECRET.encode()


# --- 2. secrets under options are SecretStr in the Config ---------------------------------------


def test_secret_references_under_options_are_never_printed() -> None:
    text = (
        "providers:\n"
        "  bedrock:\n"
        "    options: {access_key_id: env:AK, secret_access_key: env:SK}\n"
        "  azure:\n"
        "    base_url: http://127.0.0.1:9/x\n"
        "    options: {entra_token: env:TOKEN}\n"
    )
    vertex = "  vertex:\n    options: {project: p, credentials_json: env:CREDS}\n"
    env = {"AK": "AKIAEXAMPLE", "SK": SECRET, "TOKEN": SECRET + "-entra", "CREDS": SECRET + "-json"}
    for printed in _printed(parse_config(text + vertex, env=env)):
        assert SECRET not in printed
    config = parse_config(text, env=env)
    for printed in _printed(config):
        assert SECRET not in printed
        assert "AKIAEXAMPLE" not in printed
    # the adapters still get the values
    adapters = Gateway(config)._adapters
    assert adapters["bedrock"]._credentials._frozen.secret_key == SECRET  # type: ignore[attr-defined]
    assert adapters["azure"]._entra == SECRET + "-entra"  # type: ignore[attr-defined]


def _printed(config: Config) -> list[str]:
    return [repr(config), str(config), repr(config.model_dump()), config.model_dump_json()]


# --- 3. environment overrides are blamed on the variable ----------------------------------------


@pytest.mark.parametrize(
    "value", ["[1", "@" + SECRET, "%" + SECRET, "{a: 1, a: 2}", "!!int " + SECRET, "!!float " + SECRET]
)
def test_an_override_that_is_not_yaml_names_the_variable_not_the_value(value: str) -> None:
    message = _error("server:\n  port: 4000\n", {"UNIINFER_SERVER__HOST": value})
    assert "environment override UNIINFER_SERVER__HOST" in message
    assert "not valid YAML" in message
    assert SECRET not in message


def test_errors_in_overridden_keys_name_the_variable_not_a_file_line() -> None:
    text = "server:\n  port: 4000\n"
    message = _error(text, {"UNIINFER_SERVER__PORT": "abc"})
    assert (
        "environment override UNIINFER_SERVER__PORT: server.port: Input should be a valid integer" in message
    )
    assert "line" not in message
    message = _error(text, {"UNIINFER_SERVER__PROT": "1"})
    assert "environment override UNIINFER_SERVER__PROT: server.prot: unknown key" in message
    assert "line" not in message
    message = _error(text, {"UNIINFER_SERVER__MASTER_KEY": "env:NOPE_VAR"})
    assert "environment override UNIINFER_SERVER__MASTER_KEY: server.master_key: " in message
    assert "NOPE_VAR is not set" in message


# --- 4. a config file must be UTF-8 -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [("server:\n  port: 4000\n".encode("utf-16"), "UTF-16"), (b"server: \x80\x81\n", "byte 0x80")],
)
def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path, data: bytes, says: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message
    assert "must be UTF-8" in message
    assert says in message


def test_a_utf8_bom_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfserver:\n  port: 4001\n")
    assert load_config(path, env={}).server.port == 4001


# --- 5. duplicate keys ---------------------------------------------------------------------------


def test_a_duplicate_key_names_the_key_file_and_second_line() -> None:
    message = _error("server:\n  port: 4000\n  port: 5000\n", source="dup.yaml")
    assert message.startswith("dup.yaml: line 3, column 3: server.port: duplicate key")
    text = (
        "providers: {openai: {api_key: k}}\nmodels:\n  fast:\n    deployments: [openai/a]\n"
        "  fast:\n    deployments: [openai/b]\n"
    )
    assert "line 5, column 3: models.fast: duplicate key" in _error(text)


def test_merge_keys_may_still_be_overridden() -> None:
    text = "providers:\n  openai:\n    api_key: k\n    timeout: {<<: {connect: 1, read: 2}, read: 3}\n"
    timeout = parse_config(text, env={}).providers["openai"].timeout
    assert (timeout.connect, timeout.read) == (1, 3)


# --- 6. base_url must be an http(s) URL ---------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://127.0.0.1/x", "127.0.0.1:8080/v1", "http://", "http://[::1"]
)
def test_a_base_url_that_is_not_http_is_refused_at_load(url: str) -> None:
    message = _error(f"providers:\n  openai:\n    api_key: k\n    base_url: '{url}'\n")
    assert "line 4, column 5: providers.openai.base_url: must be an http:// or https:// URL" in message


@pytest.mark.parametrize(
    "url", ["http://user:pw-SECRET-1@127.0.0.1:9/v1", "https://token-SECRET-1@h.example/v1"]
)
def test_a_base_url_carrying_credentials_is_refused_without_printing_them(url: str) -> None:
    """aiohttp sent them as Basic auth, or failed every request with a 500 beside an api_key."""
    message = _error(f"providers:\n  openai:\n    api_key: k\n    base_url: '{url}'\n")
    assert "line 4, column 5: providers.openai.base_url: must not carry credentials" in message
    assert "SECRET" not in message


def test_http_and_https_base_urls_load() -> None:
    for url in ("http://127.0.0.1:8080/v1", "https://api.example.com/v1", "https://{resource}.example.com"):
        config = parse_config(f"providers:\n  openai: {{api_key: k, base_url: '{url}'}}\n", env={})
        assert config.providers["openai"].base_url == url


# --- 7. strictness --------------------------------------------------------------------------------


def test_source_cannot_be_set_from_a_file_or_the_environment() -> None:
    assert "line 1, column 1: source: unknown key" in _error("source: whatever\n")
    message = _error("server: {port: 4000}\n", {"UNIINFER_SOURCE__X": "1"})
    assert "environment override UNIINFER_SOURCE__X: source: unknown key" in message


@pytest.mark.parametrize("value", ["true", "'4000'", "4000.5"])
def test_numbers_are_numbers(value: str) -> None:
    assert "line 2, column 3: server.port: Input should be a valid integer" in _error(
        f"server:\n  port: {value}\n"
    )


def test_booleans_are_not_numbers_anywhere_in_the_schema() -> None:
    assert "routing.retry.max_retries" in _error("routing:\n  retry: {max_retries: false}\n")
    assert "routing.rules.0.when.min_messages" in _error(
        "routing:\n  rules:\n    - {name: r, when: {min_messages: true}, route: {profile: fast}}\n"
    )
    # a whole number is still a fine float
    config = parse_config("providers:\n  openai: {api_key: k, timeout: {connect: 3}}\n", env={})
    assert config.providers["openai"].timeout.connect == 3.0


@pytest.mark.parametrize(
    ("yaml", "where"),
    [
        ("server:\n  graceful_shutdown_seconds: .inf\n", "server.graceful_shutdown_seconds"),
        ("providers:\n  openai: {api_key: k, timeout: {total: .inf}}\n", "providers.openai.timeout.total"),
        ("routing:\n  retry: {max_backoff_seconds: .inf}\n", "routing.retry.max_backoff_seconds"),
    ],
)
def test_infinity_is_no_number_of_seconds(yaml: str, where: str) -> None:
    # an endless shutdown, timeout or backoff was accepted
    assert f"{where}: Input should be a finite number" in _error(yaml)


# --- 8. every error is located -------------------------------------------------------------------


def test_an_unset_variable_has_its_line() -> None:
    message = _error("providers:\n  openai:\n    api_key: env:NOPE_UNSET\n")
    assert "line 3, column 5: providers.openai.api_key: environment variable NOPE_UNSET is not set" in message


def test_bad_options_and_unknown_types_have_their_line() -> None:
    config = parse_config("providers:\n  bedrock:\n    options: {regoin: us-east-1}\n", env={})
    with pytest.raises(ConfigError, match=r"line 3, column 5: providers\.bedrock\.options: regoin"):
        Gateway(config)
    config = parse_config("providers:\n  foo:\n    type: nosuch\n", env={})
    with pytest.raises(
        ConfigError, match=r"line 2, column 3: providers\.foo: unknown provider type 'nosuch'"
    ):
        Gateway(config)
    config = parse_config("providers: {}\n", env={"UNIINFER_PROVIDERS__NEW__BASE_URL": "http://127.0.0.1:1"})
    with pytest.raises(
        ConfigError, match=r"environment override UNIINFER_PROVIDERS__NEW__BASE_URL: providers\.new"
    ):
        Gateway(config)


def test_contradictory_rules_have_their_line_and_the_file_once(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "providers: {openai: {api_key: k}}\nmodels: {fast: {deployments: [openai/m]}}\nrouting:\n  rules:\n"
        "    - {name: r, when: {min_prompt_tokens: 100, max_prompt_tokens: 10}, route: {model: fast}}\n"
        "    - {name: r, when: {task: []}, route: {model: fast}}\n"
    )
    result = CliRunner().invoke(app, ["config", "validate", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert output.count("rules.yaml") == 1
    assert "line 5, column 24: routing.rules.0.when.min_prompt_tokens: 100 is greater than" in output
    assert re.search(r"line 6, column \d+: routing\.rules\.1\.when\.task: an empty list", output)
    assert "routing.rules.1.name: 'r' is already the name of routing.rules.0" in output


# --- 9. schema errors come first -----------------------------------------------------------------


def test_a_misspelled_key_is_reported_before_the_missing_secret() -> None:
    message = _error("providers:\n  openai:\n    apikey: env:FAKE_KEY\n", {"FAKE_KEY": SECRET})
    lines = message.splitlines()
    assert lines[1] == "  line 3, column 5: providers.openai.apikey: unknown key"
    assert "needs an API key" in lines[2]
    message = _error(
        "server:\n  master_key: env:UNSET_ONE\nproviders:\n  openai:\n    typ: x\n    api_key: k\n"
    )
    assert message.index("typ: unknown key") < message.index("UNSET_ONE")


# --- 10. overrides find existing keys whatever their case; null sections are empty ------------


def test_overrides_reach_keys_spelled_in_another_case() -> None:
    text = "providers:\n  myLocal: {type: openai_compatible, base_url: 'http://127.0.0.1:1/v1'}\n"
    config = parse_config(text, env={"UNIINFER_PROVIDERS__MYLOCAL__BASE_URL": "http://127.0.0.1:2/v1"})
    assert list(config.providers) == ["myLocal"]
    assert config.providers["myLocal"].base_url == "http://127.0.0.1:2/v1"
    both = text + "  mylocal: {type: openai_compatible, base_url: 'http://127.0.0.1:1/v1'}\n"
    # an exact spelling wins; two others that differ only in case are ambiguous
    config = parse_config(both, env={"UNIINFER_PROVIDERS__MYLOCAL__BASE_URL": "http://127.0.0.1:3/v1"})
    assert config.providers["myLocal"].base_url == "http://127.0.0.1:1/v1"
    assert config.providers["mylocal"].base_url == "http://127.0.0.1:3/v1"
    twice = "providers:\n  MyLocal: {type: vllm}\n  myLocal: {type: vllm}\n"
    message = _error(twice, {"UNIINFER_PROVIDERS__MYLOCAL__BASE_URL": "http://127.0.0.1:3/v1"})
    assert "UNIINFER_PROVIDERS__MYLOCAL__BASE_URL" in message
    assert "matches several keys" in message


@pytest.mark.parametrize("text", ["providers:\n  openai:\n", "providers:\n"])
def test_an_override_fills_a_null_section(text: str) -> None:
    env = {"OPENAI_API_KEY": "k", "UNIINFER_PROVIDERS__OPENAI__BASE_URL": "http://127.0.0.1:9/v1"}
    assert parse_config(text, env=env).providers["openai"].base_url == "http://127.0.0.1:9/v1"


# --- 11. rule languages are ISO 639-1 codes ------------------------------------------------------


RULE = "routing:\n  rules:\n    - name: r\n      when: {{language: {}}}\n      route: {{profile: fast}}\n"


@pytest.mark.parametrize("language", ["english", "e", "[en, eng]", "e1"])
def test_a_language_that_is_not_an_iso_code_is_refused(language: str) -> None:
    message = _error(RULE.format(language))
    assert "line 4, column 14: routing.rules.0.when.language: " in message
    assert "is not an ISO 639-1 language code" in message


@pytest.mark.parametrize("language", ["en", "EN", "[de, fr]", "und"])
def test_iso_codes_and_und_are_accepted(language: str) -> None:
    assert parse_config(RULE.format(language), env={}).routing.rules[0].when.language


# --- and: YAML errors never quote the file's lines -----------------------------------------------


def test_a_yaml_error_does_not_quote_a_secret_written_inline() -> None:
    message = _error(f'providers:\n  openai:\n    api_key: "{SECRET}\n')
    assert "invalid YAML" in message
    assert "line 3, column 14" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "text",
    [
        f"providers:\n  openai:\n    api_key: !!int {SECRET}\n",  # PyYAML's ValueError quotes the value
        "server:\n  port: 2024-02-30\n",  # a date that does not exist
        "server: " + "[" * 5000 + "]" * 5000 + "\n",  # nesting too deep to build
    ],
)
def test_a_value_yaml_cannot_build_is_a_config_error_without_the_value(text: str) -> None:
    message = _error(text)
    assert "invalid YAML: a value cannot be read" in message
    assert SECRET not in message


def test_aliases_of_aliases_are_located_in_linear_time() -> None:
    # a 600-byte "billion laughs" document: each alias level multiplies what a walk would visit
    lines = ["a: &a {x: 1}"]
    for level in range(9):
        below = "a" if level == 0 else f"l{level - 1}"
        entries = ", ".join(f"k{j}: *{below}" for j in range(9))
        lines.append(f"l{level}: &l{level} {{{entries}}}")
    message = _error("\n".join(lines) + "\n")  # refused at once, not written out
    assert "more than 100,000 values once its aliases are written out" in message


def test_an_override_of_an_entry_written_as_an_alias_changes_that_entry_alone() -> None:
    text = "providers:\n  a: &p {type: ollama, timeout: {connect: 5}}\n  b: *p\n"
    env = {"UNIINFER_PROVIDERS__A__TIMEOUT__CONNECT": "1"}
    providers = parse_config(text, env=env).providers
    assert (providers["a"].timeout.connect, providers["b"].timeout.connect) == (1, 5)
    message = _error(text, env={"UNIINFER_PROVIDERS__A__BOGUS": "1"})
    assert "providers.a.bogus" in message
    assert "providers.b" not in message  # the problem is a's alone


def test_an_unknown_retry_code_is_refused_with_its_line() -> None:
    # a misspelt code never matches an error: the fallback the operator asked for would never happen
    message = _error("routing:\n  retry:\n    also_retry_codes: [authentication_failed, auth_failed]\n")
    assert "line 3" in message
    assert "unknown error code 'auth_failed'" in message
    assert "authentication_failed" in message  # the codes there are, to pick from
    config = parse_config("routing:\n  retry:\n    also_retry_codes: [authentication_failed]\n")
    assert config.routing.retry.also_retry_codes == ["authentication_failed"]


# --- 12. every dangling reference is listed at once ----------------------------------------------


DANGLING = """providers:
  openai: {api_key: x}
models:
  h:
    deployments: [openai/x]
    fallbacks: {default: [bad1, bad2], content_filter: bad3}
  k:
    deployments: [openai/x, missingprov/y]
    fallbacks: {default: [bad4]}
"""
DANGLING_LINES = [
    "  line 6, column 40: models.h.fallbacks.content_filter: 'bad3' is not a configured model group"
    " or provider/model",
    "  line 6, column 27: models.h.fallbacks.default.0: 'bad1' is not a configured model group"
    " or provider/model",
    "  line 6, column 33: models.h.fallbacks.default.1: 'bad2' is not a configured model group"
    " or provider/model",
    "  line 8, column 29: models.k.deployments.1.provider: names provider 'missingprov', which is not"
    " configured under 'providers'",
    "  line 9, column 27: models.k.fallbacks.default.0: 'bad4' is not a configured model group"
    " or provider/model",
]


def test_every_dangling_reference_is_listed_with_its_line(tmp_path: Path) -> None:
    # each used to appear only once the one before it was fixed
    assert _error(DANGLING).splitlines() == ["c.yaml: invalid configuration", *DANGLING_LINES]
    path = tmp_path / "refs.yaml"
    path.write_text(DANGLING)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).splitlines()[1:] == DANGLING_LINES
    result = CliRunner().invoke(app, ["config", "validate", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {path}: invalid configuration", *DANGLING_LINES]


def test_dangling_routing_references_are_listed_with_rule_problems() -> None:
    text = (
        "providers: {openai: {api_key: k}}\nmodels: {fast: {deployments: [openai/m]}}\n"
        "routing:\n  default_profile: nope\n  profiles: {p: {models: [ghost]}}\n  rules:\n"
        "    - {name: r, route: {profile: missing}}\n"
        "    - {name: r, route: {model: nowhere}}\n"
        "  experiments:\n"
        "    - {name: e, model: fast, variants: [{name: a, model: fast}, {name: b, model: gone}]}\n"
        "    - {name: e, model: fast, variants: [{name: a, model: fast}, {name: b, model: fast}]}\n"
    )
    lines = _error(text).splitlines()[1:]
    assert [line.split(": ", 2)[1] for line in lines] == [
        "routing.profiles.p.models.0",
        "routing.default_profile",
        "routing.rules.0.route.profile",
        "routing.rules.1.route.model",
        "routing.experiments.0.name",
        "routing.experiments.0.variants.1.model",
        "routing.experiments.1.name",
        "routing.rules.1.name",  # a rule problem, found after the references
    ]
    assert all(line.startswith("  line ") for line in lines)


def test_a_config_built_in_python_names_every_dangling_reference_in_one_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        Config.model_validate(
            {
                "providers": {"openai": {"api_key": "k"}},
                "models": {"m": {"deployments": ["ghost/x"], "fallbacks": {"default": ["a", "b"]}}},
            }
        )
    assert len(info.value.errors()) == 1
    message = str(info.value)
    assert "models.m.deployments.0.provider: names provider 'ghost'" in message
    assert "models.m.fallbacks.default.0: 'a' is not" in message
    assert "models.m.fallbacks.default.1: 'b' is not" in message


@pytest.mark.parametrize("text", ["server:\n", "providers:\n#  openai: {}\n", "routing:\nsettings:\n"])
def test_a_section_with_nothing_under_it_is_empty(text: str) -> None:
    # as it reads (everything under it commented out), and as an override into it already took it
    config = parse_config(text, source="c.yaml", env={})
    assert config.server.port == 4000
    assert config.providers == {}


def test_a_blank_api_key_says_so_instead_of_asking_for_the_variable_that_is_set() -> None:
    message = _error("providers:\n  openai:\n    api_key:\n", {"OPENAI_API_KEY": SECRET})
    assert "line 3, column 5: providers.openai.api_key: empty: give the key" in message
    assert SECRET not in message
    # a local server needs none: blank is no key, as written
    config = parse_config("providers:\n  ollama:\n    api_key:\n", source="c.yaml", env={})
    assert config.providers["ollama"].api_key is None


def test_every_provider_that_cannot_be_built_is_listed_at_once() -> None:
    # found when the gateway is built (an unknown type): all of them, not one per run
    from uniinfer.gateway import Gateway

    config = parse_config("providers:\n  x: {type: opnai}\n  y: {type: nosuch}\n", source="c.yaml", env={})
    with pytest.raises(ConfigError) as info:
        Gateway(config)
    message = str(info.value)
    assert "2 providers cannot be built" in message
    assert "line 2, column 3: providers.x: unknown provider type 'opnai'" in message
    assert "line 3, column 3: providers.y: unknown provider type 'nosuch'" in message


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("providers:\n  yes: {type: openai_compatible, base_url: 'http://127.0.0.1:9/v1'}\n",
         "line 2, column 3: providers.yes: a key must be text, and YAML reads 'yes' as a boolean"),
        ("server:\n  1: 2\n", "line 2, column 3: server.1: a key must be text, and YAML reads '1' as a number"),
    ],
)  # fmt: skip
def test_a_key_yaml_reads_as_no_text_is_refused_where_it_is(text: str, said: str) -> None:
    # it was "line 1, column 1: providers.1.[key]: Input should be a valid string"
    assert said in _error(text)


@pytest.mark.parametrize("var", ["UNIINFER_SERVER_PORT", "UNIINFER_SETTINGS_DROP_UNSUPPORTED_PARAMS"])
def test_an_override_written_with_single_underscores_is_an_error_not_ignored(var: str) -> None:
    message = _error("server: {port: 4000}\n", env={var: "8080"})
    assert var in message
    assert "double underscores" in message
    assert "__" in message.split("(")[-1]  # the spelling that works


def test_two_overrides_of_one_key_are_an_error_naming_both() -> None:
    message = _error(
        "server: {port: 4000}\n", env={"UNIINFER_SERVER__PORT": "1", "UNIINFER_server__port": "2"}
    )
    assert "UNIINFER_SERVER__PORT" in message
    assert "UNIINFER_server__port" in message
    assert "server.port" in message


def test_a_blank_api_key_is_no_key_however_it_is_written() -> None:
    for text, env in [
        ("providers:\n  openai: {api_key: '   '}\n", {}),
        ("providers:\n  openai: {}\n", {"OPENAI_API_KEY": "  "}),
    ]:
        assert "needs an API key" in _error(text, env=env) or "empty" in _error(text, env=env)
    message = _error("providers:\n  openai: {api_key: 'env:OAK'}\n", env={"OAK": "   "})
    assert "env:OAK holds only blanks" in message
    assert "line 2" in message
    key = (
        parse_config("providers:\n  openai: {}\n", env={"OPENAI_API_KEY": "sk-x\r"})
        .providers["openai"]
        .api_key
    )
    assert key is not None
    assert key.get_secret_value() == "sk-x"  # a CRLF env file's \r is no part of the key
