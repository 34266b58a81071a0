"""Loading a :class:`Config`: YAML file, ``UNIINFER_*`` overrides, secret references.

Order: the file (or the embedded default), then environment overrides
``UNIINFER_<SECTION>__<KEY>[__<KEY>...]`` (values parsed as YAML scalars, so
``true`` and ``8080`` are typed), then validation. Errors name the key and the
file, and where the value came from: the line and column of a file key, or the
environment variable that set it. Schema errors (unknown keys, bad values) are
listed before secret errors, so a misspelled key is never hidden behind the
missing key it was meant to set.

Secret fields (``api_key``, ``master_key``, any string under ``options``) take
a reference:

- ``env:NAME``  the environment variable NAME (missing: an error naming it)
- ``file:PATH`` the file's content, stripped (a mounted Kubernetes secret)

A literal string is accepted too, but a reference keeps keys out of files.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from uniinfer.config.routing import Problem, rule_problems
from uniinfer.config.schema import DEFER_REFERENCES, EMPTY_MASTER_KEY, Config
from uniinfer.errors import ConfigError

__all__ = ["ENV_PREFIX", "default_config", "load_config", "parse_config"]

ENV_PREFIX = "UNIINFER_"
_SECRET_KEYS = ("api_key", "master_key")
#: UNIINFER_* variables that are not config overrides.
_NOT_OVERRIDES = frozenset({"UNIINFER_CONFIG", "UNIINFER_REQUIRE_SERVICES"})
_REFERENCES = ("env:", "file:")

#: A key path in the document: ("providers", "openai", "api_key").
KeyPath = tuple[str, ...]


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load ``path`` (or ``$UNIINFER_CONFIG``, or the embedded default) with overrides."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get("UNIINFER_CONFIG") or None
    if path is None:
        return default_config(env)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    return parse_config(_decode(data, path), source=str(path), env=env)


def _decode(data: bytes, path: Path) -> str:
    """The file's text; anything but UTF-8 is an error that says what to do."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # PowerShell's `>` and `Out-File` (Windows PowerShell 5) write UTF-16 with a BOM.
        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        found = "UTF-16 text" if utf16 else f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        raise ConfigError(
            f"cannot read config file {path}: it is {found}; a config file must be UTF-8 "
            "(re-save it as UTF-8, e.g. `Set-Content -Encoding utf8` in PowerShell)"
        ) from None


