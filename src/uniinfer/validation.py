"""Turning untrusted input into validated request types, with errors that name the field.

Shared by every ingress (the server's routes and the SDK's keyword arguments),
so a bad ``temperature`` reads the same whichever way it arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from uniinfer.errors import InvalidRequestError

__all__ = ["param_path", "parse_request", "validation_error"]

M = TypeVar("M", bound=BaseModel)


def parse_request(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model``; the first failure is an InvalidRequestError naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, data) from None


def validation_error(exc: ValidationError, data: Any) -> InvalidRequestError:
    """The first validation failure as an OpenAI-style 400 naming the field."""
    err = exc.errors(include_url=False, include_input=False)[0]
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    param = getattr(cause, "param", None) or param_path(err["loc"], data)
    if err["type"] == "extra_forbidden":
        return InvalidRequestError(f"Unrecognized request argument supplied: {param}", param=param)
    if err["type"] == "missing":
        return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param)
    message = str(err["msg"]).removeprefix("Value error, ")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return InvalidRequestError(message, param=param or None)


def param_path(loc: Sequence[int | str], data: Any) -> str:
    """``('messages', 0, 'user', 'content')`` -> ``messages[0].content``.

    Pydantic puts discriminator tags (``user``, ``image_url``...) into error
    locations; walking the actual input keeps only the parts the caller wrote.
    """
    out = ""
    for part in loc:
        if isinstance(part, int) and isinstance(data, list):
            out += f"[{part}]"
            data = data[part] if 0 <= part < len(data) else None
        elif isinstance(data, dict) and part in data:
            out += f".{part}" if out else str(part)
            data = data[part]
        elif (isinstance(data, dict) or data is None) and _is_field_name(part, data):
            # a missing key, still worth naming (tags of union members are skipped)
            out += f".{part}" if out else str(part)
            data = None
    return out


def _is_field_name(part: int | str, data: Any) -> bool:
    # Tags are the discriminator value of the object we are in; fields are not.
    if isinstance(part, int):
        return False
    return not (isinstance(data, dict) and (data.get("role") == part or data.get("type") == part))
