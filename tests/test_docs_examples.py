"""The documentation's examples work as written, so the docs cannot drift from the code.

Every YAML block validates like ``uniinfer config validate``; every ``uniinfer``
command and flag the docs mention exists; every error code named in prose is in
docs/errors.md; the README's curl and openai-SDK examples, run against a server
configured with the README's own YAML (providers pointed at the fakes), get the
documented answer; the endpoint table matches the server's routes; the WebSocket
example runs; CONTRIBUTING's row is the registry's row; repository paths and
links resolve.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shlex
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from tests.fakes.anthropic import anthropic_app
from tests.fakes.common import mode_of, run_fake
from tests.fakes.google_token import service_account_key
from tests.fakes.openai import openai_app
from tests.server_helpers import serve
from uniinfer.cli.app import app as cli_app
from uniinfer.config import Config, parse_config
from uniinfer.errors import catalogue
from uniinfer.providers.base import ProviderSpec
from uniinfer.providers.registry import default_registry
from uniinfer.server import create_app

ROOT = Path(__file__).parent.parent
#: The docs a user copies from (docs/benchmarks.md reports measurements and is left out).
DOCS = [
    "README.md",
    "CONTRIBUTING.md",
    "SECURITY.md",
    "CHANGELOG.md",
    "docs/architecture.md",
    "docs/configuration.md",
    "docs/errors.md",
    "docs/providers.md",
    "docs/websocket.md",
    "examples/uniinfer-example-provider/README.md",
]
MASTER = "sk-your-master-key"  # the README's key
OPENAI_KEY = "sk-fake-openai-key-0123456789"
ANTHROPIC_KEY = "sk-ant-fake-key-0123456789"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


def _text(doc: str) -> str:
    return (ROOT / doc).read_text(encoding="utf-8")


def _blocks(doc: str, *langs: str) -> list[str]:
    return [body for lang, body in FENCE.findall(_text(doc)) if lang in langs]


def _prose(doc: str) -> str:
    """The doc without its fenced blocks."""
    return FENCE.sub("", _text(doc))


def _code_spans(doc: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", _prose(doc))


# --- YAML examples --------------------------------------------------------------------------

#: Placeholders a user is told to replace, given a value the validator accepts.
PLACEHOLDERS = {"YOUR-RESOURCE": "my-resource"}


def _yaml_cases() -> Iterator[Any]:
    for doc in DOCS:
        if doc.startswith("examples/"):
            continue  # the plug-in's own provider type: test_plugin_readme_names_its_spec
        for i, block in enumerate(_blocks(doc, "yaml", "yml")):
            yield pytest.param(doc, block, id=f"{doc}#{i}")


def test_every_doc_with_config_examples_has_yaml_blocks() -> None:
    """Guards the block finder itself: a broken regex would make the checks below vacuous."""
    for doc in ("README.md", "docs/configuration.md", "docs/providers.md"):
        assert _blocks(doc, "yaml"), doc


@pytest.mark.parametrize(("doc", "block"), list(_yaml_cases()))
def test_yaml_block_validates(doc: str, block: str, tmp_path: Path) -> None:
    """``uniinfer config validate`` accepts the block, with the variables it references set."""
    for placeholder, value in PLACEHOLDERS.items():
        block = block.replace(placeholder, value)
    file = tmp_path / "uniinfer.yaml"
    file.write_text(block, encoding="utf-8")
    # every provider's conventional key variable (`anthropic: {}` reads $ANTHROPIC_API_KEY) and each `env:NAME`
    names = {spec.api_key_env for spec in default_registry() if spec.api_key_env}
    env: dict[str, str | None] = {
        name: f"test-{name.lower()}" for name in names | set(re.findall(r"env:(\w+)", block))
    }
    env["UNIINFER_CONFIG"] = None
    if "GOOGLE_APPLICATION_CREDENTIALS" in env:  # a path to a service-account key, read at validation
        key = tmp_path / "service-account.json"
        key.write_text(service_account_key().key_json("https://oauth2.googleapis.com/token"))
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(key)
    result = CliRunner().invoke(cli_app, ["config", "validate", str(file)], env=env)
    assert result.exit_code == 0, f"{doc}:\n{block}\n{result.output}"
    assert ": OK (" in result.output


def test_plugin_readme_names_its_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example plug-in's README configures the type and key variable its SPEC declares."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "uniinfer-example-provider" / "src"))
    from uniinfer_example_provider import SPEC

    doc = "examples/uniinfer-example-provider/README.md"
    (block,) = _blocks(doc, "yaml")
    data = yaml.safe_load(block)
    assert data == {"providers": {SPEC.name: {"api_key": f"env:{SPEC.api_key_env}"}}}
    (toml,) = _blocks(doc, "toml")
    pyproject = (ROOT / "examples" / "uniinfer-example-provider" / "pyproject.toml").read_text()
    assert toml.strip() in pyproject


# --- environment overrides ------------------------------------------------------------------


def _readme_yaml() -> str:
    return next(block for block in _blocks("README.md", "yaml") if "models:" in block)


def _readme_env(**extra: str) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "UNIINFER_MASTER_KEY": MASTER,
        **extra,
    }


def _override_examples() -> list[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for doc in ("README.md", "docs/configuration.md"):
        for span in _code_spans(doc):
            match = re.fullmatch(r"(UNIINFER_\w+__\w+)=(.+)", span)
            if match and match.group(2) != "...":
                found.add((match.group(1), match.group(2)))
    return sorted(found)


def test_override_examples_exist() -> None:
    assert len(_override_examples()) >= 3


@pytest.mark.parametrize(("variable", "value"), _override_examples())
def test_documented_override_sets_its_key(variable: str, value: str) -> None:
    """``UNIINFER_SERVER__PORT=8080`` and the like land on the key they name (README's config)."""
    config = parse_config(_readme_yaml(), source="README.md", env=_readme_env(**{variable: value}))
    node: Any = config.model_dump()
    for part in variable.removeprefix("UNIINFER_").split("__"):
        (key,) = [k for k in node if k.lower() == part.lower()]
        node = node[key]
    assert node == yaml.safe_load(value)


# --- CLI ------------------------------------------------------------------------------------


def _cli_mentions() -> list[tuple[str, str]]:
    """``uniinfer ...`` command lines in the docs' shell blocks and code spans."""
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        lines = [line for block in _blocks(doc, "sh", "bash", "console") for line in block.splitlines()]
        lines += _code_spans(doc)
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if re.match(r"uniinfer( |$)", line):
                found.append((doc, line))
    return found


def test_cli_mentions_are_found() -> None:
    commands = {line.split()[1] for _, line in _cli_mentions() if len(line.split()) > 1}
    assert {"serve", "chat", "models", "providers", "config", "route", "experiments"} <= commands


@pytest.mark.parametrize(("doc", "line"), _cli_mentions(), ids=lambda v: str(v)[:60])
def test_documented_cli_command_and_flags_exist(doc: str, line: str) -> None:
    """Each mentioned command resolves to a real (sub)command and each ``--flag`` is one of its options."""
    command: Any = typer.main.get_command(cli_app)  # a (vendored) click command; groups have .commands
    words = [w for w in re.split(r"[\s\[\]|]+", line.split("<", 1)[0]) if w][1:]
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    if hasattr(command, "commands"):
        assert words, f"{doc}: {line!r} names no command"
        assert words[0].startswith("--"), f"{doc}: {line!r} names no command"
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    flags = [flag for word in words for flag in word.split("=", 1)[0].split("/") if flag.startswith("-")]
    for flag in flags:
        if flag != "-":
            assert flag in options, f"{doc}: {line!r}: {flag} is not an option of {command.name}"


# --- error codes ----------------------------------------------------------------------------


def _errors_table() -> dict[str, tuple[int, str, bool]]:
    """code -> (HTTP status, type, retryable) from docs/errors.md."""
    rows = re.findall(
        r"^\| `(\w+)` \| (\d{3}) \| `(\w+)` \| `\w+` \| (yes|no) \|", _text("docs/errors.md"), flags=re.M
    )
    return {code: (int(status), kind, retryable == "yes") for code, status, kind, retryable in rows}


#: Error-looking names in the docs that are not uniinfer's codes.
NOT_CODES = {
    "overloaded_error",  # Anthropic's error types, in a provider's stream
    "timeout_error",
    "billing_error",
    "unsupported_params",  # a ProviderSpec field
    "parse_error",  # an adapter method
    "invalid_prompt",  # the Responses API's failure codes (ResponseErrorCode)
    "rate_limit_exceeded",
}
ERRORISH = re.compile(
    r"(invalid|unsupported)_\w+|\w+_(error|failed|exceeded|filtered|not_found|denied|limited"
    r"|unavailable|cancelled|timeout|overloaded|bad_response|too_large|not_allowed)"
)


def test_errors_table_matches_the_error_tree() -> None:
    table = _errors_table()
    assert {cls.code: (cls.status, cls.retryable) for cls in catalogue()} == {
        code: (status, retryable) for code, (status, _, retryable) in table.items()
    }


def test_error_codes_named_in_prose_exist() -> None:
    table = _errors_table()
    known = set(table) | {kind for _, kind, _ in table.values()}
    unknown = [
        (doc, name)
        for doc in DOCS
        for name in _code_spans(doc)
        if ERRORISH.fullmatch(name) and name not in known and name not in NOT_CODES
    ]
    assert not unknown


def test_statuses_quoted_with_codes_are_theirs() -> None:
    """``503 `service_unavailable``` and ```unsupported_param` 400`` say the code's real status."""
    table = _errors_table()
    seen = 0
    for doc in DOCS:
        prose = _prose(doc)
        pairs = re.findall(r"\b(\d{3}) `(\w+)`", prose) + [
            (status, code) for code, status in re.findall(r"`(\w+)` (\d{3})\b", prose)
        ]
        for status, code in pairs:
            if code in table:
                seen += 1
                assert table[code][0] == int(status), f"{doc}: {status} `{code}`"
    assert seen


def test_retry_lists_in_configuration_md_match_the_error_tree() -> None:
    table = _errors_table()
    prose = " ".join(_prose("docs/configuration.md").split())
    retryable = re.search(r"Retryable: (.*?) \(5xx", prose)
    final = re.search(r"Never retried unless listed in `also_retry_codes`: (.*?) \(an answer", prose)
    assert retryable
    assert final
    for code in re.findall(r"`(\w+)`", retryable.group(1)):
        assert table[code][2], f"{code} is documented as retryable"
    for code in re.findall(r"`(\w+)`", final.group(1)):
        assert not table[code][2], f"{code} is documented as never retried"


# --- the README's examples against a running server ------------------------------------------


@asynccontextmanager
async def _readme_server() -> AsyncIterator[str]:
    """``uniinfer serve`` on the README's YAML, its providers' base URLs overridden to the fakes."""
    async with (
        run_fake(openai_app(api_key=OPENAI_KEY)) as openai_url,
        run_fake(anthropic_app(api_key=ANTHROPIC_KEY)) as anthropic_url,
    ):
        env = _readme_env(
            UNIINFER_PROVIDERS__OPENAI__BASE_URL=openai_url + "/v1",
            UNIINFER_PROVIDERS__ANTHROPIC__BASE_URL=anthropic_url,
            UNIINFER_PROVIDERS__LOCAL__BASE_URL=openai_url + "/v1",
        )
        config: Config = parse_config(_readme_yaml(), source="README.md", env=env)
        async with serve(create_app(config)) as url:
            yield url


def _curl(command: str) -> tuple[str, dict[str, str], str]:
    """URL, headers and body of a documented ``curl`` command."""
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "curl"
    url, headers, body = "", {}, ""
    it = iter(words[1:])
    for word in it:
        if word == "-H":
            name, _, value = next(it).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data"):
            body = next(it)
        else:
            url = word
    return url, headers, body


def _run(source: str, where: str) -> str:
    """Execute a documented Python example (in this thread); return what it printed."""
    out = StringIO()
    with redirect_stdout(out):
        exec(compile(source, where, "exec"), {"__name__": "__main__"})
    return out.getvalue()


async def test_readme_curl_and_openai_sdk_examples_answer_as_documented() -> None:
    async with _readme_server() as base:
        (curl,) = [block for block in _blocks("README.md", "sh") if block.startswith("curl ")]
        url, headers, body = _curl(curl)
        assert url.startswith("http://127.0.0.1:4000/")
        async with (
            aiohttp.ClientSession() as session,
            session.post(url.replace("http://127.0.0.1:4000", base), headers=headers, data=body) as resp,
        ):
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            assert resp.headers["x-uniinfer-provider"] == "openai"
            assert resp.headers["x-uniinfer-model"] == "gpt-4o-mini"
            assert resp.headers["x-uniinfer-attempts"] == "1"
            assert resp.headers["x-request-id"]
            events = [line[6:] for line in (await resp.text()).splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert "".join(re.findall(r'"content":"([^"]*)"', "".join(events[:-1]))) == "echo: Hello!"

        (sdk,) = [block for block in _blocks("README.md", "python") if "from openai import" in block]
        printed = await asyncio.to_thread(_run, sdk.replace("http://127.0.0.1:4000", base), "README.md")
        assert printed == "echo: Hello!\n"


def _endpoint_table() -> list[tuple[str, str]]:
    rows = re.findall(r"^\| (`(?:GET|POST|HEAD|DELETE) .*?) \| .* \|$", _prose("README.md"), flags=re.M)
    return [(m, p) for row in rows for m, p in re.findall(r"`(GET|POST|DELETE) (/[^`]*)`", row)]


async def test_readme_endpoint_table_matches_the_server() -> None:
    """Every documented endpoint is routed (no 404 "no route", no 405); every route is documented."""
    documented = _endpoint_table()
    assert ("POST", "/v1/chat/completions") in documented
    samples = {"{model}": "openai/gpt-4o-mini", "{name}": "nope"}
    async with _readme_server() as base, aiohttp.ClientSession() as session:
        auth = {"Authorization": f"Bearer {MASTER}"}
        for method, path in documented:
            url = base + re.sub(r"\{\w+\}", lambda m: samples[m.group(0)], path)
            if path == "/v1/ws":
                async with session.ws_connect(url, headers=auth) as ws:
                    assert not ws.closed
                continue
            async with session.request(method, url, headers=auth, json={}) as resp:
                text = await resp.text()
                assert resp.status not in (404, 405) or "no route" not in text, (method, path, text)
                assert resp.status != 405, (method, path, text)
        for path in ("/health", "/ready"):  # "no key needed; HEAD too"
            async with session.head(base + path) as resp:
                assert resp.status == 200, path

    # The other way: every route is in the table (besides the stateless Responses API's
    # stored-response paths, which answer 404 by design: "no stored responses").
    app = create_app(parse_config("providers: {}\n", source="test", env={}))
    for root in list(app._families):  # the families loaded on first use
        app._load_family(root)
    routes = {route for route in app._routes if not route[1].startswith("/v1/responses")}
    routes |= {(m, p + "{}") for m, p, _ in app._prefixes if not p.startswith("/v1/responses")}
    routes |= {("POST", "/v1/responses")} | {("GET", path) for path in app.websocket_routes}
    assert routes <= {(m, re.sub(r"\{\w+\}", "{}", p)) for m, p in documented}


async def test_websocket_doc_example_runs() -> None:
    (example,) = _blocks("docs/websocket.md", "python")
    async with _readme_server() as base:
        ws_url = base.replace("http://", "ws://")
        printed = await asyncio.to_thread(
            _run, example.replace("ws://127.0.0.1:4000", ws_url), "websocket.md"
        )
    assert printed == "echo: Hi"


# --- CONTRIBUTING ---------------------------------------------------------------------------


def test_contributing_row_is_the_registry_row() -> None:
    """The example row in CONTRIBUTING.md is, field for field, the registry's (it compiles as shown)."""
    from uniinfer.providers import registry
    from uniinfer.providers.base import Capabilities

    (row,) = [block for block in _blocks("CONTRIBUTING.md", "python") if "ProviderSpec(" in block]
    namespace: dict[str, Any] = {
        "ProviderSpec": ProviderSpec,
        "Capabilities": Capabilities,
        "_OPENAI": registry._OPENAI,
    }
    (spec,) = eval(compile(row.strip(), "CONTRIBUTING.md", "eval"), namespace)  # a tuple: the row ends in ","
    assert spec == registry.default_registry().get(spec.name)


def test_contributing_quirk_table_names_provider_spec_fields() -> None:
    fields = {f.name for f in dataclasses.fields(ProviderSpec)}
    names = re.findall(r"^\| `(\w+)(?:=\w+)?`(?:, `(\w+)`)? \|", _prose("CONTRIBUTING.md"), flags=re.M)
    mentioned = {n for pair in names for n in pair if n}
    assert {"unsupported_params", "stream_usage", "embed_omit", "auto_enable"} <= mentioned
    assert mentioned <= fields


def test_contributing_failure_modes_exist() -> None:
    """The fakes' failure modes CONTRIBUTING lists each change the fake's behaviour."""
    (sentence,) = re.findall(
        r"command by model name \((.*?); see", " ".join(_prose("CONTRIBUTING.md").split())
    )
    modes = re.findall(r"`([\w-]+)`", sentence)
    assert "error-429" in modes
    plain = mode_of("model")
    for name in modes:
        assert mode_of(name) != plain, name


def test_contributing_commands_name_real_modules() -> None:
    text = _text("CONTRIBUTING.md")
    for module in re.findall(r"python -m ([\w.]+)", text):
        assert (ROOT / "src" / (module.replace(".", "/") + ".py")).is_file(), module


# --- paths and links ------------------------------------------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_repository_paths_and_links_resolve() -> None:
    checked = 0
    for doc in DOCS:
        here = (ROOT / doc).parent
        for span in _code_spans(doc):
            if re.match(r"(src|tests|docs|bench|examples|\.ci)/[\w./-]*$", span):
                assert (ROOT / span).exists(), f"{doc}: {span}"
                checked += 1
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(doc)):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (here / path) if path else ROOT / doc
            assert file.exists(), f"{doc}: {target}"
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", FENCE.sub("", file.read_text()), flags=re.M)
                assert anchor in {_slug(h) for h in headings}, f"{doc}: {target}"
            checked += 1
    assert checked > 20


def test_configuration_md_documents_every_config_key() -> None:
    """A key added to the schema without a line in docs/configuration.md fails here."""
    from pydantic import BaseModel

    words = {w for span in _code_spans("docs/configuration.md") for w in re.findall(r"\w+", span)}
    missing: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if f"{prefix}{name}" != "source" and name not in words:
                missing.append(prefix + name)
            for sub in _models_in(field.annotation):
                walk(sub, f"{prefix}{name}.")

    walk(Config, "")
    assert not missing


def _models_in(annotation: Any) -> Iterator[type[Any]]:
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _models_in(arg)
