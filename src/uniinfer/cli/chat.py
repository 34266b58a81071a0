"""``uniinfer chat``: one-shot or interactive, streaming to the terminal."""

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
    from rich.console import Console

    from uniinfer.client import Client
    from uniinfer.errors import UniInferError

    err = Console(stderr=True)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    params: dict[str, Any] = {"temperature": temperature} if temperature is not None else {}
    with Client(config) as client:
        interactive = prompt is None
        if interactive:
            err.print(f"Chatting with [bold]{model}[/]. Empty line or Ctrl-D to quit.")
        while True:
            text = prompt if not interactive else _ask()
            if not text:
                return 0
            messages.append({"role": "user", "content": text})
            try:
                answer = _stream_answer(client, model, messages, params)
            except UniInferError as exc:
                err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
                if not interactive:
                    return 1
                messages.pop()
                continue
            messages.append({"role": "assistant", "content": answer})
            if not interactive:
                return 0


def _ask() -> str:
    try:
        return input("> ").strip()
    except EOFError:
        return ""


def _stream_answer(client: Any, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    parts: list[str] = []
    for chunk in client.stream(model=model, messages=messages, **params):
        for choice in chunk.choices:
            piece = choice.delta.content
            if piece:
                parts.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)
