"""The CLI: --version, config validate, models, providers, chat (one-shot), serve start-up errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from typer.testing import CliRunner

from tests.conftest import FAKE_KEY
from uniinfer.cli.app import app
from uniinfer.types import ChatChunk

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("uniinfer 0.1.0")


def test_config_validate_ok_and_errors_with_location(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("providers:\n  openai: {api_key: sk-x}\nmodels:\n  m: {deployments: [openai/gpt-4o]}\n")
    result = runner.invoke(app, ["config", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert "sk-x" not in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: 1\nproviders:\n  openai:\n    api_key: sk-x\n    colour: red\n")
    result = runner.invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 1
    assert "line 6, column 5" in result.output
    assert "providers.openai.colour: unknown key" in result.output
    assert "sk-x" not in result.output

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("providers:\n  x: {type: nosuch, api_key: k}\n")
    result = runner.invoke(app, ["config", "validate", str(unknown)])
    assert result.exit_code == 1
    assert "unknown provider type 'nosuch'" in result.output


def test_models_and_providers_listings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UNIINFER_CONFIG", raising=False)
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "groq/*" in result.output
    assert "openai (set OPENAI_API_KEY)" in result.output
    # with a file, the file names the providers: a key alone enables none
    config = tmp_path / "c.yaml"
    config.write_text("providers:\n  groq: {}\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    result = runner.invoke(app, ["models", "-c", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "openai (configure providers.openai)" in result.output
    result = runner.invoke(app, ["providers"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("openai", "anthropic", "gemini", "ollama", "groq", "xai", "deepseek", "openrouter", "vllm"):
        assert name in result.output


async def test_chat_one_shot_streams_the_answer(tmp_path: Path, openai_url: str) -> None:
    config = tmp_path / "c.yaml"
    # no retry rounds: the 429 below would otherwise be waited out (Retry-After: 7)
    config.write_text(
        f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {openai_url}}}\n"
        "routing: {retry: {max_retries: 0}}\n"
    )

    def invoke() -> tuple[int, str]:
        result = runner.invoke(app, ["chat", "up/gpt-4o-mini", "hello there", "-c", str(config)])
        return result.exit_code, result.output

    code, output = await asyncio.to_thread(invoke)
    assert code == 0, output
    assert "echo: hello there" in output

    def failing() -> tuple[int, str]:
        result = runner.invoke(app, ["chat", "up/error-429", "hi", "-c", str(config)])
        return result.exit_code, result.output

    code, output = await asyncio.to_thread(failing)
    assert code == 1
    assert "error" in output


async def test_chat_interactive_keeps_the_conversation(tmp_path: Path, openai_url: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {openai_url}}}\n")

    def invoke() -> tuple[int, str]:
        result = runner.invoke(
            app, ["chat", "up/gpt-4o-mini", "-c", str(config)], input="first question\nsecond one\n\n"
        )
        return result.exit_code, result.output

    code, output = await asyncio.to_thread(invoke)
    assert code == 0, output
    assert "echo: first question" in output
    assert "echo: second one" in output


@pytest.mark.parametrize(
    ("stdin", "sent"),
    [
        ("hi\n", "hi"),  # `echo hi | uniinfer chat m -`: the pipe's newline is not the prompt's
        ("hi\r\n", "hi"),
        ("first line\n\nlast line  \n\n \n", "first line\n\nlast line  "),  # inner lines stay
        ("no newline", "no newline"),
    ],
)
async def test_chat_prompt_from_stdin_loses_its_final_newline(
    tmp_path: Path, openai_url: str, openai_fake_app: web.Application, stdin: str, sent: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {openai_url}}}\n")
    result = await asyncio.to_thread(
        runner.invoke, app, ["chat", "up/gpt-4o-mini", "-", "-c", str(config)], input=stdin
    )
    assert result.exit_code == 0, result.output
    assert openai_fake_app["requests"][-1]["body"]["messages"] == [{"role": "user", "content": sent}]


def _uniinfer() -> str:
    return str(Path(sys.executable).with_name("uniinfer"))


def test_serve_refuses_a_bad_config_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  anthropic: {}\n")
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    out = subprocess.run(
        [_uniinfer(), "serve", "-c", str(bad)], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 1
    assert "ANTHROPIC_API_KEY" in out.stderr
    assert "Traceback" not in out.stderr


async def test_serve_starts_on_the_embedded_default_and_drains_on_sigterm(
    tmp_path: Path, openai_url: str, unused_tcp_port_factory: Callable[[], int]
) -> None:
    port = unused_tcp_port_factory()
    config = tmp_path / "c.yaml"
    config.write_text(
        f"providers:\n  up: {{type: openai, api_key: {FAKE_KEY}, base_url: {openai_url}}}\n"
        "server:\n  graceful_shutdown_seconds: 10\n"
    )
    proc = await asyncio.create_subprocess_exec(
        _uniinfer(), "serve", "-c", str(config), "--port", str(port),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with session.get(base + "/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
            failing = {"model": "up/error-500", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(base + "/v1/chat/completions", json=failing) as failed:
                assert failed.status == 502
                failed_id = failed.headers["x-request-id"]
            body = {"model": "up/slow-1", "messages": [{"role": "user", "content": "hello there"}]}
            in_flight = asyncio.create_task(session.post(base + "/v1/chat/completions", json=body))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            resp = await in_flight
            assert resp.status == 200  # the in-flight request finished during the drain
            assert (await resp.json())["choices"][0]["message"]["content"] == "echo: hello there"
            resp.release()
        # a shutdown that was asked for, and drained, is a success
        assert await asyncio.wait_for(proc.wait(), 15) == 0
        assert proc.stdout is not None
        log = (await proc.stdout.read()).decode()
        # the operator hears that the gateway takes requests without a key
        assert "no master key (server.master_key): any program on this machine" in log
        # and of each request that failed, with its id, status, code and provider
        assert f"request {failed_id} failed: 502 provider_error from provider up:" in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class _Script:
    """A client whose stream is the chunks given (for the chat loop's rendering)."""

    def __init__(self, chunks: list[dict[str, object]], interrupt: bool = False) -> None:
        self._chunks = chunks
        self._interrupt = interrupt

    def stream(self, **_: object) -> Iterator[ChatChunk]:
        for delta, finish in self._chunks:  # type: ignore[misc]
            yield ChatChunk.model_validate(
                {
                    "id": "c",
                    "created": 1,
                    "model": "m",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )
        if self._interrupt:
            raise KeyboardInterrupt


def test_chat_shows_reasoning_tool_calls_and_why_an_answer_stopped_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from uniinfer.cli.chat import _stream_answer

    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city"'},
    }
    more = {"index": 0, "function": {"arguments": ': "Paris"}'}}
    script = _Script(
        [
            ({"reasoning_content": "The user wants "}, None),
            ({"reasoning_content": "weather."}, None),
            ({"content": "Checking"}, None),
            ({"tool_calls": [call]}, None),
            ({"tool_calls": [more]}, "length"),
        ]
    )
    assert _stream_answer(script, "m", [], {}) == "Checking"
    out, err = capsys.readouterr()
    assert out == "Checking\n"  # only the answer: `uniinfer chat m q > answer` keeps nothing else
    assert "The user wants weather." in err
    assert '[tool call get_weather({"city": "Paris"})]' in err
    assert "[stopped: length]" in err


def test_chat_ctrl_c_stops_the_answer_but_not_an_interactive_session(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from uniinfer.cli.chat import _stream_answer

    script = _Script([({"content": "partial"}, None)], interrupt=True)
    assert _stream_answer(script, "m", [], {}, keep=True) == "partial"
    assert "[stopped]" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):  # one-shot, or a script: Ctrl-C ends it (exit 130)
        _stream_answer(_Script([({"content": "partial"}, None)], interrupt=True), "m", [], {})


def test_what_a_model_or_provider_writes_cannot_drive_the_terminal() -> None:
    import io

    from uniinfer.cli.chat import _Writer
    from uniinfer.cli.output import escape_controls

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    _Writer(screen).write("a\x1b[2Jb\x1b]0;pwned\x07c\td\n")  # clear screen, retitle
    assert "\x1b" not in screen.getvalue()
    assert screen.getvalue() == "a\\x1b[2Jb\\x1b]0;pwned\\x07c\td\n"
    pipe = io.StringIO()
    _Writer(pipe).write("a\x1b[2Jb")  # a pipe gets the answer as it is
    assert pipe.getvalue() == "a\x1b[2Jb"
    assert escape_controls("bad \x1b[31mred\x9b") == "bad \\x1b[31mred\\x9b"


def test_serve_logs_uniinfers_own_lines_at_the_level_asked_for() -> None:
    import logging
    import logging.config

    from uniinfer.cli.serve import log_config

    logging.config.dictConfig(log_config("debug"))
    try:
        logger = logging.getLogger("uniinfer.gateway")
        assert logger.isEnabledFor(logging.DEBUG)  # --log-level debug shows uniinfer's debug lines
        assert [type(h).__name__ for h in logging.getLogger("uniinfer").handlers] == ["StreamHandler"]
        logging.config.dictConfig(log_config("warning"))
        assert not logger.isEnabledFor(logging.INFO)
    finally:
        logging.getLogger("uniinfer").handlers.clear()
        logging.getLogger("uniinfer").setLevel(logging.NOTSET)
        logging.getLogger("uniinfer").propagate = True


def test_a_one_shot_chat_ends_after_one_answer_even_an_empty_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer with no text (a tool call, a content filter): the one-shot turn still ends
    (it was sent again and again, each a billed request)."""
    import uniinfer.cli.chat as chat_cli
    from tests.conftest import make_config

    calls: list[int] = []

    def one_empty_answer(*args: object, **kwargs: object) -> str:
        calls.append(1)
        assert len(calls) < 3, "the prompt was sent again"
        return ""

    monkeypatch.setattr(chat_cli, "_stream_answer", one_empty_answer)
    assert chat_cli.run_chat(make_config("providers: {}\n"), "m", "hi") == 0
    assert calls == [1]


async def test_serve_bounds_a_request_s_head_with_a_431_the_client_reads() -> None:
    """uvicorn bounds no header bytes under httptools: a client could make it hold any amount
    before the app (and its 401) saw the request. ``uniinfer serve`` answers a head still
    incomplete past 64 KiB with a 431 and closes (lingering: the client reads the answer)."""
    from tests.server_helpers import serve
    from uniinfer.cli.serve import MAX_HEAD_BYTES, bounded_head_protocol

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        elif scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    async with serve(app, http=bounded_head_protocol()) as base:
        port = int(base.rsplit(":", 1)[1])

        async def ask(pads: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(ConnectionError):
                for i in range(pads):  # a read each, as a slow client sends them
                    writer.write(b"X-Pad-%d: " % i + b"a" * 8000 + b"\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.005)
                writer.write(b"\r\n")
                await writer.drain()
            head = await reader.read(64)
            writer.close()
            return head

        assert (await ask(2)).startswith(b"HTTP/1.1 200")  # a big head within the bound
        assert (await ask(MAX_HEAD_BYTES // 8000 + 4)).startswith(b"HTTP/1.1 431")
        for garbage in (
            b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
            b"\x16\x03\x01 nonsense\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(garbage)
            answer = await asyncio.wait_for(reader.read(), 5)  # then closed
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400")
            assert re.search(rb"\r\nx-request-id: [0-9a-f]{32}\r\n", head)
            assert json.loads(body)["error"]["code"] == "invalid_request"  # OpenAI's shape, not plain text
        # pipelined: a request with a big body, then the next one's head, in one read: the
        # earlier request's bytes are no part of the next head
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b"x" * 200_000
        writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        writer.write(b"GET /b HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"\r\n")
        await writer.drain()
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 2:
            answers += await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        assert answers.count(b"HTTP/1.1 200") == 2
