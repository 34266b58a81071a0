"""CLI errors: one verbatim, unwrapped line on stderr, a non-zero exit, never a traceback or a secret."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

import pytest
from aiohttp import web
from typer.testing import CliRunner, Result

from tests.conftest import FAKE_KEY
from tests.fakes.common import run_fake
from uniinfer.cli.app import app

runner = CliRunner()


def _clean_exit(result: Result) -> None:
    """The command ended through its own exit, not an exception escaping it."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.fixture(autouse=True)
def _no_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at $COLUMNS, else 80, when stderr is not a terminal: test that default."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture
async def echo_key_url() -> AsyncIterator[str]:
    """An upstream that quotes the caller's Authorization header in its 401, like some real ones."""

    async def chat(request: web.Request) -> web.Response:
        message = f"Incorrect API key provided: {request.headers.get('Authorization', '')}"
        return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=401)

    fake = web.Application()
    fake.router.add_post("/v1/chat/completions", chat)
    async with run_fake(fake) as url:
        yield url + "/v1"


def _config(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {base_url}}}\n"
        f"routing: {{retry: {{max_retries: 0}}}}\n{extra}"
    )
    return path


# --- brackets are text, not rich markup; messages are not hard-wrapped


async def test_upstream_error_keeps_redacted_marker_and_hides_the_key(
    tmp_path: Path, echo_key_url: str
) -> None:
    config = _config(tmp_path, echo_key_url)
    result = await asyncio.to_thread(runner.invoke, app, ["chat", "up/m", "hi", "-c", str(config)])
    assert result.exit_code == 1
    assert "Incorrect API key provided: Bearer [redacted]" in result.stderr
    assert FAKE_KEY not in result.output


