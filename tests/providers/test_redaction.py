"""The gateway's secrets taken out of what providers send back, whole or masked."""

from __future__ import annotations

import pytest

from uniinfer.providers.redaction import REDACTED, redact_secret

KEY = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ987654"


@pytest.mark.parametrize(
    "shown",
    [
        KEY,
        "sk-proj-****************************7654",  # OpenAI's 401
        "sk-proj-...7654",
        "sk-proj-…7654",
        "****7654",
        "sk-proj-ABC••••••",
        "sk-proj-ABCDEFGH...",  # only the head shown, dots for the rest
    ],
)
def test_the_key_and_its_masked_forms_are_redacted(shown: str) -> None:
    text = f"Incorrect API key provided: {shown}. You can find your API key at https://x/keys."
    assert redact_secret(text, KEY) == (
        f"Incorrect API key provided: {REDACTED}. You can find your API key at https://x/keys."
    )


@pytest.mark.parametrize(
    "text",
    [
        "Incorrect API key provided: sk-othe**********1234.",  # someone else's key
        "Wait... and retry",
        "a ** b",
        "no secret here",
    ],
)
def test_other_text_is_left_as_it_is(text: str) -> None:
    assert redact_secret(text, KEY) == text


def test_no_secret_changes_nothing() -> None:
    assert redact_secret("sk-proj-****7654", None) == "sk-proj-****7654"
    assert redact_secret("sk-proj-****7654", "") == "sk-proj-****7654"


def test_a_masked_key_in_a_query_string_is_redacted() -> None:
    assert redact_secret("GET /v1?key=sk-proj-****7654&x=1", KEY) == f"GET /v1?{REDACTED}&x=1"


def test_a_key_ending_in_base64_padding_is_redacted_by_its_tail() -> None:
    assert redact_secret("token ****ZGg= refused", "c2VjcmV0ZGg=") == f"token {REDACTED} refused"


def test_long_text_is_redacted_in_linear_time() -> None:
    import time

    # an upstream error echoing a large base64 body with ".." in it: no separators to split on
    text = "Invalid image: " + "A" * 200_000 + ".." + "B" * 200_000 + " sk-proj-****7654."
    started = time.process_time()
    out = redact_secret(text, KEY)
    assert out.endswith(f" {REDACTED}.")
    assert time.process_time() - started < 1.0  # a quadratic scan takes minutes here


@pytest.mark.parametrize("echoed", ["sk%2Dproj%2DABCDEFGHIJKLMNOPQRSTUVWXYZ987654", "a%2Bb%2Fc%3D"])
def test_a_percent_encoded_echo_is_redacted(echoed: str) -> None:
    secret = KEY if echoed.startswith("sk") else "a+b/c="
    assert redact_secret(f"GET /v1?key={echoed}&x=1", secret) == f"GET /v1?key={REDACTED}&x=1"


def test_configured_credential_headers_are_redacted_from_what_a_provider_echoes() -> None:
    from uniinfer.providers.base import Endpoint
    from uniinfer.providers.registry import default_registry

    registry = default_registry()
    headers = {
        "X-Tenant-Token": "tok-SECRET-123",
        "Authorization": "Bearer hdr-SECRET-9",
        "X-Region": "eu-west",
    }
    adapter = registry.create(
        registry.get("openai_compatible"), Endpoint(base_url="http://127.0.0.1:9/v1", headers=headers), "p"
    )
    echo = b'{"error": {"message": "bad: Bearer hdr-SECRET-9 / hdr-SECRET-9 / tok-SECRET-123 in eu-west"}}'
    error = adapter.parse_error(401, {}, echo)
    assert "SECRET" not in error.message
    assert "SECRET" not in (error.upstream_body or "")
    assert "eu-west" in error.message  # a header that is no credential is left as it is
    assert "SECRET" not in repr(adapter.endpoint)
