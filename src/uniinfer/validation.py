"""Turning untrusted input into validated request types, with errors that name the field.

Shared by every ingress (the server's routes and the SDK's keyword arguments),
so a bad ``temperature`` reads the same whichever way it arrived.

Request models validate strictly (no ``"5"`` for 5, no ``true`` for 1), so a
wrong type is a 400 in the OpenAI API's words: ``Invalid type for
'max_tokens': expected an integer, but got a boolean instead.``

Pydantic's error locations mix the fields a caller wrote with its own labels:
union members (``str``, ``list[...]``, a class name) and discriminator tags
(``user``, ``json_schema``...), which can collide with field names. Walking the
location along the model's own (core) schema tells them apart and says which
member of a union an error came from: the error reported is one of the member
the input was meant for (a list's errors when ``content`` is a list, not the
string member's), and a value that fits no member is a type error listing them.
All of this runs only once validation has failed: the hot path is pydantic's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from uniinfer.errors import InvalidRequestError, UnsupportedFeatureError

__all__ = ["Problem", "first_problem", "parse_request", "validation_error"]

M = TypeVar("M", bound=BaseModel)
Schema = Mapping[str, Any]

#: Pydantic error types that mean "wrong JSON type": rendered as ``Invalid type for ...``.
_TYPE_ERRORS = frozenset(
    {
        "string_type", "int_type", "float_type", "bool_type", "list_type", "dict_type",
        "model_type", "model_attributes_type", "none_required", "tuple_type", "set_type",
    }
)  # fmt: skip
#: Schema nodes that only wrap another one, without a part of the error location of their own.
_WRAPPERS = frozenset({"default", "nullable", "function-after", "function-before", "function-wrap", "model"})


@dataclass(frozen=True)
class Problem:
    """The validation failure to tell the caller about, with the parameter in their terms."""

    #: pydantic's error type (``missing``, ``int_type``...), or ``union_type`` for a value
    #: that fits no member of a union.
    kind: str
    #: ``messages[0].content[1].text``: the keys and indexes the caller wrote, nothing else.
    param: str
    #: ``Invalid type for 'n': expected an integer, but got a string instead.``, in Chat
    #: Completions' words (the Responses API words an unknown field its own way).
    message: str
    #: The offending value (None for a missing one).
    value: Any


def parse_request(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model``; the first failure is an InvalidRequestError naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, data, model) from None


def validation_error(
    exc: ValidationError, data: Any, model: type[BaseModel] | None = None
) -> InvalidRequestError:
    """The first validation failure as an OpenAI-style 400 naming the field.

    ``model`` is the model that failed (default: :class:`~uniinfer.types.ChatRequest`, what
    every ingress translates to). A value the OpenAI spec knows but uniinfer does not serve
    (a ``custom`` tool...) is an :class:`UnsupportedFeatureError` saying so.
    """
    if model is None:
        from uniinfer.types.chat import ChatRequest

        model = ChatRequest
    problem = first_problem(exc, data, model)
    unserved = _unserved(model, problem)
    if unserved is not None:
        return UnsupportedFeatureError(unserved, param=problem.param)
    if problem.kind == "extra_forbidden" and problem.param in _LEGACY and model.__name__ == "ChatRequest":
        return UnsupportedFeatureError(_LEGACY[problem.param], param=problem.param)  # a deprecated field
    # no message quotes more of the caller's input than a screenful (a value in a custom check)
    return InvalidRequestError(problem.message[:_MESSAGE_LIMIT], param=problem.param or None)


_MESSAGE_LIMIT = 2048


def first_problem(exc: ValidationError, data: Any, model: type[BaseModel]) -> Problem:
    """The error to report: the first one of the union members the input was meant for."""
    errors = exc.errors(include_url=False)
    root: Schema = model.__pydantic_core_schema__
    for err in errors:
        problem = _problem(err, root, data)
        if problem is not None:
            return problem
    # Every error came from a union member the input does not fit, and no union was
    # found that fits nothing (which _problem reports): fall back to the first one.
    return _render(errors[0], _Walk(root, data).run(errors[0]["loc"]))


# --- walking an error location along the schema ---------------------------------------------


@dataclass
class _Where:
    """Where an error location leads: the caller's path, the schema node and value there."""

    param: str
    node: Schema | None
    value: Any
    #: False when the error came from a union member that fits the input worse than another.
    on_branch: bool = True
    #: A union on the way that no member fits: (its path, its node, the value there).
    misfit: tuple[str, Schema, Any] | None = None


