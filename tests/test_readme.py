"""The README's SDK examples run as written (against the fake provider)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.conftest import FAKE_KEY

README = Path(__file__).parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _write_config(directory: Path, openai_url: str) -> None:
    (directory / "uniinfer.yaml").write_text(
        f"""providers:
  openai: {{api_key: {FAKE_KEY}, base_url: {openai_url}}}
models:
  fast: {{deployments: [openai/gpt-4o-mini]}}
"""
    )


async def test_sdk_example_runs(
    tmp_path: Path, openai_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = next(block for block in _python_blocks() if "from uniinfer import" in block)
    _write_config(tmp_path, openai_url)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    await asyncio.to_thread(exec, compile(example, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "echo: Hello!" in out
    assert "echo: Count to 3" in out
    assert len(namespace["vectors"].data) == 2  # type: ignore[attr-defined]


async def test_async_sdk_example_runs(
    tmp_path: Path, openai_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The AsyncClient example runs as a script, with ``$UNIINFER_CONFIG`` unset (as a user has it)."""
    example = next(block for block in _python_blocks() if "AsyncClient(" in block)
    _write_config(tmp_path, openai_url)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UNIINFER_CONFIG", raising=False)
    await asyncio.to_thread(exec, compile(example, "README.md", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == "echo: Hi"


def test_two_setup_commands_exist() -> None:
    text = README.read_text()
    assert "./dev serve" in text
    assert "./dev test" in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./dev test" in ci
