"""``uniinfer chat``: one-shot or interactive, streaming to the terminal.

Only the answers go to stdout, so ``uniinfer chat m < questions > answers``
leaves nothing else in the file: the banner, the ``> `` prompt (shown only
when stdin is a terminal) and errors go to stderr. A scripted session (stdin
not a terminal) exits 1 if any turn failed, so a script notices a lost answer;
at a terminal the user saw the error, and quitting exits 0.
"""

from __future__ import annotations

import sys
from typing import Any

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
                answer = _stream_answer(client, model, messages, params)
            except UniInferError as exc:
                error(exc.message)
                if not interactive:
                    return 1
                failed = True
                messages.pop()
                continue
            messages.append({"role": "assistant", "content": answer})
            if not interactive:
                return 0


def _ask(*, show_prompt: bool) -> str:
    """The next line of input; the ``> `` prompt goes to stderr, so stdout holds only answers."""
    if show_prompt:
        sys.stderr.write("> ")
        sys.stderr.flush()
    try:
        return input().strip()
    except EOFError:
        return ""


def _stream_answer(client: Any, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """Write the answer to stdout as it streams and end its line, also when an error cuts it short."""
    parts: list[str] = []
    try:
        for chunk in client.stream(model=model, messages=messages, **params):
            for choice in chunk.choices:
                piece = choice.delta.content
                if piece:
                    parts.append(piece)
                    sys.stdout.write(piece)
                    sys.stdout.flush()
    except BaseException:
        if parts:  # the error message must start on a line of its own, not after the partial text
            _end_line()
        raise
    _end_line()
    return "".join(parts)


def _end_line() -> None:
    sys.stdout.write("\n")
    sys.stdout.flush()


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