class _Walk:
    """One error location, walked part by part along the model's core schema and the input."""

    def __init__(self, root: Schema, data: Any) -> None:
        self.defs: dict[str, Schema] = {}
        self.root = root
        self.data = data

    def unwrap(self, node: Schema, value: Any) -> Schema:
        """Through wrappers (defaults, nullables, validators, refs) to the node that consumes a part."""
        for _ in range(64):  # bounded: schemas nest, they do not loop without a location part
            kind = node["type"]
            if kind == "definitions":
                self.defs.update((d["ref"], d) for d in node["definitions"])
                node = node["schema"]
            elif kind == "definition-ref":
                ref = self.defs.get(node["schema_ref"])
                if ref is None:
                    return node
                node = ref
            elif kind == "nullable" and value is None:
                return node
            elif kind in _WRAPPERS and "schema" in node:
                node = node["schema"]
            else:
                return node
        return node

    def run(self, loc: Sequence[int | str]) -> _Where:
        where = _Where("", self.root, self.data)
        node: Schema | None = self.root
        value = self.data
        for part in loc:
            if node is None:
                _append(where, part)
                continue
            node = self.unwrap(node, value)
            kind = node["type"]
            if kind == "model-fields":
                field = _field(node, part)
                _append(where, part)
                value = _child(value, part)
                node = field["schema"] if field is not None else None
            elif kind == "list" and isinstance(part, int):
                _append(where, part)
                value = _child(value, part)
                node = node.get("items_schema")
            elif kind == "dict":
                if part == "[key]":
                    node = node.get("keys_schema")
                    continue
                _append(where, part)
                value = _child(value, part)
                node = node.get("values_schema")
            elif kind == "tagged-union":
                node = node["choices"].get(part)  # the tag: pydantic chose the member from the input
            elif kind == "union":
                node = self.member(where, node, part, value)
            else:  # a part this walk does not know: keep it, stop interpreting
                node = None
                _append(where, part)
        where.node = self.unwrap(node, value) if node is not None else None
        where.value = value
        return where

    def member(self, where: _Where, union: Schema, label: int | str, value: Any) -> Schema | None:
        """The union member ``label`` names; marks ``where`` when another member fits the input better."""
        choices: list[Schema] = [c[0] if isinstance(c, tuple) else c for c in union["choices"]]
        labels = [c[1] if isinstance(c, tuple) else None for c in union["choices"]]
        fits = [_fit(self, c, value) for c in choices]
        best = max(fits)
        if best == 0 and where.misfit is None:
            where.misfit = (where.param, union, value)
        for choice, custom, fit in zip(choices, labels, fits, strict=True):
            if custom == label or (custom is None and _labels_match(str(label), self.unwrap(choice, value))):
                if fit < best:
                    where.on_branch = False
                return choice
        return None


def _field(node: Schema, part: int | str) -> Schema | None:
    fields: Mapping[str, Schema] = node["fields"]
    if part in fields:
        return fields[str(part)]
    for field in fields.values():
        if field.get("validation_alias") == part:
            return field
    return None


def _append(where: _Where, part: int | str) -> None:
    if isinstance(part, int):
        where.param += f"[{part}]"
    else:
        part = part if len(part) <= _KEY_LIMIT else part[:_KEY_LIMIT] + "..."  # a caller's key, quoted
        where.param += f".{part}" if where.param else part


