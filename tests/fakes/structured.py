"""JSON-schema checks and instances shared by the fakes of providers with structured outputs.

Anthropic's structured outputs and Bedrock Converse's (which serves the same Claude models)
refuse the same schema features (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs,
"JSON Schema limitations"; Bedrock's user guide, structured-output.html): numeric and string-length
constraints, ``minItems`` other than 0 or 1, ``additionalProperties`` other than ``false``, enums of
objects or arrays, external ``$ref`` and recursion. :func:`schema_problem` finds the first; each
fake words it as its API does. :func:`instance` is what constrained decoding could emit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SchemaProblem", "instance", "schema_problem"]

Json = dict[str, Any]


@dataclass(frozen=True)
class SchemaProblem:
    """Where (a path under the schema) and what: ``keyword`` (with the keyword), ``minItems``,
    ``additionalProperties``, ``enum``, ``ref`` (with the reference), ``recursive``, or
    ``shape`` (with the keyword whose value is not the object or array JSON Schema wants)."""

    where: str
    kind: str
    detail: str = ""


#: Keywords whose value must be an object of subschemas, or an array.
_MAPS = ("properties", "$defs", "definitions")
_LISTS = ("anyOf", "allOf", "oneOf", "required", "enum")


def schema_problem(schema: Json, where: str, refused: frozenset[str]) -> SchemaProblem | None:
    """The first feature of ``schema`` structured outputs cannot compile (None: it compiles)."""
    defs: Json = {}
    for key in ("$defs", "definitions"):
        found = schema.get(key) or {}
        if not isinstance(found, dict):
            return SchemaProblem(where, "shape", key)
        defs.update(found)
    return _problem(schema, where, refused, defs, ())


def _problem(
    node: Any, where: str, refused: frozenset[str], defs: Json, refs: tuple[str, ...]
) -> SchemaProblem | None:
    if not isinstance(node, dict):
        return None
    for key in _MAPS:
        if not isinstance(node.get(key, {}), dict):
            return SchemaProblem(where, "shape", key)
    for key in _LISTS:
        if not isinstance(node.get(key, []), list):
            return SchemaProblem(where, "shape", key)
    for key in sorted(node.keys() & refused):
        return SchemaProblem(where, "keyword", key)
    if node.get("minItems") not in (None, 0, 1):
        return SchemaProblem(where, "minItems")
    if "additionalProperties" in node and node["additionalProperties"] is not False:
        return SchemaProblem(where, "additionalProperties")
    if any(isinstance(v, (dict, list)) for v in node.get("enum") or ()):
        return SchemaProblem(where, "enum")
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rpartition("/")[2]
        if not ref.startswith("#") or name not in defs:
            return SchemaProblem(where, "ref", ref)
        if ref in refs:
            return SchemaProblem(where, "recursive")
        found = _problem(defs[name], where, refused, defs, (*refs, ref))
        if found:
            return found
    subs: list[tuple[Any, str]] = []
    for key in ("properties", "$defs", "definitions"):
        subs += [(sub, f"{where}.{key}.{name}") for name, sub in (node.get(key) or {}).items()]
    subs += [(node.get(key), f"{where}.{key}") for key in ("items", "not")]
    for key in ("anyOf", "allOf", "oneOf"):
        subs += [(sub, f"{where}.{key}.{k}") for k, sub in enumerate(node.get(key) or ())]
    for sub, path in subs:
        found = _problem(sub, path, refused, defs, refs)
        if found:
            return found
    return None


def instance(schema: Any, text: str, defs: Json | None = None) -> Any:
    """A value matching ``schema`` (a strict one: what constrained decoding could emit), every
    string ``text``. A malformed schema gets a value too (the fakes check schemas elsewhere)."""
    if not isinstance(schema, dict):
        return text
    if defs is None:
        defs = {name: d for key in ("$defs", "definitions") for name, d in _dict(schema.get(key)).items()}
    if isinstance(schema.get("$ref"), str):
        return instance(defs.get(schema["$ref"].rpartition("/")[2]), text, defs)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return instance(schema[key][0], text, defs)
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    kind = kind.lower() if isinstance(kind, str) else kind  # Gemini's Schema spells types "OBJECT"
    if kind == "object":
        props = _dict(schema.get("properties"))
        required = schema.get("required")
        names = list(props) if not isinstance(required, list) else [n for n in props if n in required]
        return {name: instance(props[name], text, defs) for name in names}
    if kind == "array":
        return [instance(schema.get("items"), text, defs)] if schema.get("minItems") == 1 else []
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(str(kind), text)


def _dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}
