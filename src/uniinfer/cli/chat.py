"""``uniinfer chat``: one-shot or interactive, streaming to the terminal.

Only the answers go to stdout, so ``uniinfer chat m < questions > answers``
leaves nothing else in the file: the banner, the ``> `` prompt (shown only
when stdin is a terminal), the model's reasoning, notes on what is no text
(a tool call, an answer cut by its length limit or a content filter) and
errors go to stderr. A scripted session (stdin not a terminal) exits 1 if any
turn failed, so a script notices a lost answer; at a terminal the user saw the
error, and quitting exits 0. At a terminal, input lines can be edited (readline),
Ctrl-C while an answer streams stops that answer and keeps the conversation,
and control characters in what the model or a provider wrote are shown
escaped, so that no answer can clear the screen or retitle the window.
"""

from __future__ import annotations

import sys
from typing import Any

from uniinfer.cli.output import escape_controls
from uniinfer.config import Config

__all__ = ["run_chat"]


def run_chat(
    config: Config,
    model: str,
    prompt: str | None,
    *,
    system: str | None = None,
    temperature: float | None = None,
) -> int:
    """Stream answers to stdout; return the exit code (0 ok, 1 error)."""
    from rich.text import Text

    from uniinfer.cli.output import error, plain_console
    from uniinfer.client import Client
    from uniinfer.errors import UniInferError

    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    params: dict[str, Any] = {"temperature": temperature} if temperature is not None else {}
    interactive = prompt is None
    at_terminal = sys.stdin.isatty()
    if interactive and at_terminal:
        import readline  # noqa: F401 - line editing and history for input()
    failed = False
    with Client(config) as client:
        if interactive:
            banner = Text.assemble("Chatting with ", (model, "bold"), ". Empty line or Ctrl-D to quit.")
            plain_console(stderr=True).print(banner, soft_wrap=True)
        while True:
            text = prompt if not interactive else _ask(show_prompt=at_terminal)
            if not text:
                return 1 if failed and not at_terminal else 0
            if not _is_utf8(text):  # bytes the terminal or pipe could not decode (surrogate escapes)
                error("the input is not UTF-8 text; nothing was sent")
                if not interactive:
                    return 1
                failed = True
                continue
            messages.append({"role": "user", "content": text})
            try:
                answer = _stream_answer(client, model, messages, params, keep=interactive and at_terminal)
            except UniInferError as exc:
                error(exc.message)
                if not interactive:
                    return 1
                failed = True
                messages.pop()
                continue
            if not interactive:
                return 0
            if not answer:  # stopped before any text: the turn is taken back
                messages.pop()
                continue
            messages.append({"role": "assistant", "content": answer})


def _ask(*, show_prompt: bool) -> str:
    """The next line of input; the ``> `` prompt goes to stderr, so stdout holds only answers."""
    if show_prompt:
        sys.stderr.write("> ")
        sys.stderr.flush()
    try:
        return input().strip()
    except EOFError:
        return ""


def _stream_answer(
    client: Any, model: str, messages: list[dict[str, Any]], params: dict[str, Any], *, keep: bool = False
) -> str:
    """Write the answer to stdout as it streams and end its line, also when an error cuts it short.

    The reasoning goes to stderr (dimmed at a terminal), and a note there says what the answer
    holds besides text (tool calls) or why it stopped early. ``keep``: Ctrl-C stops the answer
    and returns what came (an interactive session goes on) instead of ending the program.
    """
    parts: list[str] = []
    reasoning = False
    finish: str | None = None
    calls: dict[int, list[str]] = {}  # a call's index -> its name and argument pieces
    out, err = _Writer(sys.stdout), _Writer(sys.stderr)
    try:
        for chunk in client.stream(model=model, messages=messages, **params):
            for choice in chunk.choices:
                delta = choice.delta
                if delta.reasoning_content:
                    reasoning = True
                    err.write(delta.reasoning_content, dim=True)
                if delta.content:
                    if reasoning:  # the answer starts on a line of its own, after the reasoning
                        err.write("\n")
                        reasoning = False
                    parts.append(delta.content)
                    out.write(delta.content)
                for call in delta.tool_calls or ():
                    pieces = calls.setdefault(call.index, ["", ""])
                    if call.function is not None:
                        pieces[0] += call.function.name or ""
                        pieces[1] += call.function.arguments or ""
                finish = choice.finish_reason or finish
    except KeyboardInterrupt:
        if not keep:
            raise
        _end_line()
        err.write("[stopped]\n")
        return "".join(parts)
    except BaseException:
        if parts:  # the error message must start on a line of its own, not after the partial text
            _end_line()
        raise
    if reasoning:
        err.write("\n")
    _end_line()
    for name, arguments in calls.values():
        err.write(f"[tool call {name}({arguments})]\n")
    if finish in ("length", "content_filter"):
        err.write(f"[stopped: {finish}]\n")
    return "".join(parts)


class _Writer:
    """Text to a stream as it comes; at a terminal, control characters shown escaped (no answer
    may clear the screen, move the cursor or write the clipboard), and ``dim`` text dimmed."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._terminal = stream.isatty()

    def write(self, text: str, *, dim: bool = False) -> None:
        if self._terminal:
            text = escape_controls(text)
            if dim:
                text = f"\x1b[2m{text}\x1b[0m"
        self._stream.write(text)
        self._stream.flush()


def _end_line() -> None:
    sys.stdout.write("\n")
    sys.stdout.flush()


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