#: OpenAI's deprecated request fields, told apart from unknown ones (the API still takes them).
_LEGACY = {
    "functions": "'functions' (OpenAI's deprecated function calling) is not supported: declare the "
    'functions in \'tools\' ({"type": "function", "function": {...}}) instead.',
    "function_call": "'function_call' (OpenAI's deprecated function calling) is not supported: use "
    "'tool_choice' with 'tools' instead.",
}

#: How much of a caller's key (an unknown field, a ``logit_bias`` or ``metadata`` key) an error
#: quotes: a megabyte-long key came back twice, in ``message`` and ``param``.
_KEY_LIMIT = 64


def _child(value: Any, part: int | str) -> Any:
    if isinstance(part, int):
        return value[part] if isinstance(value, list) and -len(value) <= part < len(value) else None
    if isinstance(value, dict):
        return value.get(part)
    return getattr(value, part, None) if isinstance(value, BaseModel) else None


def _labels_match(label: str, node: Schema) -> bool:
    """Whether pydantic's label for a union member (``list[str]``, ``ToolChoiceFunction``) names ``node``."""
    head, _, inner = label.partition("[")
    head = head.removeprefix("constrained-")
    kind = node["type"]
    if kind == "model":
        return bool(head == node["cls"].__name__)
    if kind == "list":
        items = node.get("items_schema")
        return head == "list" and (items is None or _labels_match(inner[:-1], items))
    return bool(head == kind)


def _fit(walk: _Walk, node: Schema, value: Any) -> int:
    """How well ``value``'s JSON shape fits ``node``: 0 not at all, 1 on the surface, 2 throughout.

    Only the shape counts (a list's first item decides between ``list[str]`` and
    ``list[int]``): which member the caller meant, not whether the value is valid.
    """
    node = walk.unwrap(node, value)
    kind = node["type"]
    if kind == "nullable":
        return 2  # unwrap stops at a nullable only for None
    if kind == "list":
        if not isinstance(value, list):
            return 0
        items = node.get("items_schema")
        return 2 if not value or items is None or _fit(walk, items, value[0]) == 2 else 1
    if kind in ("model-fields", "dict", "tagged-union", "typed-dict", "dataclass"):
        return 2 if isinstance(value, dict | BaseModel) else 0
    if kind == "union":
        return max(_fit(walk, c[0] if isinstance(c, tuple) else c, value) for c in node["choices"])
    if kind == "literal":
        expected = node["expected"]
        if any(value == e and type(value) is type(e) for e in expected):
            return 2
        return 1 if any(type(value) is type(e) for e in expected) else 0
    if kind in _JSON_TYPES:
        return 2 if _json_type(value) in _JSON_TYPES[kind] else 0
    return 1


# --- rendering ------------------------------------------------------------------------


def _problem(err: Any, root: Schema, data: Any) -> Problem | None:
    where = _Walk(root, data).run(err["loc"])
    if where.misfit is not None:
        param, union, value = where.misfit
        expected = _describe_union(union)
        message = f"Invalid type for '{param}': expected one of {expected}, but got {_got(value)} instead."
        return Problem("union_type", param, message, value)
    if not where.on_branch:
        return None
    return _render(err, where)


def _render(err: Any, where: _Where) -> Problem:
    kind = str(err["type"])
    cause = (err.get("ctx") or {}).get("error")
    param = getattr(cause, "param", None) or where.param
    value = err.get("input")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # a discriminated union: the discriminator key (``role``, ``type``) is what is wrong
        key = str((err.get("ctx") or {}).get("discriminator", "")).strip("'")
        if not key.isidentifier():  # told apart by a function of the value's shape: it fits none
            expected = _describe_union(where.node) if where.node is not None else "another type"
            message = (
                f"Invalid type for '{param}': expected one of {expected}, but got {_got(value)} instead."
            )
            return Problem("union_type", param, message, value)
        param = f"{param}.{key}"
        value = _child(where.value, key)
        if kind == "union_tag_not_found":
            return Problem("missing", param, f"Missing required parameter: '{param}'.", None)
        tags = (err.get("ctx") or {}).get("expected_tags", "")
        message = f"Invalid value for '{param}': Input should be {_or(str(tags).split(', '))}"
        return Problem("literal_error", param, message, value)
    if kind == "missing":
        return Problem(kind, param, f"Missing required parameter: '{param}'.", None)
    if kind == "extra_forbidden":
        return Problem(kind, param, f"Unrecognized request argument supplied: {param}", value)
    if kind in _TYPE_ERRORS:
        expected = _describe(where.node) if where.node is not None else _EXPECTED.get(kind, "another type")
        message = f"Invalid type for '{param}': expected {expected}, but got {_got(value)} instead."
        return Problem(kind, param, message, value)
    message = str(err["msg"]).removeprefix("Value error, ")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return Problem(kind, param, message, value)


