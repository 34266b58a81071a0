"""The example plug-in (examples/uniinfer-example-provider) really plugs in.

It is built and installed with uv into a temporary directory (never into the test
venv), and a subprocess with that directory on ``sys.path`` finds it through the
``uniinfer.providers`` entry point and routes a chat request to it through the
gateway, against the OpenAI fake speaking the plug-in's dialect.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.common import run_fake
from tests.fakes.openai import openai_app

EXAMPLE = Path(__file__).parent.parent / "examples" / "uniinfer-example-provider"
KEY = "sk-example-0123456789"

#: Runs in the subprocess: routes one request to the plug-in and prints what came back.
SCRIPT = """
import asyncio, json, sys
from uniinfer.config import parse_config
from uniinfer.gateway import Gateway
from uniinfer.providers.registry import default_registry
from uniinfer.types import ChatRequest

async def main(url, key):
    spec = default_registry().get("example")
    config = parse_config(f"providers:\\n  example: {{api_key: {key}, base_url: '{url}'}}\\n", env={})
    gateway = Gateway(config)
    try:
        request = ChatRequest(
            model="example/any-model",
            messages=[{"role": "user", "content": "hello plug-in"}],
            max_completion_tokens=50,
        )
        response = await gateway.chat(request)
    finally:
        await gateway.aclose()
    print(json.dumps({
        "adapter": spec.adapter,
        "content": response.choices[0].message.content,
        "finish_reason": response.choices[0].finish_reason,
    }))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.fail("uv is needed to build the example plug-in (./dev installs it)")
    return uv


def install(target: Path) -> None:
    """``uv pip install --target`` the example, offline from uv's cache when it can."""
    base = [_uv(), "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    base += ["--python", sys.executable, str(EXAMPLE)]
    done = subprocess.run([*base, "--offline"], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:  # hatchling not cached yet: fetch it
        done = subprocess.run(base, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    entry_points = next(target.glob("uniinfer_example_provider-*.dist-info")) / "entry_points.txt"
    assert "example = uniinfer_example_provider:SPEC" in entry_points.read_text()


async def test_example_plugin_installs_and_serves_requests(tmp_path: Path) -> None:
    target = tmp_path / "site"
    await asyncio.to_thread(install, target)
    app = openai_app(api_key=KEY, finish_reasons={"stop": "end"}, rejects=frozenset({"logit_bias"}))
    async with run_fake(app) as url:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SCRIPT,
            url + "/v1",
            KEY,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result == {
        "adapter": "uniinfer_example_provider:ExampleAdapter",
        "content": "echo: hello plug-in",
        "finish_reason": "stop",  # the plug-in's "end", mapped by its finish_reason_map
    }
    sent = app["requests"][-1]
    assert sent["headers"]["x-example-client"] == "uniinfer"
    assert sent["body"]["max_tokens"] == 50  # the plug-in's param_renames
    assert "max_completion_tokens" not in sent["body"]


def test_the_plugin_is_not_installed_in_the_test_environment() -> None:
    from importlib.metadata import entry_points

    assert "example" not in {ep.name for ep in entry_points(group="uniinfer.providers")}