def parse_config(text: str, *, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    data, marks = _parse_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    return _build(data, env, source, marks)


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The embedded default: built-in providers whose key is in the environment, and local servers."""
    from uniinfer.providers.registry import default_registry

    env = os.environ if env is None else env
    providers: dict[str, Any] = {}
    for spec in default_registry().specs.values():
        if not spec.auto_enable:
            continue
        if spec.api_key_env and env.get(spec.api_key_env):
            providers[spec.name] = {"api_key": f"env:{spec.api_key_env}"}
        elif spec.local:
            providers[spec.name] = {}
    return _build({"providers": providers}, env, "embedded default", {})


def _resolve(value: str, env: Mapping[str, str]) -> str:
    """The value behind ``env:NAME`` / ``file:PATH`` (literals pass through); a ValueError says what is wrong."""
    if value.startswith("env:"):
        name = value[4:]
        # surrounding whitespace is no part of a secret (a CRLF env file leaves a \r behind), as
        # for a file's
        secret = env.get(name)
        if not secret:
            raise ValueError(f"environment variable {name} is not set")
        return secret.strip()  # blank: the setting's own check says it is empty
    if value.startswith("file:"):
        try:
            return Path(value[5:]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {value[5:]}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"secret file {value[5:]} is not UTF-8 text") from None
    return value


# --- the pipeline -------------------------------------------------------------------------

#: The top-level sections: one written with nothing under it is empty, as it reads.
_SECTIONS = ("server", "providers", "models", "routing", "settings")


def _build(data: dict[str, Any], env: Mapping[str, str], source: str, marks: dict[KeyPath, str]) -> Config:
    """Overrides, checks, secrets and validation; every problem found is reported at once."""
    for section in _SECTIONS:  # `server:` with nothing under it (or all of it commented out)
        if section in data and data[section] is None:
            data[section] = {}
    overrides = _apply_overrides(data, env)
    where = _Locator(marks, overrides)
    problems = _file_problems(data)
    secret_problems = _resolve_secrets(data, env)
    config: Config | None = None
    try:
        # cross-references are checked below, so they are listed with the rest, not one at a time
        config = Config.model_validate({**data, "source": source}, context={DEFER_REFERENCES: True})
    except ValidationError as exc:
        problems += [_problem(err) for err in exc.errors(include_input=False)]
    if config is not None:
        problems += config.reference_problems()
        problems += rule_problems(config.routing.rules)
    problems += secret_problems  # last: a schema error often explains a secret error
    if problems:
        lines = [where.describe(path, message) for path, message in problems]
        raise ConfigError(f"{source}: invalid configuration\n" + "\n".join(lines))
    assert config is not None
    config._locate = where
    return config


def _problem(err: Any) -> Problem:
    """A pydantic error as (key path, message)."""
    path = tuple(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return path, "unknown key"
    return path, str(err["msg"]).removeprefix("Value error, ")


def _file_problems(data: dict[str, Any]) -> list[Problem]:
    """What the schema cannot see: an internal field set from outside, an empty master key."""
    problems: list[Problem] = []
    if "source" in data:
        # Config.source records where the config came from; the loader sets it, nobody else
        problems.append((("source",), "unknown key"))
        del data["source"]
    server = data.get("server")
    if isinstance(server, dict) and "master_key" in server and server["master_key"] is None:
        # `master_key:` with nothing after it must not silently turn authentication off
        problems.append((("server", "master_key"), EMPTY_MASTER_KEY))
    return problems


def _resolve_secrets(data: dict[str, Any], env: Mapping[str, str]) -> list[Problem]:
    """Resolve references in place; what cannot be resolved is returned, left as written."""
    problems: list[Problem] = []

    def resolve(path: KeyPath, value: str, *, header: bool = False) -> str | None:
        """``header``: the secret goes in an HTTP header (a key), which no control character may."""
        try:
            secret = _resolve(value, env)
        except ValueError as exc:
            problems.append((path, str(exc)))
            return None
        if header and any(ord(c) < 32 or ord(c) == 127 for c in secret):
            problems.append(
                (path, "holds a control character (a line break, a tab), which no HTTP header carries")
            )
            return None
        return secret

    server = data.get("server")
    if isinstance(server, dict) and isinstance(server.get("master_key"), str):
        key = resolve(("server", "master_key"), server["master_key"], header=True)
        if key is not None:
            server["master_key"] = key
    providers = data.get("providers")
    if not isinstance(providers, dict):
        return problems
    for name, entry in providers.items():
        if entry is None:
            entry = providers[name] = {}
        if not isinstance(entry, dict):
            continue
        base: KeyPath = ("providers", str(name))
        options = entry.get("options")
        if isinstance(options, dict):
            for key, value in options.items():
                if isinstance(value, str) and value.startswith(_REFERENCES):
                    secret = resolve((*base, "options", str(key)), value)
                    if secret is not None:
                        # held as SecretStr so the Config never prints it; the gateway unwraps it
                        options[key] = SecretStr(secret)
        headers = entry.get("headers")
        if isinstance(headers, dict):  # a tenant token, a gateway's own key: references too
            for key, value in headers.items():
                if isinstance(value, str) and value.startswith(_REFERENCES):
                    secret = resolve((*base, "headers", str(key)), value, header=True)
                    if secret is not None:
                        headers[key] = secret
        if isinstance(entry.get("api_key"), str) and entry["api_key"].strip():
            written = entry["api_key"].strip()
            api_key = resolve((*base, "api_key"), written, header=True)
            if api_key == "":  # a reference to blanks: the reference is named, never a value
                problems.append(((*base, "api_key"), f"{written} holds only blanks: give the key there"))
            elif api_key is not None:
                entry["api_key"] = api_key
        elif entry.get("api_key") is None or isinstance(entry.get("api_key"), str):
            # not given, `api_key:` with nothing after it, or only blanks (no key, as written)
            if isinstance(entry.get("api_key"), str):
                entry["api_key"] = None
            problem = _conventional_key(str(name), entry, env, blank="api_key" in entry)
            if problem:
                problems.append(((*base, "api_key"), problem))
    return problems


def _conventional_key(name: str, entry: dict[str, Any], env: Mapping[str, str], *, blank: bool) -> str:
    """No ``api_key`` given: use the provider's conventional variable, or say what is missing.
    ``blank``: written with nothing after it, which a provider that needs a key refuses (the
    line says "no key", which the conventional variable would silently contradict)."""
    from uniinfer.providers.registry import default_registry

    registry = default_registry()
    kind = entry.get("type") or name
    if not isinstance(kind, str) or kind not in registry:
        return ""  # the gateway reports an unknown type (it may use another registry)
    spec = registry.get(kind)
    if blank:
        if not spec.key_required:
            return ""  # a local server: no key, as written
        example = spec.api_key_env or "MY_KEY"
        return f"empty: give the key (for example 'env:{example}'), or remove the line to use the provider's conventional variable"
    if spec.api_key_env and env.get(spec.api_key_env, "").strip():
        entry["api_key"] = env[spec.api_key_env].strip()  # a CRLF env file's \r is no part of it
    elif spec.key_required:
        hint = f"set {spec.api_key_env} or " if spec.api_key_env else ""
        return f"provider '{name}' needs an API key: {hint}set providers.{name}.api_key"
    return ""


# --- environment overrides ----------------------------------------------------------------


def _apply_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[KeyPath, str]:
    """Apply ``UNIINFER_*`` overrides in place; returns the key path each variable set."""
    applied: dict[KeyPath, str] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in _NOT_OVERRIDES:
            continue
        if "__" not in var:
            rest = var[len(ENV_PREFIX) :].lower()
            top = next((name for name in _SECTIONS if rest.startswith(name + "_")), None)
            if top is not None:  # UNIINFER_SERVER_PORT: meant as an override, read as none
                raise ConfigError(
                    f"environment override {var}: separate the keys of its path with double "
                    f"underscores ({ENV_PREFIX}{top.upper()}__{rest[len(top) + 1 :].upper()})"
                )
            continue
        names = [p.lower() for p in var[len(ENV_PREFIX) :].split("__")]
        if not all(names):
            raise ConfigError(f"environment override {var}: empty key in the path")
        target = data
        path: list[str] = []
        for name in names[:-1]:
            key = _existing_key(target, name, var)
            section = target.get(key)
            if section is None:  # absent, or `openai:` with nothing under it
                section = target[key] = {}
            path.append(str(key))
            if not isinstance(section, dict):
                raise ConfigError(f"environment override {var}: '{'.'.join(path)}' is not a section")
            target = section
        leaf = _existing_key(target, names[-1], var)
        key_path = (*path, str(leaf))
        if key_path in applied:  # the same key in another case: which one wins is no one's guess
            raise ConfigError(
                f"environment overrides {applied[key_path]} and {var} both set {'.'.join(key_path)}"
            )
        raw = env[var]
        target[leaf] = raw if leaf in _SECRET_KEYS else _scalar(raw, var)
        applied[key_path] = var
    return applied


def _existing_key(section: dict[Any, Any], name: str, var: str) -> Any:
    """The key of ``section`` that ``name`` (lower-cased from a variable name) means.

    Variable names are case-insensitive in practice, but provider and model
    names are not: ``UNIINFER_PROVIDERS__MYLOCAL__...`` means the file's
    ``myLocal`` when that is the only key spelled that way in any case.
    """
    if name in section:
        return name
    matches = [k for k in section if isinstance(k, str) and k.lower() == name]
    if len(matches) > 1:
        raise ConfigError(
            f"environment override {var}: '{name}' matches several keys ({', '.join(sorted(matches))}); "
            "rename them so they differ in more than case"
        )
    return matches[0] if matches else name


def _scalar(raw: str, var: str) -> Any:
    """An override's value parsed as YAML; the error names the variable, never the value."""
    try:
        return yaml.load(raw, Loader=_Loader)  # a SafeLoader subclass
    except (yaml.YAMLError, ValueError, RecursionError):  # a tag or date PyYAML cannot build: its
        raise ConfigError(  # message quotes the value
            f"environment override {var}: the value is not valid YAML; "
            "quote it to use it as a string (e.g. '\"...\"')"
        ) from None


# --- YAML with locations ------------------------------------------------------------------


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, mark: yaml.Mark) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key
        self.mark = mark


