"""``uniinfer providers``: every registered provider with its kind, key variable and capabilities."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from uniinfer.cli.app import app
from uniinfer.providers.registry import default_registry

runner = CliRunner()


def test_table_lists_every_provider_with_kind_and_key() -> None:
    result = runner.invoke(app, ["providers"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for spec in default_registry():
        row = next(line for line in lines if line.startswith(f"│ {spec.name} "))
        assert (spec.api_key_env or "-") in row
    assert any("voyage" in line and "embedding-only" in line for line in lines)
    assert any("cloudflare" in line and "OpenAI-compatible" in line for line in lines)


def test_json_output_and_capability_filter() -> None:
    result = runner.invoke(app, ["providers", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list(default_registry().specs)
    voyage = next(r for r in rows if r["name"] == "voyage")
    assert voyage == {
        "name": "voyage",
        "kind": "embedding-only",
        "key_variable": "VOYAGE_API_KEY",
        "base_url": "https://api.voyageai.com/v1",
        "capabilities": ["embeddings"],
        "docs_url": "https://docs.voyageai.com/reference/embeddings-api",
    }
    result = runner.invoke(app, ["providers", "--json", "--capability", "embeddings"])
    names = {r["name"] for r in json.loads(result.output)}
    assert {"voyage", "jina", "openai", "cloudflare"} <= names
    assert "groq" not in names
    assert "anthropic" not in names


def test_unknown_capability_is_an_error_naming_the_known_ones() -> None:
    result = runner.invoke(app, ["providers", "--capability", "telepathy"])
    assert result.exit_code == 1
    assert "unknown capability 'telepathy'" in result.output
    assert "embeddings" in result.output