def test_model_name_with_closing_tag_is_printed_not_parsed(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    result = runner.invoke(app, ["chat", "llama[/INST]", "hi", "-c", str(config)])
    _clean_exit(result)
    assert result.exit_code == 1
    assert "model 'llama[/INST]' does not exist" in result.stderr


def test_config_keys_with_brackets_are_printed_not_parsed(tmp_path: Path) -> None:
    for key in ("[/bold]x", "[bold]y[/bold]"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f'server:\n  "{key}": 1\n')
        result = runner.invoke(app, ["config", "validate", str(bad)])
        _clean_exit(result)
        assert result.exit_code == 1
        assert f"server.{key}: unknown key" in result.stderr


def test_long_error_stays_on_one_line(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    model = "a-model-name-long-enough-to-push-the-message-past-eighty-columns"
    result = runner.invoke(app, ["chat", model, "hi", "-c", str(config)])
    assert result.exit_code == 1
    assert f"error: model '{model}' does not exist: use a configured model name or 'provider/model'\n" in (
        result.stderr
    )


async def test_models_table_prints_bracketed_names(tmp_path: Path, openai_url: str) -> None:
    config = _config(tmp_path, openai_url, 'models:\n  "llama[/INST]": {deployments: [up/gpt-4o-mini]}\n')
    result = await asyncio.to_thread(
        runner.invoke, app, ["models", "-c", str(config)], env={"COLUMNS": "200"}
    )
    _clean_exit(result)
    assert result.exit_code == 0, result.output
    assert "llama[/INST]" in result.stdout


# --- bad arguments are one clear error, not a traceback


def test_unknown_log_level_is_a_usage_error_listing_the_levels(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    result = runner.invoke(app, ["serve", "-c", str(config), "--port", "0", "--log-level", "bogus"])
    _clean_exit(result)
    assert result.exit_code == 2
    for level in ("critical", "error", "warning", "info", "debug", "trace"):
        assert level in result.stderr


def test_route_explain_names_a_missing_request_file(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    missing = tmp_path / "nope.json"
    result = runner.invoke(app, ["route", "explain", str(missing), "-c", str(config)])
    _clean_exit(result)
    assert result.exit_code == 1
    assert f"cannot read request file {missing}: No such file or directory" in result.stderr


def test_route_explain_names_the_file_whose_body_is_not_a_request(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    request = tmp_path / "list.json"
    request.write_text("[1]")
    result = runner.invoke(app, ["route", "explain", str(request), "-c", str(config)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {request}: ")  # the file, then what is wrong with it
    assert "object" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("notaurl", "--url notaurl: expected the gateway's http:// or https:// address"),
        ("ftp://127.0.0.1", "--url ftp://127.0.0.1: expected the gateway's http:// or https:// address"),
        ("http://[::1", "--url http://[::1: not a valid URL"),
        ("http://127.0.0.1:99999", "--url http://127.0.0.1:99999: not a valid URL"),
        ("http://127.0.0.1:9/a b", "invalid URL"),
    ],
)
def test_experiments_report_rejects_a_bad_url(url: str, says: str) -> None:
    result = runner.invoke(app, ["experiments", "report", "ab", "--url", url])
    _clean_exit(result)
    assert result.exit_code == 1
    assert says in result.stderr


async def test_experiments_report_survives_a_server_that_is_not_a_gateway() -> None:
    paths: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        paths.append(request.raw_path)
        return web.Response(text="<html>hello</html>")

    fake = web.Application()
    fake.router.add_get("/{tail:.*}", anything)
    async with run_fake(fake) as url:
        result = await asyncio.to_thread(
            runner.invoke, app, ["experiments", "report", "a b/../c", "--url", url, "--key", FAKE_KEY]
        )
    _clean_exit(result)
    assert result.exit_code == 1
    assert "did not answer with an experiment report" in result.stderr
    assert FAKE_KEY not in result.output
    assert paths == ["/v1/experiments/a%20b%2F..%2Fc"]  # the name is one path segment


async def test_experiments_report_survives_a_server_that_hangs_up() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await asyncio.to_thread(
            runner.invoke, app, ["experiments", "report", "ab", "--url", f"http://127.0.0.1:{port}"]
        )
    _clean_exit(result)
    assert result.exit_code == 1
    assert f"no valid HTTP answer from http://127.0.0.1:{port}/v1/experiments/ab: " in result.stderr


def test_experiments_report_does_not_quote_a_key_with_a_line_break() -> None:
    key = "sk-secret-line\nbreak"
    result = runner.invoke(app, ["experiments", "report", "ab", "--url", "http://127.0.0.1:9", "--key", key])
    _clean_exit(result)
    assert result.exit_code == 1
    assert "contains characters not allowed in a header" in result.stderr
    assert "sk-secret" not in result.output


def test_config_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "u16.yaml"
    config.write_text("server:\n  port: 4000\n", encoding="utf-16")
    result = runner.invoke(app, ["config", "validate", str(config)])
    _clean_exit(result)
    assert result.exit_code == 1
    assert f"{config}" in result.stderr


def test_an_unforeseen_exception_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uniinfer.cli.app
    from uniinfer.cli import main

    def broken() -> None:
        raise RuntimeError("something [odd] happened")

    monkeypatch.setattr(uniinfer.cli.app, "app", broken)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected RuntimeError: something [odd] happened")
    assert "Traceback" not in err


# --- --port/--host go through the config schema, like the file's values


def _uniinfer() -> str:
    return str(Path(sys.executable).with_name("uniinfer"))


@pytest.mark.parametrize(
    ("port", "says"), [("99999", "less than or equal to 65535"), ("-5", "greater than or equal to 0")]
)
def test_serve_refuses_an_out_of_range_port_option(tmp_path: Path, port: str, says: str) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    # without the check, 99999 started a server on a random port: the timeout ends that run
    out = subprocess.run(
        [_uniinfer(), "serve", "-c", str(config), "--port", port],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 1
    assert out.stderr == f"error: --port {port}: Input should be {says}\n"


# --- serve: an address it cannot listen on is one line naming it, exit 1 like every other error


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("127.0.0.1", "address already in use (another process listens there; choose another port"),
        # TEST-NET-1 (RFC 5737): an address no machine of ours has
        ("192.0.2.1", "cannot assign requested address (the host is not an address of this machine)"),
    ],
)
def test_serve_names_an_address_it_cannot_listen_on(tmp_path: Path, host: str, says: str) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # uvicorn logged "ERROR: [Errno 98] ..." between its start-up lines and exited 3;
        # should the check not stop it, the timeout ends a server that did start
        out = subprocess.run(
            [_uniinfer(), "serve", "-c", str(config), "--host", host, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert out.returncode == 1
    assert out.stderr.startswith(f"error: cannot listen on {host}:{port}: {says}")
    assert out.stderr.count("\n") == 1, out.stderr


def test_serve_names_a_host_that_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    from uniinfer.cli import serve

    def unknown(*args: object, **kwargs: object) -> NoReturn:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(serve.ListenError) as info:
        serve._check_listen("nosuch.invalid", 4000)
    assert str(info.value) == (
        "cannot listen on nosuch.invalid:4000: cannot resolve the host (Name or service not known)"
    )


def test_serve_names_an_ipv6_address_in_brackets() -> None:
    from uniinfer.cli import serve

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with socket.socket(socket.AF_INET6) as taken:
        try:
            taken.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            serve.ListenError, match=rf"^cannot listen on \[::1\]:{port}: address already in use"
        ):
            serve._check_listen("::1", port)


# --- chat: only answers on stdout, errors on their own line, failures in the exit code


async def test_interactive_prompt_stays_out_of_stdout(tmp_path: Path, openai_url: str) -> None:
    config = _config(tmp_path, openai_url)
    result = await asyncio.to_thread(
        runner.invoke, app, ["chat", "up/gpt-4o-mini", "-c", str(config)], input="first\nsecond\n\n"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "echo: first\necho: second\n"


async def test_error_mid_stream_starts_on_its_own_line(tmp_path: Path, openai_url: str) -> None:
    config = _config(tmp_path, openai_url)
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["chat", "up/cut", "a longer question so the answer streams in several events", "-c", str(config)],
    )
    assert result.exit_code == 1
    assert result.stdout.startswith("echo: ")
    assert result.stdout.endswith("\n")  # the partial answer's line is ended before the error
    assert re.search(r"^error: ", result.stderr, flags=re.M)


async def test_scripted_session_whose_turns_failed_exits_1(tmp_path: Path, openai_url: str) -> None:
    config = _config(tmp_path, openai_url)
    result = await asyncio.to_thread(
        runner.invoke, app, ["chat", "up/error-500", "-c", str(config)], input="one\ntwo\n"
    )
    _clean_exit(result)
    assert result.exit_code == 1
    assert result.stderr.count("error: ") == 2  # the session went on after the first failure


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (
            [
                "",
            ],
            "",
        ),
        (["-"], ""),
        (["-"], "  \n"),
    ],
)
def test_empty_prompt_is_an_error(tmp_path: Path, args: list[str], stdin: str) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    result = runner.invoke(app, ["chat", "up/m", *args, "-c", str(config)], input=stdin)
    _clean_exit(result)
    assert result.exit_code == 1
    assert "nothing to send: the prompt is empty" in result.stderr


def test_chat_reports_a_provider_the_config_cannot_build_as_its_file_s_error(tmp_path: Path) -> None:
    # found when the gateway is built, not when the file is read: one line naming the file, as
    # `serve` and `models` say it, not "unexpected ConfigError ... a bug in uniinfer"
    config = tmp_path / "c.yaml"
    config.write_text("providers:\n  x: {type: opnai}\n")
    result = runner.invoke(app, ["chat", "x/y", "hi", "-c", str(config)])
    _clean_exit(result)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {config}: ")
    assert "unknown provider type 'opnai'" in result.stderr
    assert "bug" not in result.stderr


def test_chat_refuses_input_that_is_not_utf8_and_sends_nothing(tmp_path: Path) -> None:
    # undecodable bytes reach Python as surrogate escapes (a pipe, an argument), which no JSON holds
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    result = runner.invoke(app, ["chat", "up/m", "h\udcffi", "-c", str(config)])
    _clean_exit(result)
    assert result.exit_code == 1
    assert "error: the input is not UTF-8 text; nothing was sent" in result.stderr
