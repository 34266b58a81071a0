"""docs/providers.md and the README's provider table are generated from the registry and fresh."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from uniinfer.providers import catalog_docs
from uniinfer.providers.base import Capabilities, ProviderSpec
from uniinfer.providers.catalog_docs import (
    README_END,
    README_START,
    kind,
    quirks,
    render_markdown,
    render_readme_table,
    update_readme,
)
from uniinfer.providers.registry import BUILTIN_PROVIDERS, Registry

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs" / "providers.md"
README = ROOT / "README.md"
STALE = "run `uv run python -m uniinfer.providers.catalog_docs --write`"


def test_docs_providers_md_is_generated_from_the_registry() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_markdown(), f"docs/providers.md is stale: {STALE}"


def test_readme_table_matches_the_registry() -> None:
    text = README.read_text(encoding="utf-8")
    assert update_readme(text) == text, f"the README's provider table is stale: {STALE}"
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    at = headings.index("## Providers")
    assert headings[at - 1] == "## Configure it"
    assert headings[at + 1] == "## CLI"
    section = text.split("## Providers", 1)[1].split("## CLI", 1)[0]
    assert render_readme_table() in section


def test_every_builtin_provider_is_documented_with_its_source() -> None:
    docs = render_markdown()
    table = render_readme_table()
    for spec in BUILTIN_PROVIDERS:
        assert f"## `{spec.name}`" in docs
        assert f"| `{spec.name}` | {kind(spec)} |" in table
        if spec.name != "openai_compatible":
            assert spec.docs_url.startswith("https://"), f"{spec.name} cites no docs"
            assert f"<{spec.docs_url}>" in docs
        for quirk in quirks(spec):
            assert quirk in docs


def test_kinds() -> None:
    kinds = {spec.name: kind(spec) for spec in BUILTIN_PROVIDERS}
    assert kinds["openai"] == kinds["anthropic"] == kinds["bedrock"] == "native"
    assert kinds["groq"] == kinds["cloudflare"] == kinds["llamacpp"] == "OpenAI-compatible"
    assert kinds["voyage"] == kinds["jina"] == "embedding-only"


def test_a_provider_without_stream_usage_is_flagged() -> None:
    base = Registry(BUILTIN_PROVIDERS).get("groq")
    never = dataclasses.replace(base, name="quiet", stream_usage="never")
    assert any("cannot learn" in q for q in quirks(never))
    docs = render_markdown(Registry([never]))
    assert "Streams report **no usage**" in docs
    assert not any("usage" in q for q in quirks(base))


def test_quirks_describe_each_declared_quirk() -> None:
    spec = ProviderSpec(
        "acme",
        catalog_docs.OPENAI_ADAPTER,
        "https://{tenant}.acme.test/v1",
        "ACME_API_KEY",
        Capabilities(embeddings=True),
        stream_usage="always",
        finish_reason_map={"eos": "stop"},
        param_renames={"max_completion_tokens": "max_tokens"},
        embed_param_renames={"dimensions": "output_dimension"},
        embed_omit=frozenset({"encoding_format", "user"}),
        embed_options=frozenset({"input_type"}),
        extra_params=frozenset({"top_k"}),
    )
    text = "\n".join(quirks(spec))
    for expected in (
        "`stream_options` is never sent",
        '`"eos"` → `"stop"`',
        "`max_completion_tokens` is sent as `max_tokens`",
        "`dimensions` is sent as `output_dimension`",
        "`encoding_format` is not sent",
        "options `input_type`",
        "Also takes `top_k`",
        "`{tenant}` in the base URL is filled from `options.tenant`",
    ):
        assert expected in text
    snippet = render_markdown(Registry([spec]))
    assert "      tenant: <tenant>" in snippet
    assert "`input_type` (optional)" in snippet
    assert "| embedding params it cannot honour | `user` |" in snippet  # refused, not omitted silently
    assert "`top_k`" not in snippet.split("| params it cannot honour |")[1].split("\n")[0]


def test_update_readme_needs_its_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        update_readme("# no table here\n")
    stale = f"intro\n{README_START}\nold table\n{README_END}\noutro\n"
    assert update_readme(stale) == f"intro\n{render_readme_table()}\noutro\n"


def test_main_prints_writes_and_rejects_unknown_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert catalog_docs.main([]) == 0
    assert capsys.readouterr().out == render_markdown()
    assert catalog_docs.main(["--nope"]) == 2
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"x\n{README_START}\n{README_END}\n")
    monkeypatch.chdir(tmp_path)
    assert catalog_docs.main(["--write"]) == 0
    assert (tmp_path / "docs" / "providers.md").read_text() == render_markdown()
    assert render_readme_table() in (tmp_path / "README.md").read_text()
