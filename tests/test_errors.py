"""The error tree: stable codes, the status table, OpenAI shape, and docs/errors.md freshness."""

from __future__ import annotations

from pathlib import Path

import pytest

from uniinfer import errors
from uniinfer.errors import (
    AllTargetsFailedError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    UniInferError,
    UnsupportedParamError,
    catalogue,
    error_from_status,
    forget_traceback,
    render_markdown,
)

DOCS = Path(__file__).parent.parent / "docs" / "errors.md"


def test_docs_errors_md_is_generated_from_the_tree() -> None:
    assert DOCS.read_text() == render_markdown(), (
        "docs/errors.md is stale: run `python -m uniinfer.errors > docs/errors.md`"
    )


def test_every_code_is_unique_and_documented() -> None:
    classes = catalogue()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert cls.__doc__
        assert cls.hint
        assert f"`{cls.code}`" in render_markdown()
    assert set(errors.__all__) >= {cls.__name__ for cls in classes}


@pytest.mark.parametrize(
    ("status", "name", "retryable"),
    [
        (400, "InvalidRequestError", False),
        (401, "AuthenticationError", False),
        (403, "PermissionDeniedError", False),
        (404, "ModelNotFoundError", False),
        (429, "RateLimitError", True),
        (500, "ProviderError", True),
        (502, "ProviderError", True),
        (503, "ProviderOverloadedError", True),
        (504, "ProviderTimeoutError", True),
        (529, "ProviderOverloadedError", True),
    ],
)
def test_status_table(status: int, name: str, retryable: bool) -> None:
    err = error_from_status(status, "boom", provider="p", body="{}", retry_after=2.0)
    assert type(err).__name__ == name
    assert err.retryable is retryable
    assert (err.provider, err.upstream_status, err.retry_after) == ("p", status, 2.0)


def test_openai_shape_and_bounded_upstream_body() -> None:
    err = RateLimitError("slow down", provider="p", upstream_body="x" * 10_000, param=None)
    body = err.to_openai()["error"]
    assert body == {
        "message": "slow down",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limited",
        "provider": "p",
    }
    assert len(err.upstream_body or "") <= 4096


def test_all_targets_failed_reports_the_deciding_attempt() -> None:
    first = ProviderError("down", provider="a", status=500)
    last = RateLimitError("busy", provider="b", retry_after=3)
    err = AllTargetsFailedError("m", [("a/x", first), ("b/y", last)])
    assert err.http_status == 429
    assert err.retry_after == 3
    assert "a/x" in err.message
    assert "b/y" in err.message
    assert isinstance(err, UniInferError)
    # a deployment that could not take the request at all, tried last, does not hide the 429
    # the caller could wait out (a final 400 with no Retry-After would not be retried)
    refused = UnsupportedParamError("n=2 unsupported", provider="c", param="n")
    err = AllTargetsFailedError("m", [("b/y", last), ("c/z", refused)])
    assert (err.http_status, err.retry_after, err.provider) == (429, 3, "b")
    only = AllTargetsFailedError("m", [("c/z", refused)])
    assert only.http_status == 400
    # every deployment throttled: a 429 worth retrying, as the SDKs would by themselves
    from uniinfer.server.wire import error_headers

    throttled = AllTargetsFailedError("m", [("a/x", last), ("b/y", RateLimitError("busy", provider="b"))])
    assert (b"x-should-retry", b"false") not in error_headers(throttled)
    from uniinfer.errors import ProviderResponseError

    assert (b"x-should-retry", b"false") in error_headers(
        ProviderResponseError("p: unreadable", provider="p")
    )


def test_forget_traceback_clears_the_whole_chain() -> None:
    def fail() -> None:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ProviderConnectionError("outer", provider="p") from inner

    try:
        fail()
    except ProviderConnectionError as exc:
        caught = exc
    inner = caught.__cause__
    assert inner is not None
    assert caught.__traceback__ is not None
    assert inner.__traceback__ is not None
    inner.__context__ = caught  # a chain that loops back must not loop forever
    forget_traceback(caught)
    assert caught.__traceback__ is None
    assert inner.__traceback__ is None