#: JSON types each primitive schema accepts (an integer is a number too).
_JSON_TYPES = {
    "str": ("string",),
    "int": ("integer",),
    "float": ("integer", "decimal"),
    "bool": ("boolean",),
    "none": ("null",),
}
_EXPECTED = {
    "string_type": "a string", "int_type": "an integer", "float_type": "a number", "bool_type": "a boolean",
    "list_type": "an array", "tuple_type": "an array", "set_type": "an array", "dict_type": "an object",
    "model_type": "an object", "model_attributes_type": "an object", "none_required": "null",
}  # fmt: skip
_NOUNS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict | BaseModel):
        return "object"
    return type(value).__name__  # a Python value from the SDK (a tuple, a set...)


def _got(value: Any) -> str:
    name = _json_type(value)
    return name if name == "null" else _a(name)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _describe(node: Schema) -> str:
    """``an array of strings``, ``an integer``, ``an object``: what a schema node takes, in JSON terms."""
    kind = node["type"]
    if kind == "nullable":
        return _describe(node["schema"]) + " or null"
    if kind == "literal":
        return "one of " + _or([repr(e) for e in node["expected"]])
    if kind == "union":
        return "one of " + _describe_union(node)
    return _a(_noun(node))


def _noun(node: Schema) -> str:
    kind = node["type"]
    while kind in _WRAPPERS and kind != "nullable" and "schema" in node:
        node = node["schema"]
        kind = node["type"]
    if kind in _NOUNS:
        return _NOUNS[kind]
    if kind == "list":
        items = node.get("items_schema")
        inner = _noun(items) if items is not None else "value"
        return "array" if inner == "value" else f"array of {_plural(inner)}"
    if kind == "literal":
        return _NOUNS.get(type(node["expected"][0]).__name__, "value")
    if kind == "tagged-union":  # objects told apart by a key, or values by their shape
        nouns = {_noun(choice) for choice in node["choices"].values()}
        return nouns.pop() if len(nouns) == 1 else "value"
    if kind in ("model", "model-fields", "dict", "typed-dict", "dataclass", "definition-ref"):
        return "object"
    return "value"


def _plural(noun: str) -> str:
    head, _, rest = noun.partition(" ")
    return f"{head}s {rest}" if rest else f"{head}s"


def _describe_union(union: Schema) -> str:
    seen: list[str] = []
    choices = union["choices"]
    for choice in choices.values() if isinstance(choices, Mapping) else choices:
        noun = _a(_noun(choice[0] if isinstance(choice, tuple) else choice))
        if noun not in seen:
            seen.append(noun)
    return _or(seen)


def _or(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


# --- values the spec knows and uniinfer does not serve --------------------------------------


def _unserved(model: type[BaseModel], problem: Problem) -> str | None:
    """The model's "not supported" message for the value refused (see ``ChatRequest.UNSERVED``)."""
    table: Mapping[str, Mapping[str, str]] = getattr(model, "UNSERVED", {})
    if not table or problem.kind != "literal_error" or not isinstance(problem.value, str):
        return None
    return table.get(re.sub(r"\[\d+\]", "[]", problem.param), {}).get(problem.value)