class _KeyNotText(yaml.YAMLError):
    def __init__(self, key: object, node: yaml.Node) -> None:
        super().__init__(f"key {node.value!r} is not text")
        self.key = key
        self.node = node


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it keeps the last), and
    a key that is not text (``yes:`` is a boolean to YAML 1.1, ``1:`` a number): every key of
    the configuration is a name."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` entries may be overridden: that is what they are for
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise _KeyNotText(key, key_node)
            if isinstance(key, Hashable):
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


#: How many values a document may hold once its aliases are written out (a few thousand in a
#: large configuration; a "billion laughs" of nested aliases holds billions).
_MAX_VALUES = 100_000


def _unshared(data: Any) -> Any:
    """``data`` with every alias its own copy: PyYAML gives an alias the anchor's very object, so
    an environment override of one entry (``b: *a``) would change both, and a problem in one be
    reported at the other's place. A document too large once written out is refused."""
    count = 0

    def copy(value: Any) -> Any:
        nonlocal count
        count += 1
        if count > _MAX_VALUES:
            raise ValueError("too many values")
        if isinstance(value, dict):
            return {key: copy(item) for key, item in value.items()}
        if isinstance(value, list):
            return [copy(item) for item in value]
        return value

    return copy(data)


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[KeyPath, str]]:
    """The document's data and the line:column of every key, in one parse."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        # before construction: merge keys rewrite the nodes as they are constructed
        marks = _marks(node)
        data = _unshared(loader.construct_document(node)) if node is not None else None
    except _DuplicateKey as exc:
        at = _at(exc.mark)
        path = next((p for p, mark in marks.items() if mark == at), (str(exc.key),))
        raise ConfigError(
            f"{source}: {at}: {'.'.join(path)}: duplicate key (a key may appear once in a mapping)"
        ) from None
    except _KeyNotText as exc:
        at = _at(exc.node.start_mark)
        path = next((p for p, mark in marks.items() if mark == at), (str(exc.node.value),))
        kinds = {"bool": "a boolean", "int": "a number", "float": "a number", "NoneType": "null"}
        kind = kinds.get(type(exc.key).__name__, f"a {type(exc.key).__name__}")
        raise ConfigError(
            f"{source}: {at}: {'.'.join(path)}: a key must be text, and YAML reads "
            f"{str(exc.node.value)!r} as {kind}: quote it"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {_yaml_problem(exc)}") from None
    except (ValueError, RecursionError):  # PyYAML's message quotes the value, which may be a secret
        raise ConfigError(
            f"{source}: invalid YAML: a value cannot be read as its tag or form says "
            "(an explicit tag such as !!int on text, a date that does not exist, nesting too deep, or "
            f"more than {_MAX_VALUES:,} values once its aliases are written out)"
        ) from None
    finally:
        loader.dispose()
    return data, marks


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message without the quoted lines: they may hold a secret written inline."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc)
    parts = []
    if exc.context:
        context_at = f" ({_at(exc.context_mark)})" if exc.context_mark else ""
        parts.append(f"{exc.context}{context_at}")
    if exc.problem:
        parts.append(f"{exc.problem}" + (f" ({_at(exc.problem_mark)})" if exc.problem_mark else ""))
    return ": ".join(parts) or "unreadable"


def _at(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _marks(node: yaml.Node | None) -> dict[KeyPath, str]:
    """Line:column of every key in the YAML document, by its path."""
    out: dict[KeyPath, str] = {}
    walked: set[int] = set()

    def walk(n: yaml.Node, path: KeyPath, depth: int) -> None:
        # an aliased node is walked once (its keys' lines are the same wherever it is used): a
        # small document of aliases of aliases would otherwise take exponential time and memory
        if depth > 100 or id(n) in walked:
            return
        walked.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                key_path = (*path, str(key_node.value))
                out[key_path] = _at(key_node.start_mark)
                walk(value_node, key_path, depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                item_path = (*path, str(i))
                out[item_path] = _at(item.start_mark)
                walk(item, item_path, depth + 1)

    if node is not None:
        walk(node, (), 0)
    return out


class _Locator:
    """Where a key's value came from: an environment override, or its line in the file."""

    def __init__(self, marks: dict[KeyPath, str], overrides: dict[KeyPath, str]) -> None:
        self._marks = marks
        self._overrides = overrides

    def __call__(self, path: KeyPath) -> str:
        for set_path, var in self._overrides.items():
            if path[: len(set_path)] == set_path:
                return f"environment override {var}"
        if path and path not in self._marks:
            # a section the file does not have, created by an override below it
            for set_path, var in self._overrides.items():
                if set_path[: len(path)] == path:
                    return f"environment override {var}"
        return _nearest_mark(path, self._marks)

    def describe(self, path: KeyPath, message: str) -> str:
        where = self(path)
        key = ".".join(path) or "(top level)"
        return f"  {where}: {key}: {message}" if where else f"  {key}: {message}"


def _nearest_mark(loc: KeyPath, marks: dict[KeyPath, str]) -> str:
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return ""
